"""The provider registry: what the binder knows about each third-party OAuth 2.0 / OIDC provider.

A `ProviderSpec` is everything provider-specific the binder needs to run the authorization code
flow (endpoints, scope syntax, PKCE, RFC 9207 `iss`, ID-token checks), to refresh and to revoke.
Six built-ins carry each provider's documented quirks, with the page relied on next to each
definition; generic OIDC providers are configured from their discovery document and generic
OAuth 2.0 providers from explicit endpoints.

The registry is built once at start from the PROVIDERS environment variable (a JSON list, no
secrets in it: client secrets live in Secrets Manager and only their ARNs appear here). What an
entry may hold is `binder.provider_schema`'s business alone (the CDK app runs the same parser at
synth); this module turns a parsed entry into a spec. Every error names the provider and the
field and never echoes a value, so a bad configuration fails the process with a message that is
safe to log.
"""

# S106 flags keyword arguments such as token_endpoint="https://..." as hard-coded passwords;
# in this module they are endpoint URLs and method names, never secrets.
# ruff: noqa: S106

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote

import anyio
import httpx2

from binder.provider_schema import BUILTIN_KINDS as BUILTIN_KINDS
from binder.provider_schema import (
    GUID_RE,
    KIND_SCHEMAS,
    SALESFORCE_TENANTS,
    ProviderEntry,
    check_client_id,
    check_issuer,
    check_name,
    check_scope_list,
    check_secret_arn,
    check_url,
    microsoft_tenant,
    parse_entries,
    salesforce_tenant,
    scope_problem,
)
from binder.provider_schema import KINDS as KINDS
from binder.provider_schema import MAX_SCOPES as MAX_SCOPES
from binder.provider_schema import ProviderConfigError as ProviderConfigError
from binder.provider_schema import config_error as _err

REVOCATION_STYLES: Final = ("rfc7009", "slack", "github", "none")
TOKEN_ENDPOINT_AUTH_METHODS: Final = ("client_secret_post", "client_secret_basic")

DISCOVERY_TIMEOUT_SECONDS: Final = 5.0
# A discovery document is a few KiB; the cap keeps a hostile or broken issuer from making the
# binder buffer an unbounded body.
MAX_DISCOVERY_BYTES: Final = 256 * 1024

# Parameters the binder itself sets on the authorization request; configuration must not
# override them (an extra "redirect_uri" or "state" would silently break the binding checks).
_PROTOCOL_PARAMS: Final = frozenset(
    {
        "client_id",
        "code_challenge",
        "code_challenge_method",
        "nonce",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "user_scope",
    }
)

MICROSOFT_MULTI_TENANT_ISSUER: Final = "https://login.microsoftonline.com/{tenantid}/v2.0"
_MICROSOFT_ISSUER_RE: Final = re.compile(
    rf"https://login\.microsoftonline\.com/({GUID_RE.pattern})/v2\.0"
)
# The tenant every personal Microsoft account signs in through; its ID tokens carry this issuer.
MICROSOFT_CONSUMERS_TENANT_ID: Final = "9188040d-6c67-4c5b-b112-36a304b66dad"


class ProviderDiscoveryError(ProviderConfigError):
    """OIDC discovery failed or returned a document the binder refuses to trust."""


@dataclass(frozen=True, kw_only=True)
class ProviderSpec:
    """One configured provider. Built by `builtin`, `discover_oidc` or `generic_oauth2`.

    `tokens_expire=False` means a token response without `expires_in` is a token without expiry
    (GitHub OAuth apps, Slack without token rotation); an `expires_in` that is present is always
    honoured. `default_expires_in` fills in a missing `expires_in` for providers that never send
    one (Salesforce); where it is None the provider is documented to send `expires_in`.
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
    # host; issuer_matches needs the Microsoft one.
    tenant: str | None = None
    # Other exact `iss` values the provider documents for the same issuer (Google's legacy
    # "accounts.google.com").
    issuer_aliases: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        name = self.name
        if self.kind not in KINDS:
            raise _err(name, "kind", f"must be one of {', '.join(KINDS)}")
        if self.revocation_style not in REVOCATION_STYLES:
            raise _err(name, "revocation_style", f"must be one of {', '.join(REVOCATION_STYLES)}")
        if (self.revocation_style == "none") != (self.revocation_endpoint is None):
            raise _err(name, "revocation_endpoint", "must be set exactly when revocation is")
        if self.token_endpoint_auth_method not in TOKEN_ENDPOINT_AUTH_METHODS:
            raise _err(
                name,
                "token_endpoint_auth_method",
                f"must be one of {', '.join(TOKEN_ENDPOINT_AUTH_METHODS)}",
            )
        if self.scope_separator not in (" ", ","):
            raise _err(name, "scope_separator", "must be a space or a comma")
        if self.scope_param not in ("scope", "user_scope"):
            raise _err(name, "scope_param", "must be 'scope' or 'user_scope'")
        if self.is_oidc and (self.issuer is None or self.jwks_uri is None):
            raise _err(name, "issuer", "and jwks_uri are required for an OIDC provider")
        if self.returns_iss and self.issuer is None:
            raise _err(name, "issuer", "is required when the provider returns iss")
        if self.default_expires_in is not None and self.default_expires_in <= 0:
            raise _err(name, "default_expires_in", "must be a positive number of seconds")
        clash = _PROTOCOL_PARAMS.intersection(self.extra_authorize_params)
        if clash:
            raise _err(name, "extra_authorize_params", f"must not set {', '.join(sorted(clash))}")
        # Freeze a private copy so a caller's dict cannot change a spec after the fact.
        object.__setattr__(
            self, "extra_authorize_params", MappingProxyType(dict(self.extra_authorize_params))
        )

    def issuer_matches(self, iss: str) -> bool:
        """Whether `iss` (ID token claim or RFC 9207 parameter) is this provider's issuer.

        Exact string comparison, except Microsoft's multi-tenant endpoints (common and
        organizations), whose documents publish the template
        https://login.microsoftonline.com/{tenantid}/v2.0: there the signing tenant's GUID must
        fill the template, and "organizations" refuses the personal-accounts tenant.
        """
        if not isinstance(iss, str) or self.issuer is None:
            return False
        if self.kind == "microsoft" and self.issuer == MICROSOFT_MULTI_TENANT_ISSUER:
            match = _MICROSOFT_ISSUER_RE.fullmatch(iss)
            if match is None:
                return False
            return not (
                self.tenant == "organizations" and match.group(1) == MICROSOFT_CONSUMERS_TENANT_ID
            )
        return iss == self.issuer or iss in self.issuer_aliases

    def callback_url(self, public_base_url: str) -> str:
        """The redirect URI registered with the provider: one per provider (mix-up defence)."""
        return f"{public_base_url.rstrip('/')}/oauth2/callback/{self.name}"


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


def _allowed(provider: str, allowed_scopes: Sequence[str] | None) -> frozenset[str] | None:
    if allowed_scopes is None:
        return None
    return frozenset(check_scope_list(provider, "allowed_scopes", allowed_scopes))


# --- built-in providers -------------------------------------------------------------------


def builtin(
    kind: str,
    *,
    name: str,
    client_id: str,
    secret_arn: str | None = None,
    tenant: str | None = None,
    allowed_scopes: Sequence[str] | None = None,
) -> ProviderSpec:
    """A built-in provider with its documented endpoints and quirks.

    `tenant` is for microsoft (common|organizations|consumers|<tenant GUID>; default common)
    and salesforce (login|test|<My Domain host>; default login); other kinds refuse it.
    """
    name = check_name(name)
    if kind not in BUILTIN_KINDS:
        raise _err(name, "kind", f"must be one of {', '.join(BUILTIN_KINDS)}")
    client_id = check_client_id(name, client_id)
    secret_arn = check_secret_arn(name, secret_arn)
    allowed = _allowed(name, allowed_scopes)
    if tenant is not None and "tenant" not in KIND_SCHEMAS[kind].fields:
        raise _err(name, "tenant", f"is not used by kind {kind!r}")
    common: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "client_id": client_id,
        "secret_arn": secret_arn,
        "allowed_scopes": allowed,
    }
    if kind == "github":
        return _github(common)
    if kind == "google":
        return _google(common)
    if kind == "microsoft":
        return _microsoft(common, tenant)
    if kind == "salesforce":
        return _salesforce(common, tenant)
    if kind == "atlassian":
        return _atlassian(common)
    return _slack(common)


def _github(common: dict[str, Any]) -> ProviderSpec:
    # Endpoints and PKCE: https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps
    #   and https://github.blog/changelog/2025-07-14-pkce-support-for-oauth-and-github-app-authentication
    #   (PKCE accepted, S256 only, not required).
    # Revocation: https://docs.github.com/en/rest/apps/oauth-applications#delete-an-app-token
    #   (DELETE /applications/{client_id}/token, basic auth with client id and secret, JSON body).
    # Expiry and rotation: https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens
    #   OAuth-app tokens never expire. A GitHub App's user tokens do (expires_in 28800) and its
    #   refresh token is single-use, so rotation is declared: harmless for OAuth apps, which get
    #   no refresh token at all.
    # Quirks for the binder: the token endpoint answers form-encoded unless sent
    # "Accept: application/json", and reports errors with HTTP 200 and an "error" field.
    # GitHub sends no RFC 9207 iss and is not an OIDC provider for users.
    return ProviderSpec(
        **common,
        authorization_endpoint="https://github.com/login/oauth/authorize",
        token_endpoint="https://github.com/login/oauth/access_token",
        revocation_endpoint=(
            f"https://api.github.com/applications/{quote(common['client_id'], safe='')}/token"
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


def _google(common: dict[str, Any]) -> ProviderSpec:
    # Endpoints: https://accounts.google.com/.well-known/openid-configuration as documented at
    #   https://developers.google.com/identity/openid-connect/reference (S256 listed in
    #   code_challenge_methods_supported; both client_secret_post and _basic accepted).
    # Offline access: https://developers.google.com/identity/protocols/oauth2/web-server
    #   (access_type=offline for a refresh token, prompt=consent so one is issued again on
    #   re-consent, include_granted_scopes=true for incremental authorization; revocation is
    #   POST token=... to oauth2.googleapis.com/revoke; access tokens carry expires_in).
    # Issuer: https://developers.google.com/identity/gsi/web/guides/verify-google-id-token
    #   ("iss" is https://accounts.google.com or, for legacy clients, accounts.google.com).
    # returns_iss: conservative False. The reference lists authorization_response_iss_parameter
    #   _supported as a field, but the published discovery document we could check does not set
    #   it; requiring iss would break every login if Google omits it. The binder still compares
    #   iss whenever one is present.
    # Google does not rotate refresh tokens (the refresh response carries none).
    return ProviderSpec(
        **common,
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


def _microsoft(common: dict[str, Any], tenant: str | None) -> ProviderSpec:
    # Endpoints: https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow
    #   and https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols#endpoints
    #   (the tenant is a path segment; offline_access yields a refresh token; PKCE S256
    #   supported; secrets sent in the body in every example).
    # Issuer: https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration
    #   (and .../organizations/...) publish the template https://login.microsoftonline.com/
    #   {tenantid}/v2.0, filled with the signing tenant's GUID; .../consumers/v2.0/.well-known/
    #   openid-configuration publishes .../9188040d-6c67-4c5b-b112-36a304b66dad/v2.0, the
    #   personal-accounts tenant, which "common" also yields for personal accounts.
    # Refresh: https://learn.microsoft.com/en-us/entra/identity-platform/refresh-tokens
    #   (a new refresh token comes with every refresh, but the old one is not revoked: no
    #   rotation in the sense used here). No RFC 7009 revocation endpoint exists; a user's
    #   grants are removed in the Entra admin center or My Apps. No RFC 9207 iss.
    tenant = microsoft_tenant(common["name"], tenant) or "common"
    if tenant in ("common", "organizations"):
        issuer = MICROSOFT_MULTI_TENANT_ISSUER
    elif tenant == "consumers":
        issuer = f"https://login.microsoftonline.com/{MICROSOFT_CONSUMERS_TENANT_ID}/v2.0"
    else:
        issuer = f"https://login.microsoftonline.com/{tenant}/v2.0"
    base = f"https://login.microsoftonline.com/{tenant}"
    return ProviderSpec(
        **common,
        tenant=tenant,
        authorization_endpoint=f"{base}/oauth2/v2.0/authorize",
        token_endpoint=f"{base}/oauth2/v2.0/token",
        revocation_endpoint=None,
        revocation_style="none",
        userinfo_endpoint="https://graph.microsoft.com/oidc/userinfo",
        issuer=issuer,
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


def _salesforce_host(provider: str, tenant: str | None) -> str:
    value = salesforce_tenant(provider, tenant) or "login"
    return f"{value}.salesforce.com" if value in SALESFORCE_TENANTS else value


def _salesforce(common: dict[str, Any], tenant: str | None) -> ProviderSpec:
    # Endpoints: https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_endpoints.htm
    #   (login.salesforce.com, test.salesforce.com for sandboxes, or the org's My Domain).
    # Revocation: https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_revoke_token.htm
    #   (POST token=... form-encoded to /services/oauth2/revoke; a refresh token revokes its
    #   access tokens too).
    # PKCE and rotation: https://developer.salesforce.com/docs/atlas.en-us.packagingGuide.meta/packagingGuide/secure_code_ac_eca.htm
    #   (PKCE S256 for confidential clients too; refresh token rotation is an app setting that
    #   invalidates the old token, so rotation is declared: correct either way, since a refresh
    #   response without a refresh token keeps the old one).
    # Refresh scope: "refresh_token" must be requested to get one (web server flow docs).
    # Expiry: the token response has no expires_in (it has issued_at); access tokens live as
    #   long as the org's session timeout, 2 hours by default but as short as 15 minutes. We
    #   assume the shortest setting, 900 s: an early refresh costs one call, a late one hands
    #   the agent a dead token. Responses also carry instance_url, which API calls need.
    # Not treated as OIDC (the ID token's issuer depends on the login host and My Domain
    # settings); no RFC 9207 iss.
    host = _salesforce_host(common["name"], tenant)
    base = f"https://{host}/services/oauth2"
    return ProviderSpec(
        **common,
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


def _atlassian(common: dict[str, Any]) -> ProviderSpec:
    # Endpoints and parameters: https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/
    #   (auth.atlassian.com/authorize with audience=api.atlassian.com and prompt=consent,
    #   space-separated scopes, offline_access for a refresh token, access tokens of 1 hour with
    #   expires_in; client id and secret in the token request body; /me for the user).
    # Rotation: https://community.developer.atlassian.com/t/updated-31-january-2022-action-required-deprecating-persistent-refresh-tokens/54172
    #   (every refresh returns a new refresh token and invalidates the old one; reuse outside a
    #   10-minute leeway revokes the whole family).
    # PKCE: conservative False. The 3LO page never mentions code_challenge, so we cannot claim
    #   the protection; state and the binding checks still apply. No revocation endpoint is
    #   documented (users remove access under their Atlassian account's connected apps). No
    #   RFC 9207 iss, no ID token.
    return ProviderSpec(
        **common,
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


def _slack(common: dict[str, Any]) -> ProviderSpec:
    # Endpoints: https://docs.slack.dev/authentication/installing-with-oauth
    #   (slack.com/oauth/v2/authorize; comma-separated scope lists; user-token scopes go in
    #   user_scope and the user token comes back nested under "authed_user" of oauth.v2.access).
    # Client authentication: https://docs.slack.dev/reference/methods/oauth.v2.access
    #   ("avoid sending client_id and client_secret as parameters ... use HTTP Basic").
    # Revocation: https://docs.slack.dev/reference/methods/auth.revoke (the token itself is
    #   the credential). Slack answers HTTP 200 with "ok": false on errors.
    # Expiry: https://docs.slack.dev/authentication/using-token-rotation (tokens never expire
    #   unless the app enables rotation; then expires_in is 43200 and each refresh revokes the
    #   old refresh token).
    # PKCE: conservative False. https://docs.slack.dev/authentication/using-pkce: enabling it
    #   turns the app into a public client, one way, which a confidential server should not do.
    # Uncertain: whether a user-token refresh response is also nested under authed_user; the
    # binder should accept the top-level fields when authed_user is absent.
    return ProviderSpec(
        **common,
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


# --- generic providers --------------------------------------------------------------------


def generic_oauth2(
    *,
    name: str,
    client_id: str,
    secret_arn: str | None,
    authorization_endpoint: str,
    token_endpoint: str,
    revocation_endpoint: str | None = None,
    userinfo_endpoint: str | None = None,
    scopes: Sequence[str] = (),
    allow_insecure_loopback: bool = False,
    allowed_scopes: Sequence[str] | None = None,
) -> ProviderSpec:
    """A plain OAuth 2.0 provider (no ID token) from explicit endpoints.

    Defaults are the conservative reading of RFC 6749: client_secret_basic (the one method
    servers MUST support, section 2.3.1), PKCE always sent (unknown parameters are ignored,
    section 3.1, so it costs nothing where unsupported), and refresh tokens treated as
    single-use.
    """
    name = check_name(name)
    loop = allow_insecure_loopback
    revocation = (
        None
        if revocation_endpoint is None
        else check_url(
            name, "revocation_endpoint", revocation_endpoint, allow_insecure_loopback=loop
        )
    )
    userinfo = (
        None
        if userinfo_endpoint is None
        else check_url(name, "userinfo_endpoint", userinfo_endpoint, allow_insecure_loopback=loop)
    )
    return ProviderSpec(
        name=name,
        kind="oauth2",
        client_id=check_client_id(name, client_id),
        secret_arn=check_secret_arn(name, secret_arn),
        authorization_endpoint=check_url(
            name, "authorization_endpoint", authorization_endpoint, allow_insecure_loopback=loop
        ),
        token_endpoint=check_url(
            name, "token_endpoint", token_endpoint, allow_insecure_loopback=loop
        ),
        revocation_endpoint=revocation,
        revocation_style="none" if revocation is None else "rfc7009",
        userinfo_endpoint=userinfo,
        issuer=None,
        jwks_uri=None,
        is_oidc=False,
        returns_iss=False,
        supports_pkce=True,
        default_scopes=check_scope_list(name, "scopes", scopes),
        allowed_scopes=_allowed(name, allowed_scopes),
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


def discovery_url(issuer: str) -> str:
    """OIDC Discovery 1.0 section 4: strip one trailing "/", append the well-known path."""
    return issuer.removesuffix("/") + "/.well-known/openid-configuration"


async def _fetch_discovery(name: str, url: str, http: httpx2.AsyncClient) -> bytes:
    try:
        with anyio.fail_after(DISCOVERY_TIMEOUT_SECONDS):
            async with http.stream(
                "GET",
                url,
                headers={"Accept": "application/json"},
                timeout=DISCOVERY_TIMEOUT_SECONDS,
                # A redirect would let another host answer for the issuer: refuse it.
                follow_redirects=False,
            ) as response:
                if response.status_code != 200:
                    raise ProviderDiscoveryError(
                        f"provider {name!r}: issuer discovery answered HTTP "
                        f"{response.status_code}, expected 200"
                    )
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DISCOVERY_BYTES:
                        raise ProviderDiscoveryError(
                            f"provider {name!r}: issuer discovery document is too large"
                        )
                return bytes(body)
    except TimeoutError:
        raise ProviderDiscoveryError(
            f"provider {name!r}: issuer discovery timed out after {DISCOVERY_TIMEOUT_SECONDS:g} s"
        ) from None
    except httpx2.HTTPError as exc:
        raise ProviderDiscoveryError(
            f"provider {name!r}: issuer discovery failed ({type(exc).__name__})"
        ) from None


def _doc_list(name: str, doc: Mapping[str, Any], key: str) -> list[str] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProviderDiscoveryError(
            f"provider {name!r}: discovery field {key} must be a list of strings"
        )
    return value


async def discover_oidc(
    *,
    name: str,
    issuer: str,
    client_id: str,
    secret_arn: str | None,
    http: httpx2.AsyncClient,
    allow_insecure_loopback: bool = False,
    scopes: Sequence[str] | None = None,
    allowed_scopes: Sequence[str] | None = None,
) -> ProviderSpec:
    """An OIDC provider from its discovery document.

    The document's "issuer" must equal the configured issuer exactly (OIDC Discovery section
    4.3; this is the mix-up defence for discovered providers), and every endpoint in it must
    pass the same URL rules as configured ones. `scopes` are extra default scopes.
    """
    name = check_name(name)
    loop = allow_insecure_loopback
    issuer = check_issuer(name, issuer, allow_insecure_loopback=loop)
    client_id = check_client_id(name, client_id)
    secret_arn = check_secret_arn(name, secret_arn)
    extra_scopes = check_scope_list(name, "scopes", scopes if scopes is not None else ())
    allowed = _allowed(name, allowed_scopes)

    raw = await _fetch_discovery(name, discovery_url(issuer), http)
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProviderDiscoveryError(
            f"provider {name!r}: issuer discovery document is not valid JSON"
        ) from None
    if not isinstance(doc, dict):
        raise ProviderDiscoveryError(
            f"provider {name!r}: issuer discovery document is not a JSON object"
        )
    if doc.get("issuer") != issuer:
        raise ProviderDiscoveryError(
            f"provider {name!r}: discovery document's issuer does not equal the configured "
            "issuer (possible mix-up); refusing it"
        )

    def endpoint(key: str) -> str:
        try:
            return check_url(name, key, doc.get(key), allow_insecure_loopback=loop)
        except ProviderConfigError as exc:
            raise ProviderDiscoveryError(f"{exc} (in the discovery document)") from None

    def optional_endpoint(key: str) -> str | None:
        return None if doc.get(key) is None else endpoint(key)

    authorization_endpoint = endpoint("authorization_endpoint")
    token_endpoint = endpoint("token_endpoint")
    jwks_uri = endpoint("jwks_uri")
    revocation_endpoint = optional_endpoint("revocation_endpoint")
    userinfo_endpoint = optional_endpoint("userinfo_endpoint")

    # RFC 8414 section 2: absence means "not advertised", not "unsupported". Many providers that
    # support S256 omit the field (Microsoft Entra does), and RFC 6749 section 3.1 has servers
    # ignore unknown parameters, so sending PKCE anyway is the safer default. A list that
    # omits S256 is taken at its word.
    methods = _doc_list(name, doc, "code_challenge_methods_supported")
    supports_pkce = methods is None or "S256" in methods

    # OIDC Discovery section 3: when absent the default is client_secret_basic.
    auth_methods = _doc_list(name, doc, "token_endpoint_auth_methods_supported")
    if auth_methods is None or "client_secret_basic" in auth_methods:
        auth_method = "client_secret_basic"
    elif "client_secret_post" in auth_methods:
        auth_method = "client_secret_post"
    else:
        raise ProviderDiscoveryError(
            f"provider {name!r}: token endpoint supports neither client_secret_basic nor "
            "client_secret_post"
        )

    scopes_supported = _doc_list(name, doc, "scopes_supported") or []
    defaults = ["openid"]
    if "offline_access" in scopes_supported:
        defaults.append("offline_access")
    return ProviderSpec(
        name=name,
        kind="oidc",
        client_id=client_id,
        secret_arn=secret_arn,
        authorization_endpoint=authorization_endpoint,
        token_endpoint=token_endpoint,
        revocation_endpoint=revocation_endpoint,
        revocation_style="none" if revocation_endpoint is None else "rfc7009",
        userinfo_endpoint=userinfo_endpoint,
        issuer=issuer,
        jwks_uri=jwks_uri,
        is_oidc=True,
        returns_iss=doc.get("authorization_response_iss_parameter_supported") is True,
        supports_pkce=supports_pkce,
        default_scopes=tuple(dict.fromkeys((*defaults, *extra_scopes))),
        allowed_scopes=allowed,
        scope_separator=" ",
        scope_param="scope",
        extra_authorize_params={},
        token_endpoint_auth_method=auth_method,
        token_response_path=None,
        tokens_expire=True,
        default_expires_in=None,
        # Unknown for a generic provider: treat refresh tokens as single-use.
        rotates_refresh_tokens=True,
        refresh_scope=None,
    )


# --- the registry -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PendingOidc:
    """A kind "oidc" entry whose discovery document has not been fetched yet."""

    name: str
    issuer: str
    client_id: str
    secret_arn: str | None
    scopes: tuple[str, ...] = ()
    allowed_scopes: tuple[str, ...] | None = None


class ProviderRegistry:
    """The configured providers by name. OIDC discovery happens on first use, once."""

    def __init__(
        self,
        providers: Sequence[ProviderSpec | PendingOidc] = (),
        *,
        allow_insecure_loopback: bool = False,
    ) -> None:
        self._order: list[str] = []
        self._resolved: dict[str, ProviderSpec] = {}
        self._pending: dict[str, PendingOidc] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._allow_insecure_loopback = allow_insecure_loopback
        for item in providers:
            if item.name in self:
                raise _err(item.name, "name", "is configured more than once")
            self._order.append(item.name)
            if isinstance(item, ProviderSpec):
                self._resolved[item.name] = item
            else:
                self._pending[item.name] = item

    @classmethod
    def from_json(cls, text: str, *, allow_insecure_loopback: bool = False) -> ProviderRegistry:
        """Parse the PROVIDERS variable. Built-ins and oauth2 resolve now; oidc on first get."""
        entries = parse_entries(text, allow_insecure_loopback=allow_insecure_loopback)
        return cls(
            [spec_from_entry(e, allow_insecure_loopback=allow_insecure_loopback) for e in entries],
            allow_insecure_loopback=allow_insecure_loopback,
        )

    def names(self) -> tuple[str, ...]:
        return tuple(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._resolved or name in self._pending

    async def get(self, name: str, http: httpx2.AsyncClient) -> ProviderSpec:
        """The provider's spec; KeyError for an unknown name.

        The first call for an oidc provider fetches its discovery document; concurrent first
        calls share one fetch (per-name lock). A failed discovery is not cached, so the next
        call tries again.
        """
        spec = self._resolved.get(name)
        if spec is not None:
            return spec
        if name not in self._pending:
            raise KeyError(name)
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = anyio.Lock()
        async with lock:
            spec = self._resolved.get(name)
            if spec is not None:
                return spec
            entry = self._pending[name]
            spec = await discover_oidc(
                name=entry.name,
                issuer=entry.issuer,
                client_id=entry.client_id,
                secret_arn=entry.secret_arn,
                http=http,
                allow_insecure_loopback=self._allow_insecure_loopback,
                scopes=entry.scopes,
                allowed_scopes=entry.allowed_scopes,
            )
            self._resolved[name] = spec
            return spec


def spec_from_entry(
    entry: ProviderEntry, *, allow_insecure_loopback: bool = False
) -> ProviderSpec | PendingOidc:
    """The spec of a parsed entry (`provider_schema.parse_entry`), or the pending oidc one."""
    if entry.kind in BUILTIN_KINDS:
        return builtin(
            entry.kind,
            name=entry.name,
            client_id=entry.client_id,
            secret_arn=entry.secret_arn,
            tenant=entry.tenant,
            allowed_scopes=entry.allowed_scopes,
        )
    if entry.kind == "oauth2":
        return generic_oauth2(
            name=entry.name,
            client_id=entry.client_id,
            secret_arn=entry.secret_arn,
            authorization_endpoint=_present(entry, "authorization_endpoint"),
            token_endpoint=_present(entry, "token_endpoint"),
            revocation_endpoint=entry.revocation_endpoint,
            userinfo_endpoint=entry.userinfo_endpoint,
            scopes=entry.scopes,
            allow_insecure_loopback=allow_insecure_loopback,
            allowed_scopes=entry.allowed_scopes,
        )
    return PendingOidc(
        name=entry.name,
        issuer=_present(entry, "issuer"),
        client_id=entry.client_id,
        secret_arn=entry.secret_arn,
        scopes=entry.scopes,
        allowed_scopes=entry.allowed_scopes,
    )


def _present(entry: ProviderEntry, field_name: str) -> str:
    """A field the entry's kind requires (parse_entry saw to it; this narrows the type)."""
    value = getattr(entry, field_name)
    if not isinstance(value, str):
        raise _err(entry.name, field_name, "is required")
    return value
