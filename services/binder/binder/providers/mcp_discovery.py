"""The network half of the mcp kind: find the server's authorization server and a client.

Every fetch is bounded in time and size and refuses redirects (svc_common.fetch.get_capped and
the same rules for the two requests it does not cover: the unauthenticated probe of the MCP
endpoint and the RFC 7591 registration). Errors name the provider and the step, never a body.
The trust decisions are in binder.providers.mcp.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

import anyio
import httpx2

from binder.providers.mcp import (
    KIND,
    as_metadata_urls,
    check_as_metadata,
    check_discovered_url,
    check_prm,
    checked_scopes,
    client_metadata_url,
    client_name,
    discovery_error,
    endpoints,
    prm_urls,
    secret_auth_method,
)
from binder.providers.schema import (
    BuildContext,
    ProviderConfigError,
    ProviderDiscoveryError,
    ProviderEntry,
    ResolveContext,
    check_client_id,
    check_url,
)
from binder.providers.spec import ProviderSpec, callback_url
from binder.registrations import RegisteredClient, RegistrationUnavailable
from svc_common.fetch import FetchFailed, get_capped

TIMEOUT_SECONDS: Final = 5.0
MAX_DOCUMENT_BYTES: Final = 256 * 1024
MAX_CHALLENGE_LENGTH: Final = 4096
PROTOCOL_VERSION: Final = "2025-11-25"
# auth-param = token BWS "=" BWS ( token / quoted-string ), RFC 9110 section 11.2.
_AUTH_PARAM: Final = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))')
_PROBE_BODY: Final = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "binder-discovery", "version": "1"},
        },
    }
).encode()


def challenge_params(header: str) -> dict[str, str]:
    """The auth-params of a Bearer challenge (`resource_metadata`, `scope`, ...); {} if none."""
    if len(header) > MAX_CHALLENGE_LENGTH or not header.lower().lstrip().startswith("bearer"):
        return {}
    found: dict[str, str] = {}
    for match in _AUTH_PARAM.finditer(header.lstrip()[6:]):
        key, quoted, token = match.groups()
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else token
        found.setdefault(key.lower(), value)
    return found


async def probe(name: str, url: str, http: httpx2.AsyncClient) -> dict[str, str]:
    """Ask the MCP endpoint without a token; the 401 challenge's parameters, or {}."""
    try:
        with anyio.fail_after(TIMEOUT_SECONDS):
            async with http.stream(
                "POST",
                url,
                content=_PROBE_BODY,
                headers={
                    "content-type": "application/json",
                    "accept": "application/json, text/event-stream",
                    "mcp-protocol-version": PROTOCOL_VERSION,
                },
                timeout=TIMEOUT_SECONDS,
                follow_redirects=False,
            ) as response:
                # The body is never read: only the status and the challenge matter.
                if response.status_code != 401:
                    return {}
                return challenge_params(response.headers.get("www-authenticate", ""))
    except (TimeoutError, httpx2.HTTPError, httpx2.InvalidURL, httpx2.StreamError):
        return {}


async def fetch_json(name: str, what: str, url: str, http: httpx2.AsyncClient) -> dict[str, Any]:
    try:
        with anyio.fail_after(TIMEOUT_SECONDS):
            raw = await get_capped(http, url, timeout=TIMEOUT_SECONDS, max_bytes=MAX_DOCUMENT_BYTES)
    except TimeoutError:
        raise discovery_error(name, f"{what} timed out") from None
    except FetchFailed as exc:
        raise discovery_error(name, f"{what} failed ({exc.reason})") from None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise discovery_error(name, f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise discovery_error(name, f"{what} is not a JSON object")
    return doc


async def first_json(
    name: str, what: str, urls: tuple[str, ...], http: httpx2.AsyncClient
) -> dict[str, Any]:
    """The first of `urls` that answers with a JSON object."""
    for url in urls:
        try:
            return await fetch_json(name, what, url, http)
        except ProviderDiscoveryError:
            continue
    raise discovery_error(name, f"{what} was not found at any well-known URL")


async def discover(entry: ProviderEntry, context: ResolveContext) -> ProviderSpec:
    """The provider's spec: PRM, authorization server metadata, then a client."""
    name, url, http = entry.name, entry.required_text("url"), context.http
    loopback = context.allow_insecure_loopback
    challenge = await probe(name, url, http)
    pointer = challenge.get("resource_metadata")
    if pointer is not None:
        try:
            pointer = check_discovered_url(name, "resource_metadata", pointer, loopback)
        except ProviderConfigError:
            raise discovery_error(
                name, "the 401 challenge names an unusable metadata URL"
            ) from None
        prm = await fetch_json(name, "protected resource metadata", pointer, http)
    else:
        prm = await first_json(name, "protected resource metadata", prm_urls(url), http)
    resource, issuer, supported = check_prm(entry, prm, loopback=loopback)
    metadata = await first_json(
        name, "authorization server metadata", as_metadata_urls(issuer), http
    )
    check_as_metadata(name, issuer, metadata)
    endpoints(name, metadata, loopback)  # refused before any registration, not after
    scope = challenge.get("scope")
    scopes = checked_scopes(name, scope.split()) if scope else supported
    client = await choose_client(entry, metadata, context, issuer)
    document = {
        "resource": resource,
        "issuer": issuer,
        "metadata": metadata,
        "scopes": list(scopes),
        "client": client,
    }
    return KIND.spec(entry, BuildContext(allow_insecure_loopback=loopback, document=document))


def _publishable(base: str, *, allow_insecure_loopback: bool) -> bool:
    """Whether the binder's document can be served at `base`: https, or http on loopback in the
    local stack (the same rule as every other URL of a provider entry)."""
    try:
        check_url(
            "binder", "PUBLIC_BASE_URL", base, allow_insecure_loopback=allow_insecure_loopback
        )
    except ProviderConfigError:
        return False
    return True


async def choose_client(
    entry: ProviderEntry, metadata: Mapping[str, Any], context: ResolveContext, issuer: str
) -> dict[str, Any]:
    """The client, in the MCP spec's order: configured, metadata document, RFC 7591; each
    valid for this provider's callback only. The metadata document only where the server
    sends RFC 9207 `iss` (the mix-up defence: binder.providers.mcp)."""
    name = entry.name
    if entry.client_id:
        method = "none" if entry.secret_arn is None else secret_auth_method(name, metadata)
        return {
            "client_id": entry.client_id,
            "secret_arn": entry.secret_arn,
            "token_endpoint_auth_method": method,
        }
    base = context.public_base_url
    if (
        metadata.get("client_id_metadata_document_supported") is True
        and metadata.get("authorization_response_iss_parameter_supported") is True
        and _publishable(base, allow_insecure_loopback=context.allow_insecure_loopback)
    ):
        return {
            "client_id": client_metadata_url(base, name),
            "secret_arn": None,
            "token_endpoint_auth_method": "none",
        }
    endpoint = metadata.get("registration_endpoint")
    if endpoint is None:
        raise discovery_error(
            name,
            "no client_id is configured and the authorization server offers neither client "
            "metadata documents (with RFC 9207 iss) nor dynamic client registration",
        )
    if context.registrations is None:
        raise discovery_error(name, "dynamic client registration needs the binder's vault")
    endpoint = check_discovered_url(
        name, "registration_endpoint", endpoint, context.allow_insecure_loopback
    )
    callback = callback_url(base, name)
    redirect_uris = (callback,)

    async def register() -> RegisteredClient:
        return await register_client(
            name,
            endpoint,
            metadata,
            redirect_uris=redirect_uris,
            http=context.http,
            display_name=entry.display_name or name,
        )

    try:
        stored = await context.registrations.get_or_register(
            provider=name, issuer=issuer, redirect_uri=callback, register=register
        )
    except RegistrationUnavailable as exc:
        raise discovery_error(name, f"client registration unavailable ({exc.code})") from None
    return {
        "client_id": stored.client_id,
        "secret_arn": stored.secret_name,
        "token_endpoint_auth_method": stored.token_endpoint_auth_method,
    }


async def register_client(
    name: str,
    endpoint: str,
    metadata: Mapping[str, Any],
    *,
    redirect_uris: tuple[str, ...],
    http: httpx2.AsyncClient,
    display_name: str | None = None,
) -> RegisteredClient:
    """RFC 7591 registration: a public client where the server allows one, else a secret."""
    supported = metadata.get("token_endpoint_auth_methods_supported")
    public = isinstance(supported, list) and "none" in supported
    method = "none" if public else secret_auth_method(name, metadata)
    request = {
        "client_name": client_name(display_name or name),
        "redirect_uris": list(redirect_uris),
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
    }
    try:
        with anyio.fail_after(TIMEOUT_SECONDS):
            async with http.stream(
                "POST",
                endpoint,
                json=request,
                headers={"accept": "application/json"},
                timeout=TIMEOUT_SECONDS,
                follow_redirects=False,
            ) as response:
                if response.status_code not in (200, 201):
                    raise discovery_error(
                        name, f"client registration answered HTTP {response.status_code}"
                    )
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise discovery_error(name, "client registration answer is too large")
    except TimeoutError:
        raise discovery_error(name, "client registration timed out") from None
    except (httpx2.HTTPError, httpx2.InvalidURL, httpx2.StreamError) as exc:
        raise discovery_error(name, f"client registration failed ({type(exc).__name__})") from None
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        raise discovery_error(name, "client registration answer is not a JSON object")
    try:
        client_id = check_client_id(name, answer.get("client_id"))
    except ProviderConfigError:
        raise discovery_error(name, "client registration returned no usable client_id") from None
    secret = answer.get("client_secret")
    granted = answer.get("token_endpoint_auth_method", method)
    if (
        isinstance(secret, str)
        and secret
        and granted in ("client_secret_basic", "client_secret_post")
    ):
        return RegisteredClient(
            client_id=client_id,
            client_secret=secret,
            token_endpoint_auth_method=granted,
            redirect_uris=redirect_uris,
        )
    if granted != "none":
        raise discovery_error(name, "client registration returned an unusable client")
    return RegisteredClient(
        client_id=client_id, token_endpoint_auth_method="none", redirect_uris=redirect_uris
    )
