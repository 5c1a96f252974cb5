"""Microsoft 365 (Microsoft Entra ID, the identity platform's v2.0 endpoints).

- Endpoints: https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow
  and https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols#endpoints
  (the tenant is a path segment; offline_access yields a refresh token; PKCE S256 supported;
  secrets sent in the body in every example).
- Issuer: https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration (and
  .../organizations/...) publish the template https://login.microsoftonline.com/{tenantid}/v2.0,
  filled with the signing tenant's GUID; .../consumers/v2.0/.well-known/openid-configuration
  publishes .../9188040d-6c67-4c5b-b112-36a304b66dad/v2.0, the personal-accounts tenant, which
  "common" also yields for personal accounts.
- Refresh: https://learn.microsoft.com/en-us/entra/identity-platform/refresh-tokens (a new
  refresh token comes with every refresh, but the old one is not revoked: no rotation in the
  sense used here). No RFC 7009 revocation endpoint exists; a user's grants are removed in the
  Entra admin center or My Apps. No RFC 9207 iss.

Field `tenant`: common (default), organizations, consumers or a tenant GUID.
"""

from __future__ import annotations

from typing import Final

from binder.providers.schema import (
    GUID_RE,
    BuildContext,
    Field,
    ProviderEntry,
    ProviderKind,
    config_error,
)
from binder.providers.spec import TENANT_PLACEHOLDER, ProviderSpec, entry_fields

TENANTS: Final = ("common", "organizations", "consumers")
MULTI_TENANT_ISSUER: Final = f"https://login.microsoftonline.com/{TENANT_PLACEHOLDER}/v2.0"
# The tenant every personal Microsoft account signs in through; its ID tokens carry this issuer.
CONSUMERS_TENANT_ID: Final = "9188040d-6c67-4c5b-b112-36a304b66dad"


def check_tenant(provider: str, tenant: object, loopback: bool = False) -> str:
    """common, organizations, consumers or a tenant GUID, lower-cased."""
    value = tenant.strip().lower() if isinstance(tenant, str) else ""
    if value in TENANTS or GUID_RE.fullmatch(value):
        return value
    # A verified domain (contoso.com) also works as a path segment, but ID tokens carry the
    # tenant GUID, which cannot be derived from the domain offline: refuse rather than weaken
    # the issuer check.
    raise config_error(
        provider, "tenant", "must be common, organizations, consumers or a tenant ID (GUID)"
    )


def build(entry: ProviderEntry, context: BuildContext) -> ProviderSpec:
    tenant = entry.text("tenant") or "common"
    if tenant in ("common", "organizations"):
        issuer = MULTI_TENANT_ISSUER
    elif tenant == "consumers":
        issuer = f"https://login.microsoftonline.com/{CONSUMERS_TENANT_ID}/v2.0"
    else:
        issuer = f"https://login.microsoftonline.com/{tenant}/v2.0"
    base = f"https://login.microsoftonline.com/{tenant}"
    return ProviderSpec(
        **entry_fields(entry),
        tenant=tenant,
        authorization_endpoint=f"{base}/oauth2/v2.0/authorize",
        token_endpoint=f"{base}/oauth2/v2.0/token",
        revocation_endpoint=None,
        revocation_style="none",
        userinfo_endpoint="https://graph.microsoft.com/oidc/userinfo",
        issuer=issuer,
        refused_issuer_tenants=(
            frozenset({CONSUMERS_TENANT_ID}) if tenant == "organizations" else frozenset()
        ),
        jwks_uri=f"{base}/discovery/v2.0/keys",
        is_oidc=True,
        returns_iss=False,
        supports_pkce=True,
        default_scopes=("openid",),
        scope_separator=" ",
        scope_param="scope",
        extra_authorize_params={},
        token_endpoint_auth_method="client_secret_post",
        token_response_path=None,
        tokens_expire=True,
        default_expires_in=None,
        rotates_refresh_tokens=False,
        refresh_scope="offline_access",
    )


KIND = ProviderKind(
    name="microsoft",
    display_name="Microsoft 365",
    fields=(Field(name="tenant", check=check_tenant),),
    build=build,
)
