"""Binder: the session-binding OAuth broker and token vault (see services/binder/README.md)."""
