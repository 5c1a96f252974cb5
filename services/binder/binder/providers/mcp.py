"""An MCP server, as a client of the MCP authorization spec (2025-11-25).

- MCP authorization: https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization
  The server is an OAuth 2.1 protected resource; its authorization server is found through
  its Protected Resource Metadata (RFC 9728: https://www.rfc-editor.org/rfc/rfc9728), named by
  the `resource_metadata` parameter of the 401 challenge, else at the well-known URLs.
- Authorization server metadata: RFC 8414 (https://www.rfc-editor.org/rfc/rfc8414), then
  OpenID Connect Discovery; `issuer` must equal the authorization server's URL exactly (RFC 8414
  section 3.3), and `code_challenge_methods_supported` must list S256 (the MCP spec has
  clients refuse a server that does not advertise PKCE).
- Resource indicators: RFC 8707 (https://www.rfc-editor.org/rfc/rfc8707): `resource` (the
  PRM's, which must equal the configured URL's canonical form) goes on the authorization
  request and on every token request, so tokens are bound to this server.
- Client registration, in the spec's order: the entry's `client_id` (a secret at
  `secret_arn`, else a public client, which `public_client: true` declares so that the CDK app
  creates no secret for it); else the binder's Client ID Metadata Document
  (`client_id` = `{PUBLIC_BASE_URL}/oauth2/client-metadata.json`) when the authorization
  server says `client_id_metadata_document_supported`; else Dynamic Client Registration
  (RFC 7591), once per issuer, kept in Secrets Manager (binder.registrations); else refused.
- RFC 9207 `iss` on the callback when the server advertises it (the broker's check).

Fields: `url` (required: the MCP endpoint), `scopes` (else the challenge's `scope`, else the
PRM's `scopes_supported`), `public_client` (true: the pre-registered `client_id` has no
secret; PKCE only). This module decides what to trust and stays on the standard library
(the CDK app parses entries at synth); binder.providers.mcp_discovery does the fetching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from binder.providers.schema import (
    BuildContext,
    ProviderConfigError,
    ProviderDiscoveryError,
    ProviderEntry,
    ProviderKind,
    ResolveContext,
    check_url,
    config_error,
    flag_field,
    scope_problem,
    scopes_field,
    url_field,
)
from binder.providers.spec import ProviderSpec, entry_fields

# The binder's Client ID Metadata Document, on its public port: the only unauthenticated
# /oauth2/ path (the edge must let it through without a sign-in).
CLIENT_METADATA_PATH: Final = "/oauth2/client-metadata.json"
CLIENT_NAME: Final = "Secure agents token binder"
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}


def discovery_error(name: str, problem: str) -> ProviderDiscoveryError:
    return ProviderDiscoveryError(f"provider {name!r}: {problem}")


def canonical_resource(url: str) -> str:
    """RFC 8707 / MCP canonical server URI: scheme and host in lower case, no default port, no
    fragment, and no lone trailing "/" path; the rest as written."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = "" if parts.path == "/" else parts.path
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def client_metadata_url(public_base_url: str) -> str:
    """The binder's client_id where the authorization server accepts metadata documents."""
    return public_base_url.rstrip("/") + CLIENT_METADATA_PATH


def client_metadata_document(public_base_url: str, redirect_uris: Sequence[str]) -> dict[str, Any]:
    """The Client ID Metadata Document the binder serves: a public client (PKCE, no secret)
    whose redirect URIs are the callbacks of every mcp provider."""
    return {
        "client_id": client_metadata_url(public_base_url),
        "client_name": CLIENT_NAME,
        "redirect_uris": list(redirect_uris),
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }


def prm_urls(url: str) -> tuple[str, ...]:
    """RFC 9728 section 3.1 well-known URLs of the server's PRM: with its path, then the root."""
    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}/.well-known/oauth-protected-resource"
    path = parts.path.rstrip("/")
    return (root + path, root) if path else (root,)


def as_metadata_urls(issuer: str) -> tuple[str, ...]:
    """Where the authorization server's metadata may be, in the MCP spec's order: RFC 8414
    (path inserted after the well-known segment), then OpenID Connect Discovery (inserted,
    then appended)."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if not path:
        return (
            f"{origin}/.well-known/oauth-authorization-server",
            f"{origin}/.well-known/openid-configuration",
        )
    return (
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}/.well-known/openid-configuration{path}",
        f"{origin}{path}/.well-known/openid-configuration",
    )


def _url(name: str, where: str, value: object, loopback: bool) -> str:
    try:
        return check_url(name, where, value, allow_insecure_loopback=loopback)
    except ProviderConfigError as exc:
        raise ProviderDiscoveryError(f"{exc} (in the discovery documents)") from None


def _strings(name: str, doc: Mapping[str, Any], key: str) -> list[str] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise discovery_error(name, f"metadata field {key} must be a list of strings")
    return value


def checked_scopes(name: str, scopes: Sequence[str]) -> tuple[str, ...]:
    """Scopes the server suggests, kept only if well-formed (never echoed)."""
    if any(scope_problem(s) for s in scopes) or len(scopes) > 50:
        raise discovery_error(name, "the server suggests malformed scopes")
    return tuple(dict.fromkeys(scopes))


def check_prm(
    entry: ProviderEntry, doc: Mapping[str, Any], *, loopback: bool
) -> tuple[str, str, tuple[str, ...]]:
    """The PRM's resource (which must be the configured URL's), its first authorization
    server, and the scopes it supports."""
    name, url = entry.name, entry.required_text("url")
    resource = doc.get("resource")
    if not isinstance(resource, str) or canonical_resource(resource) != canonical_resource(url):
        raise discovery_error(
            name,
            "the protected resource metadata names another resource than the configured url; "
            "refusing it",
        )
    servers = _strings(name, doc, "authorization_servers")
    if not servers:
        raise discovery_error(name, "the protected resource metadata names no authorization server")
    issuer = _url(name, "authorization_servers[0]", servers[0], loopback)
    if urlsplit(issuer).query:
        raise discovery_error(name, "the authorization server's URL must not have a query")
    scopes = checked_scopes(name, _strings(name, doc, "scopes_supported") or [])
    return canonical_resource(url), issuer, scopes


def check_as_metadata(name: str, issuer: str, doc: Mapping[str, Any]) -> None:
    """The trust checks on authorization server metadata: the issuer is exactly the URL the
    PRM named (mix-up defence), and PKCE S256 is advertised."""
    if doc.get("issuer") != issuer:
        raise discovery_error(
            name,
            "the authorization server metadata's issuer does not equal the authorization "
            "server's URL (possible mix-up); refusing it",
        )
    if "S256" not in (_strings(name, doc, "code_challenge_methods_supported") or []):
        raise discovery_error(
            name, "the authorization server does not advertise PKCE S256; refusing it"
        )


def secret_auth_method(name: str, doc: Mapping[str, Any]) -> str:
    """How a confidential client authenticates at this authorization server (RFC 8414: an
    absent list means client_secret_basic)."""
    methods = _strings(name, doc, "token_endpoint_auth_methods_supported")
    if methods is None or "client_secret_basic" in methods:
        return "client_secret_basic"
    if "client_secret_post" in methods:
        return "client_secret_post"
    raise discovery_error(
        name, "the token endpoint supports neither client_secret_basic nor client_secret_post"
    )


def build(entry: ProviderEntry, context: BuildContext) -> ProviderSpec:
    """The spec from what mcp_discovery found (`context.document`): `resource`, `issuer`,
    `metadata` (the authorization server's), `scopes` and `client` (client_id, secret_arn,
    token_endpoint_auth_method)."""
    name, doc, loopback = entry.name, context.document, context.allow_insecure_loopback
    if doc is None:
        raise discovery_error(name, "built without its discovery documents")
    issuer, metadata, client = doc["issuer"], doc["metadata"], doc["client"]
    check_as_metadata(name, issuer, metadata)
    revocation = metadata.get("revocation_endpoint")
    revocation = (
        None if revocation is None else _url(name, "revocation_endpoint", revocation, loopback)
    )
    defaults = entry.scope_list() or tuple(doc.get("scopes") or ())
    return ProviderSpec(
        **{
            **entry_fields(entry),
            "client_id": client["client_id"],
            "secret_arn": client.get("secret_arn"),
        },
        authorization_endpoint=_url(
            name, "authorization_endpoint", metadata.get("authorization_endpoint"), loopback
        ),
        token_endpoint=_url(name, "token_endpoint", metadata.get("token_endpoint"), loopback),
        revocation_endpoint=revocation,
        revocation_style="none" if revocation is None else "rfc7009",
        userinfo_endpoint=None,
        issuer=issuer,
        jwks_uri=None,
        is_oidc=False,
        returns_iss=metadata.get("authorization_response_iss_parameter_supported") is True,
        supports_pkce=True,
        default_scopes=defaults,
        scope_separator=" ",
        scope_param="scope",
        extra_authorize_params={},
        token_endpoint_auth_method=client["token_endpoint_auth_method"],
        token_response_path=None,
        tokens_expire=True,
        default_expires_in=None,
        # OAuth 2.1 has public clients' refresh tokens rotate: treat them as single-use.
        rotates_refresh_tokens=True,
        refresh_scope=None,
        resource=doc["resource"],
    )


def discovery_url(entry: ProviderEntry) -> str:
    """Discovery starts at the MCP endpoint itself (its 401 challenge)."""
    return entry.required_text("url")


async def resolve(entry: ProviderEntry, context: ResolveContext) -> ProviderSpec:
    # Imported here: this module stays importable without the binder's dependencies.
    from binder.providers.mcp_discovery import discover

    return await discover(entry, context)


def check_entry(entry: ProviderEntry) -> None:
    """`public_client: true` is a pre-registered client without a secret."""
    if entry.options.get("public_client") is True:
        if not entry.client_id:
            raise config_error(entry.name, "public_client", "needs the client_id it describes")
        if entry.secret_arn is not None:
            raise config_error(entry.name, "secret_arn", "is not allowed with public_client")


KIND = ProviderKind(
    name="mcp",
    display_name=None,
    fields=(url_field("url", required=True), scopes_field(), flag_field("public_client")),
    check_entry=check_entry,
    build=build,
    discovery_url=discovery_url,
    resolve=resolve,
    client_id_required=False,
)
