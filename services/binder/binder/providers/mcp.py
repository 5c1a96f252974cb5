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
  creates no secret for it), which belongs to one authorization server, so the entry pins it
  (`authorization_server`); else the binder's Client ID Metadata Document for this provider
  (`client_id` = `{PUBLIC_BASE_URL}/oauth2/client-metadata/{name}.json`) when the authorization
  server says both `client_id_metadata_document_supported` and
  `authorization_response_iss_parameter_supported`; else Dynamic Client Registration
  (RFC 7591), once per (issuer, provider), kept in Secrets Manager (binder.registrations); else
  refused.
- RFC 9207 `iss` on the callback when the server advertises it (the broker's check).

Why one client per provider, and the metadata document only with `iss` (mix-up, RFC 9700
section 4.4): were one client_id (a shared document, or one registration per issuer) valid
for the callbacks of several providers, the authorization server of provider B (malicious or
compromised) could send the user to the honest server A with the binder's client_id and
`redirect_uri=.../oauth2/callback/B`; A would deliver its code to B's callback, and the binder
would redeem it at B's token endpoint with the PKCE verifier, handing B a code of A's. Each
provider's client therefore lists only its own callback (A refuses B's callback for A's
client), and a provider's metadata document, whose URL any server can name, is served only
once that provider resolved to it, and used only with a server that sends `iss`, which B's
callback then requires: a code of A's arrives there with A's `iss` or none, refused either way.

Fields: `url` (required: the MCP endpoint), `scopes` (else the challenge's `scope`, else the
PRM's `scopes_supported`), `public_client` (true: the pre-registered `client_id` has no
secret; PKCE only), `authorization_server` (the issuer the PRM must name; required with
`client_id`). Names may not contain "--": the agent names tools `<server>__<tool>` with "-"
as "_", so `a--b` could meet server `a`'s tool `b__c`.

URLs learnt from discovery documents whose host is an IP literal in a loopback, private,
link-local, unique-local, unspecified or CGNAT range are refused outside the local stack
(`check_discovered_url`), so a hostile document cannot point the binder at its own network.
Host names are not resolved: a name that resolves to such an address is a known limit (the
binder's egress rules are the control there).

This module decides what to trust and stays on the standard library (the CDK app parses
entries at synth); binder.providers.mcp_discovery does the fetching.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from binder.providers.schema import (
    BuildContext,
    Field,
    ProviderConfigError,
    ProviderDiscoveryError,
    ProviderEntry,
    ProviderKind,
    ResolveContext,
    check_issuer,
    check_url,
    config_error,
    flag_field,
    scope_problem,
    scopes_field,
    url_field,
)
from binder.providers.spec import ProviderSpec, callback_url, entry_fields

# The binder's Client ID Metadata Documents, one per mcp provider at `{prefix}{name}.json`, on
# its public port: the only unauthenticated /oauth2/ paths (the edge lets them through without
# a sign-in).
CLIENT_METADATA_PREFIX: Final = "/oauth2/client-metadata/"
CLIENT_NAME: Final = "Secure agents token binder"
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
# Where a URL from a discovery document must not point (beside loopback, RFC 1918, link-local,
# unique-local and unspecified, which ipaddress knows): CGNAT (RFC 6598).
_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")
# Names the images' /etc/hosts maps to loopback (Debian: localhost, ip6-localhost, ...).
_LOOPBACK_NAMES: Final = frozenset(
    {"localhost", "localhost6", "ip6-localhost", "ip6-loopback", "localhost.localdomain"}
)
_NAT64: Final = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


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
    port = parts.port  # ValueError when out of range: check_prm refuses such a resource
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = "" if parts.path == "/" else parts.path
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def client_metadata_url(public_base_url: str, name: str) -> str:
    """Provider `name`'s client_id where its authorization server accepts metadata documents."""
    return f"{public_base_url.rstrip('/')}{CLIENT_METADATA_PREFIX}{name}.json"


def client_name(display_name: str) -> str:
    """The name an authorization server shows on its consent screen: the binder's, and which
    server it asks for, since every mcp provider has a client of its own."""
    return f"{CLIENT_NAME} for {display_name}"


def client_metadata_document(public_base_url: str, name: str, display_name: str) -> dict[str, Any]:
    """Provider `name`'s Client ID Metadata Document: a public client (PKCE, no secret) whose
    only redirect URI is that provider's callback."""
    return {
        "client_id": client_metadata_url(public_base_url, name),
        "client_name": client_name(display_name),
        "redirect_uris": [callback_url(public_base_url, name)],
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


def internal_address(host: str) -> bool:
    """Whether `host` is `localhost` (or under `.localhost`) or an IP literal (any form a
    resolver accepts: "127.1", "0x7f.1", "2130706433", "[::ffff:10.0.0.1]", a trailing dot) in
    a loopback, private, link-local, unique-local, unspecified, multicast, reserved or CGNAT
    range, or an IPv6 transition address that embeds an IPv4 one (6to4, Teredo, NAT64), refused
    whole rather than decoded. Other names are not resolved."""
    host = host.strip("[]").rstrip(".").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:
            # The forms getaddrinfo takes as IPv4 without a DNS query.
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif (
            address.is_site_local  # fec0::/10, deprecated but still routed by some stacks
            or address.sixtofour is not None
            or address.teredo is not None
            or any(address in net for net in _NAT64)
        ):
            return True
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or address in _CGNAT
    )


def check_discovered_url(name: str, where: str, value: object, loopback: bool) -> str:
    """A URL taken from a discovery document: the rules of every provider URL, and outside the
    local stack (`loopback`) no IP literal of an internal range (SSRF)."""
    try:
        url = check_url(name, where, value, allow_insecure_loopback=loopback)
    except ProviderConfigError as exc:
        raise ProviderDiscoveryError(f"{exc} (in the discovery documents)") from None
    if not loopback and internal_address(urlsplit(url).hostname or ""):
        raise discovery_error(
            name, f"{where} points to an internal address (in the discovery documents)"
        )
    return url


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
    """The PRM's resource (which must be the configured URL's), its authorization server (the
    entry's `authorization_server`, which the PRM must list exactly; else its first), and the
    scopes it supports."""
    name, url = entry.name, entry.required_text("url")
    resource = doc.get("resource")
    try:
        same = isinstance(resource, str) and canonical_resource(resource) == canonical_resource(url)
    except ValueError:  # a port out of range, a broken IPv6 literal
        raise discovery_error(
            name, "the protected resource metadata's resource is not a URL"
        ) from None
    if not same:
        raise discovery_error(
            name,
            "the protected resource metadata names another resource than the configured url; "
            "refusing it",
        )
    servers = _strings(name, doc, "authorization_servers")
    if not servers:
        raise discovery_error(name, "the protected resource metadata names no authorization server")
    pinned = entry.text("authorization_server")
    if pinned is not None and pinned not in servers:
        raise discovery_error(
            name,
            "the server names another authorization server than the configured one "
            "(authorization_server); refusing it",
        )
    chosen = pinned if pinned is not None else servers[0]
    issuer = check_discovered_url(name, "authorization_servers", chosen, loopback)
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


def endpoints(
    name: str, metadata: Mapping[str, Any], loopback: bool
) -> tuple[str, str, str | None]:
    """The authorization server's authorization, token and (optional) revocation endpoints,
    each checked as a discovered URL."""
    revocation = metadata.get("revocation_endpoint")
    return (
        check_discovered_url(
            name, "authorization_endpoint", metadata.get("authorization_endpoint"), loopback
        ),
        check_discovered_url(name, "token_endpoint", metadata.get("token_endpoint"), loopback),
        None
        if revocation is None
        else check_discovered_url(name, "revocation_endpoint", revocation, loopback),
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
    authorization, token, revocation = endpoints(name, metadata, loopback)
    defaults = entry.scope_list() or tuple(doc.get("scopes") or ())
    return ProviderSpec(
        **{
            **entry_fields(entry),
            "client_id": client["client_id"],
            "secret_arn": client.get("secret_arn"),
        },
        authorization_endpoint=authorization,
        token_endpoint=token,
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
    """No "--" in the name (tool names); a pre-registered client names its authorization
    server; `public_client: true` is a pre-registered client without a secret."""
    if "--" in entry.name:
        raise config_error(
            entry.name,
            "name",
            "must not contain '--' for an mcp entry (the agent's tool names would be ambiguous)",
        )
    if entry.client_id and entry.text("authorization_server") is None:
        raise config_error(
            entry.name,
            "authorization_server",
            "is required with client_id (a pre-registered client belongs to one "
            "authorization server)",
        )
    if entry.options.get("public_client") is True:
        if not entry.client_id:
            raise config_error(entry.name, "public_client", "needs the client_id it describes")
        if entry.secret_arn is not None:
            raise config_error(entry.name, "secret_arn", "is not allowed with public_client")


def authorization_server_field() -> Field:
    """`authorization_server`: an issuer URL (https, no query), compared exactly with the PRM's
    `authorization_servers` entries."""

    def check(provider: str, value: object, loopback: bool) -> str:
        return check_issuer(
            provider, value, allow_insecure_loopback=loopback, field_name="authorization_server"
        )

    return Field(name="authorization_server", check=check, is_url=True)


KIND = ProviderKind(
    name="mcp",
    display_name=None,
    fields=(
        url_field("url", required=True),
        scopes_field(),
        flag_field("public_client"),
        authorization_server_field(),
    ),
    check_entry=check_entry,
    build=build,
    discovery_url=discovery_url,
    resolve=resolve,
    client_id_required=False,
)
