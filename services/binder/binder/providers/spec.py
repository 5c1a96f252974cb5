"""What the binder knows about one configured provider (`ProviderSpec`), and the scope rules.

A `ProviderSpec` is everything provider-specific the binder needs to run the authorization code
flow (endpoints, scope syntax, PKCE, RFC 9207 `iss`, ID-token checks), to refresh and to revoke.
Each kind's module builds one from a parsed entry, quirks included; the fields are named for
the behaviour they switch, so a new kind picks from them instead of adding branches elsewhere.
Standard library only: the CDK app builds specs at synth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from binder.providers.schema import (
    GUID_RE,
    MAX_SCOPES,
    ProviderEntry,
    config_error,
    scope_problem,
)

REVOCATION_STYLES: Final = ("rfc7009", "slack", "github", "none")
# "none": a public client (RFC 7591 section 2), authenticated by PKCE alone (an mcp provider
# without a client secret).
PUBLIC_CLIENT: Final = "none"
TOKEN_ENDPOINT_AUTH_METHODS: Final = ("client_secret_post", "client_secret_basic", PUBLIC_CLIENT)
# An issuer holding this placeholder is a template (Microsoft's multi-tenant endpoints): the
# `iss` of a token must fill it with a tenant GUID.
TENANT_PLACEHOLDER: Final = "{tenantid}"

# Parameters the binder itself sets on the authorization request; configuration must not
# override them (an extra "redirect_uri" or "state" would silently break the binding checks).
_PROTOCOL_PARAMS: Final = frozenset(
    {
        "client_id",
        "code_challenge",
        "code_challenge_method",
        "nonce",
        "redirect_uri",
        "resource",
        "response_type",
        "scope",
        "state",
        "user_scope",
    }
)


@dataclass(frozen=True, kw_only=True)
class ProviderSpec:
    """One configured provider, as its kind's module built it.

    `tokens_expire=False` means a token response without `expires_in` is a token without expiry
    (GitHub OAuth apps, Slack without token rotation); an `expires_in` that is present is always
    honoured. `default_expires_in` fills in a missing `expires_in` for providers that never send
    one (Salesforce); where it is None the provider is documented to send `expires_in`.
    `display_name` is what pages show; it defaults to the name.
    """

    name: str
    kind: str
    client_id: str
    secret_arn: str | None
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None
    revocation_style: str
    userinfo_endpoint: str | None
    issuer: str | None
    jwks_uri: str | None
    is_oidc: bool
    returns_iss: bool
    supports_pkce: bool
    default_scopes: tuple[str, ...]
    allowed_scopes: frozenset[str] | None
    scope_separator: str
    scope_param: str
    extra_authorize_params: Mapping[str, str] = field(hash=False)
    token_endpoint_auth_method: str
    token_response_path: str | None
    tokens_expire: bool
    default_expires_in: int | None
    rotates_refresh_tokens: bool
    refresh_scope: str | None
    # Microsoft's tenant segment (common|organizations|consumers|<GUID>) or Salesforce's login
    # host.
    tenant: str | None = None
    # Other exact `iss` values the provider documents for the same issuer (Google's legacy
    # "accounts.google.com").
    issuer_aliases: frozenset[str] = frozenset()
    # Tenants a templated issuer must not be filled with (Microsoft's "organizations" refuses
    # the personal-accounts tenant).
    refused_issuer_tenants: frozenset[str] = frozenset()
    # RFC 8707 resource indicator, sent on the authorization request and every token request;
    # tokens are bound to it (an mcp server's canonical URL). None: not sent.
    resource: str | None = None
    display_name: str = ""

    def __post_init__(self) -> None:
        name = self.name
        if not self.display_name:
            object.__setattr__(self, "display_name", name)
        if self.revocation_style not in REVOCATION_STYLES:
            raise config_error(
                name, "revocation_style", f"must be one of {', '.join(REVOCATION_STYLES)}"
            )
        if (self.revocation_style == "none") != (self.revocation_endpoint is None):
            raise config_error(
                name, "revocation_endpoint", "must be set exactly when revocation is"
            )
        if self.token_endpoint_auth_method not in TOKEN_ENDPOINT_AUTH_METHODS:
            raise config_error(
                name,
                "token_endpoint_auth_method",
                f"must be one of {', '.join(TOKEN_ENDPOINT_AUTH_METHODS)}",
            )
        if self.scope_separator not in (" ", ","):
            raise config_error(name, "scope_separator", "must be a space or a comma")
        if self.scope_param not in ("scope", "user_scope"):
            raise config_error(name, "scope_param", "must be 'scope' or 'user_scope'")
        if self.is_oidc and (self.issuer is None or self.jwks_uri is None):
            raise config_error(name, "issuer", "and jwks_uri are required for an OIDC provider")
        if self.returns_iss and self.issuer is None:
            raise config_error(name, "issuer", "is required when the provider returns iss")
        if self.default_expires_in is not None and self.default_expires_in <= 0:
            raise config_error(name, "default_expires_in", "must be a positive number of seconds")
        clash = _PROTOCOL_PARAMS.intersection(self.extra_authorize_params)
        if clash:
            raise config_error(
                name, "extra_authorize_params", f"must not set {', '.join(sorted(clash))}"
            )
        # Freeze a private copy so a caller's dict cannot change a spec after the fact.
        object.__setattr__(
            self, "extra_authorize_params", MappingProxyType(dict(self.extra_authorize_params))
        )

    def issuer_tenant(self, iss: str) -> str | None:
        """The tenant GUID that fills a templated issuer in `iss`; None when the issuer is not
        a template or `iss` does not fill it with a lower-case GUID."""
        if self.issuer is None or TENANT_PLACEHOLDER not in self.issuer:
            return None
        prefix, _, suffix = self.issuer.partition(TENANT_PLACEHOLDER)
        if len(iss) < len(prefix) + len(suffix) or not (
            iss.startswith(prefix) and iss.endswith(suffix)
        ):
            return None
        tenant = iss[len(prefix) : len(iss) - len(suffix)]
        return tenant if GUID_RE.fullmatch(tenant) else None

    def issuer_matches(self, iss: str) -> bool:
        """Whether `iss` (ID token claim or RFC 9207 parameter) is this provider's issuer.

        Exact string comparison, except a templated issuer (Microsoft's common and
        organizations endpoints publish https://login.microsoftonline.com/{tenantid}/v2.0):
        there the signing tenant's GUID must fill the template, and not a refused tenant.
        """
        if not isinstance(iss, str) or self.issuer is None:
            return False
        if TENANT_PLACEHOLDER in self.issuer:
            tenant = self.issuer_tenant(iss)
            return tenant is not None and tenant not in self.refused_issuer_tenants
        return iss == self.issuer or iss in self.issuer_aliases

    def callback_url(self, public_base_url: str) -> str:
        """The redirect URI registered with the provider: one per provider (mix-up defence)."""
        return callback_url(public_base_url, self.name)


def callback_url(public_base_url: str, name: str) -> str:
    """Provider `name`'s redirect URI (also what a client the binder registers itself lists)."""
    return f"{public_base_url.rstrip('/')}/oauth2/callback/{name}"


def entry_fields(entry: ProviderEntry) -> dict[str, Any]:
    """The spec fields every kind takes straight from its entry."""
    return {
        "name": entry.name,
        "kind": entry.kind,
        "client_id": entry.client_id,
        "secret_arn": entry.secret_arn,
        "allowed_scopes": (
            None if entry.allowed_scopes is None else frozenset(entry.allowed_scopes)
        ),
    }


# --- scopes -----------------------------------------------------------------------------


def validate_scopes(spec: ProviderSpec, scopes: Sequence[str]) -> tuple[str, ...]:
    """Check scopes a caller asks for; returns them deduplicated in order.

    Each scope is a non-empty RFC 6749 scope-token without commas (Slack joins with commas), at
    most 50 of them. When the operator set an allow-list, each must be in it or be one the
    binder requests anyway (a default or the refresh scope): an allow-list bounds what callers
    add to the defaults, and an empty one means nothing beyond them. Raises ValueError naming
    the offending scope (ASCII-escaped, so it is safe to log).
    """
    if isinstance(scopes, str) or not isinstance(scopes, Sequence):
        raise ValueError("scopes must be a list of strings")
    if len(scopes) > MAX_SCOPES:
        raise ValueError(f"at most {MAX_SCOPES} scopes may be requested")
    implied = (*spec.default_scopes, spec.refresh_scope)
    for scope in scopes:
        problem = scope_problem(scope)
        if problem is not None:
            raise ValueError(problem)
        if (
            spec.allowed_scopes is not None
            and scope not in spec.allowed_scopes
            and scope not in implied
        ):
            raise ValueError(f"scope {scope[:64]!a} is not allowed for provider {spec.name!r}")
    return tuple(dict.fromkeys(scopes))


def request_scopes(spec: ProviderSpec, scopes: Sequence[str]) -> tuple[str, ...]:
    """The scopes to put on the authorization request: defaults, then the caller's, then the
    scope that makes the provider issue a refresh token; deduplicated, order stable."""
    wanted = validate_scopes(spec, scopes)
    extra = (spec.refresh_scope,) if spec.refresh_scope else ()
    return tuple(dict.fromkeys((*spec.default_scopes, *wanted, *extra)))
