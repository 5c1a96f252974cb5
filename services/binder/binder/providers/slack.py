"""Slack (user tokens of a Slack app).

- Endpoints: https://docs.slack.dev/authentication/installing-with-oauth
  (slack.com/oauth/v2/authorize; comma-separated scope lists; user-token scopes go in
  user_scope and the user token comes back nested under "authed_user" of oauth.v2.access).
- Client authentication: https://docs.slack.dev/reference/methods/oauth.v2.access
  ("avoid sending client_id and client_secret as parameters ... use HTTP Basic").
- Revocation: https://docs.slack.dev/reference/methods/auth.revoke (the token itself is the
  credential). Slack answers HTTP 200 with "ok": false on errors.
- Expiry: https://docs.slack.dev/authentication/using-token-rotation (tokens never expire
  unless the app enables rotation; then expires_in is 43200 and each refresh revokes the old
  refresh token).
- PKCE: a conservative False. https://docs.slack.dev/authentication/using-pkce: enabling it
  turns the app into a public client, one way, which a confidential server should not do.

Uncertain: whether a user-token refresh response is also nested under authed_user; the binder
accepts the top-level fields when authed_user is absent.
"""

from __future__ import annotations

from binder.providers.schema import BuildContext, ProviderEntry, ProviderKind
from binder.providers.spec import ProviderSpec, entry_fields


def build(entry: ProviderEntry, context: BuildContext) -> ProviderSpec:
    return ProviderSpec(
        **entry_fields(entry),
        authorization_endpoint="https://slack.com/oauth/v2/authorize",
        token_endpoint="https://slack.com/api/oauth.v2.access",
        revocation_endpoint="https://slack.com/api/auth.revoke",
        revocation_style="slack",
        userinfo_endpoint=None,
        issuer=None,
        jwks_uri=None,
        is_oidc=False,
        returns_iss=False,
        supports_pkce=False,
        default_scopes=(),
        scope_separator=",",
        scope_param="user_scope",
        extra_authorize_params={},
        token_endpoint_auth_method="client_secret_basic",
        token_response_path="authed_user",
        tokens_expire=False,
        default_expires_in=None,
        rotates_refresh_tokens=True,
        refresh_scope=None,
    )


KIND = ProviderKind(name="slack", display_name="Slack", build=build)
