"""The stacks of the app: network, identity (stateful) and services (stateless)."""
