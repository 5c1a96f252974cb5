"""Code shared by the agent and binder images (copied into both at build time)."""
