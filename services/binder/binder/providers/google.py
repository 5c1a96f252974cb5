"""Google Workspace (Google accounts through Google's OpenID Connect endpoints).

- Endpoints: https://accounts.google.com/.well-known/openid-configuration as documented at
  https://developers.google.com/identity/openid-connect/reference (S256 listed in
  code_challenge_methods_supported; both client_secret_post and _basic accepted).
- Offline access: https://developers.google.com/identity/protocols/oauth2/web-server
  (access_type=offline for a refresh token, prompt=consent so one is issued again on
  re-consent, include_granted_scopes=true for incremental authorization; revocation is POST
  token=... to oauth2.googleapis.com/revoke; access tokens carry expires_in).
- Issuer: https://developers.google.com/identity/gsi/web/guides/verify-google-id-token
  ("iss" is https://accounts.google.com or, for legacy clients, accounts.google.com).

returns_iss is a conservative False: the reference lists
authorization_response_iss_parameter_supported as a field, but the published discovery
document we could check does not set it; requiring iss would break every login if Google omits
it. The binder still compares iss whenever one is present. Google does not rotate refresh
tokens (the refresh response carries none).
"""

from __future__ import annotations

from binder.providers.schema import BuildContext, ProviderEntry, ProviderKind
from binder.providers.spec import ProviderSpec, entry_fields


def build(entry: ProviderEntry, context: BuildContext) -> ProviderSpec:
    return ProviderSpec(
        **entry_fields(entry),
        authorization_endpoint="https://accounts.google.com/o/oauth2/v2/auth",
        token_endpoint="https://oauth2.googleapis.com/token",
        revocation_endpoint="https://oauth2.googleapis.com/revoke",
        revocation_style="rfc7009",
        userinfo_endpoint="https://openidconnect.googleapis.com/v1/userinfo",
        issuer="https://accounts.google.com",
        issuer_aliases=frozenset({"accounts.google.com"}),
        jwks_uri="https://www.googleapis.com/oauth2/v3/certs",
        is_oidc=True,
        returns_iss=False,
        supports_pkce=True,
        default_scopes=("openid",),
        scope_separator=" ",
        scope_param="scope",
        extra_authorize_params={
            "access_type": "offline",
            "prompt": "consent",
            "include_granted_scopes": "true",
        },
        token_endpoint_auth_method="client_secret_post",
        token_response_path=None,
        tokens_expire=True,
        default_expires_in=None,
        rotates_refresh_tokens=False,
        refresh_scope=None,
    )


KIND = ProviderKind(name="google", display_name="Google Workspace", build=build)
