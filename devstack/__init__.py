"""The local stack (never deployed): moto server, a local OAuth provider, the services and a
dev edge, on 127.0.0.1 only. The integration tests start the same pieces."""
