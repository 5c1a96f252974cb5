"""Agent: acts in third-party systems with delegated, user-scoped tokens."""
