"""GitHub (OAuth apps and GitHub Apps acting for a user).

- Endpoints and PKCE: https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps
  and https://github.blog/changelog/2025-07-14-pkce-support-for-oauth-and-github-app-authentication
  (PKCE accepted, S256 only, not required).
- Revocation: https://docs.github.com/en/rest/apps/oauth-applications#delete-an-app-token
  (DELETE /applications/{client_id}/token, basic auth with client id and secret, JSON body).
- Expiry and rotation: https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens
  OAuth-app tokens never expire. A GitHub App's user tokens do (expires_in 28800) and its
  refresh token is single-use, so rotation is declared: harmless for OAuth apps, which get no
  refresh token at all.

Quirks for the binder: the token endpoint answers form-encoded unless sent
"Accept: application/json", and reports errors with HTTP 200 and an "error" field. GitHub sends
no RFC 9207 iss and is not an OIDC provider for users.
"""

from __future__ import annotations

from urllib.parse import quote

from binder.providers.schema import BuildContext, ProviderEntry, ProviderKind
from binder.providers.spec import ProviderSpec, entry_fields


def build(entry: ProviderEntry, context: BuildContext) -> ProviderSpec:
    return ProviderSpec(
        **entry_fields(entry),
        authorization_endpoint="https://github.com/login/oauth/authorize",
        token_endpoint="https://github.com/login/oauth/access_token",
        revocation_endpoint=(
            f"https://api.github.com/applications/{quote(entry.client_id, safe='')}/token"
        ),
        revocation_style="github",
        userinfo_endpoint="https://api.github.com/user",
        issuer=None,
        jwks_uri=None,
        is_oidc=False,
        returns_iss=False,
        supports_pkce=True,
        default_scopes=(),
        scope_separator=" ",
        scope_param="scope",
        extra_authorize_params={},
        token_endpoint_auth_method="client_secret_post",
        token_response_path=None,
        tokens_expire=False,
        default_expires_in=None,
        rotates_refresh_tokens=True,
        refresh_scope=None,
    )


KIND = ProviderKind(name="github", display_name="GitHub", build=build)
