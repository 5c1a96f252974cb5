"""The third-party OAuth 2.0 / OIDC providers the binder brokers tokens for.

- `schema`: the entry schema and its one parser (the CDK app runs it at synth);
- `spec`: `ProviderSpec`, what the binder knows about one provider, and the scope rules;
- `registry`: the kinds, found by module, and `ProviderRegistry`, the configured providers;
- `discovery`: fetching discovery documents; `mcp_discovery`: the mcp kind's discovery and
  client registration (the two modules that need the network);
- one module per kind (`github`, `google`, ..., `oidc`, `oauth2`, `mcp`), each declaring `KIND`.

Everything but the two discovery modules imports only the standard library: the CDK app
imports it without the binder's dependencies. Importing this package imports none of its modules.
"""
