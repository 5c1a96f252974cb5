"""Salesforce (the web server flow of a connected app or external client app).

- Endpoints: https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_endpoints.htm
  (login.salesforce.com, test.salesforce.com for sandboxes, or the org's My Domain).
- Revocation: https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_revoke_token.htm
  (POST token=... form-encoded to /services/oauth2/revoke; a refresh token revokes its access
  tokens too).
- PKCE and rotation: https://developer.salesforce.com/docs/atlas.en-us.packagingGuide.meta/packagingGuide/secure_code_ac_eca.htm
  (PKCE S256 for confidential clients too; refresh token rotation is an app setting that
  invalidates the old token, so rotation is declared: correct either way, since a refresh
  response without a refresh token keeps the old one).
- Refresh scope: "refresh_token" must be requested to get one (web server flow docs).

Expiry: the token response has no expires_in (it has issued_at); access tokens live as long as
the org's session timeout, 2 hours by default but as short as 15 minutes. We assume the
shortest setting, 900 s: an early refresh costs one call, a late one hands the agent a dead
token. Responses also carry instance_url, which API calls need. Not treated as OIDC (the ID
token's issuer depends on the login host and My Domain settings); no RFC 9207 iss.

Field `tenant`: login (default), test, or a My Domain host (<name>.my.salesforce.com or
<name>.sandbox.my.salesforce.com).
"""

from __future__ import annotations

import re
from typing import Final

from binder.providers.schema import BuildContext, Field, ProviderEntry, ProviderKind, config_error
from binder.providers.spec import ProviderSpec, entry_fields

TENANTS: Final = ("login", "test")
_MY_DOMAIN_RE: Final = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?(?:\.sandbox)?\.my\.salesforce\.com"
)


def check_tenant(provider: str, tenant: object, loopback: bool = False) -> str:
    """login, test or a My Domain host (sandboxes included), lower-cased."""
    value = tenant.strip().lower() if isinstance(tenant, str) else ""
    if value in TENANTS or _MY_DOMAIN_RE.fullmatch(value):
        return value
    raise config_error(
        provider,
        "tenant",
        "must be login, test or a My Domain host (<name>.my.salesforce.com or "
        "<name>.sandbox.my.salesforce.com)",
    )


def build(entry: ProviderEntry, context: BuildContext) -> ProviderSpec:
    tenant = entry.text("tenant") or "login"
    host = f"{tenant}.salesforce.com" if tenant in TENANTS else tenant
    base = f"https://{host}/services/oauth2"
    return ProviderSpec(
        **entry_fields(entry),
        tenant=host,
        authorization_endpoint=f"{base}/authorize",
        token_endpoint=f"{base}/token",
        revocation_endpoint=f"{base}/revoke",
        revocation_style="rfc7009",
        userinfo_endpoint=f"{base}/userinfo",
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
        tokens_expire=True,
        default_expires_in=900,
        rotates_refresh_tokens=True,
        refresh_scope="refresh_token",
    )


KIND = ProviderKind(
    name="salesforce",
    display_name="Salesforce",
    fields=(Field(name="tenant", check=check_tenant),),
    build=build,
)
