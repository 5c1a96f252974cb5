"""Jira (Atlassian): Atlassian's OAuth 2.0 (3LO) apps.

- Endpoints and parameters: https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/
  (auth.atlassian.com/authorize with audience=api.atlassian.com and prompt=consent,
  space-separated scopes, offline_access for a refresh token, access tokens of 1 hour with
  expires_in; client id and secret in the token request body; /me for the user).
- Rotation: https://community.developer.atlassian.com/t/updated-31-january-2022-action-required-deprecating-persistent-refresh-tokens/54172
  (every refresh returns a new refresh token and invalidates the old one; reuse outside a
  10-minute leeway revokes the whole family).

PKCE: a conservative False. The 3LO page never mentions code_challenge, so we cannot claim the
protection; state and the binding checks still apply. No revocation endpoint is documented
(users remove access under their Atlassian account's connected apps). No RFC 9207 iss, no ID
token.
"""

from __future__ import annotations

from binder.providers.schema import BuildContext, ProviderEntry, ProviderKind
from binder.providers.spec import ProviderSpec, entry_fields


def build(entry: ProviderEntry, context: BuildContext) -> ProviderSpec:
    return ProviderSpec(
        **entry_fields(entry),
        authorization_endpoint="https://auth.atlassian.com/authorize",
        token_endpoint="https://auth.atlassian.com/oauth/token",
        revocation_endpoint=None,
        revocation_style="none",
        userinfo_endpoint="https://api.atlassian.com/me",
        issuer=None,
        jwks_uri=None,
        is_oidc=False,
        returns_iss=False,
        supports_pkce=False,
        default_scopes=(),
        scope_separator=" ",
        scope_param="scope",
        extra_authorize_params={"audience": "api.atlassian.com", "prompt": "consent"},
        token_endpoint_auth_method="client_secret_post",
        token_response_path=None,
        tokens_expire=True,
        default_expires_in=None,
        rotates_refresh_tokens=True,
        refresh_scope="offline_access",
    )


KIND = ProviderKind(name="atlassian", display_name="Jira (Atlassian)", build=build)
