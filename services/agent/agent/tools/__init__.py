"""The agent's tools: contracts (base), argument schemas (schema), the shared HTTP layer (http),
the registry of families (registry) and one module per tool family (github, google, microsoft,
notes, oidc). A new family is one new module with a ``FAMILY``; see docs/extending.md.
"""
