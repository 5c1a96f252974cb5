"""Any OAuth 2.0 provider (no ID token), configured with explicit endpoints.

- RFC 6749 (https://www.rfc-editor.org/rfc/rfc6749): client_secret_basic is the one client
  authentication method servers MUST support (section 2.3.1); unknown request parameters are
  ignored (section 3.1), so PKCE (RFC 7636) is always sent: it costs nothing where unsupported.
- RFC 7009 (https://www.rfc-editor.org/rfc/rfc7009): revocation, when `revocation_endpoint` is
  set.

Refresh tokens are treated as single-use (rotation declared), the conservative reading.
Fields: `authorization_endpoint`, `token_endpoint` (required), `revocation_endpoint`,
`userinfo_endpoint` (the agent's whoami tool), `scopes` (requested on every authorization).
The display name is the entry's `display_name`, else its name.
"""

from __future__ import annotations

from binder.providers.schema import (
    BuildContext,
    ProviderEntry,
    ProviderKind,
    scopes_field,
    url_field,
)
from binder.providers.spec import ProviderSpec, entry_fields


def build(entry: ProviderEntry, context: BuildContext) -> ProviderSpec:
    revocation = entry.text("revocation_endpoint")
    return ProviderSpec(
        **entry_fields(entry),
        authorization_endpoint=entry.required_text("authorization_endpoint"),
        token_endpoint=entry.required_text("token_endpoint"),
        revocation_endpoint=revocation,
        revocation_style="none" if revocation is None else "rfc7009",
        userinfo_endpoint=entry.text("userinfo_endpoint"),
        issuer=None,
        jwks_uri=None,
        is_oidc=False,
        returns_iss=False,
        supports_pkce=True,
        default_scopes=entry.scope_list(),
        scope_separator=" ",
        scope_param="scope",
        extra_authorize_params={},
        token_endpoint_auth_method="client_secret_basic",
        token_response_path=None,
        tokens_expire=True,
        default_expires_in=None,
        rotates_refresh_tokens=True,
        refresh_scope=None,
    )


KIND = ProviderKind(
    name="oauth2",
    display_name=None,
    fields=(
        url_field("authorization_endpoint", required=True),
        url_field("token_endpoint", required=True),
        url_field("revocation_endpoint"),
        url_field("userinfo_endpoint"),
        scopes_field(),
    ),
    build=build,
)
