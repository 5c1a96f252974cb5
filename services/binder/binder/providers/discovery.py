"""Fetching a provider's discovery document: the one part of the providers that needs the network.

A kind that learns its endpoints from the provider (oidc: OpenID Connect Discovery 1.0,
https://openid.net/specs/openid-connect-discovery-1_0.html) declares `discovery_url`; the
registry calls `resolve` on first use, which fetches that document here and hands it to the
kind's builder, where the trust decisions are (issuer equality, endpoint rules). The fetch is
bounded in time and size and refuses redirects, so a hostile or broken issuer cannot make the
binder wait, buffer without end, or take another host's answer for its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import anyio
import httpx2

from binder.providers.registry import KINDS
from binder.providers.schema import (
    BuildContext,
    ProviderDiscoveryError,
    ProviderEntry,
    ResolveContext,
    parse_entry,
)
from binder.providers.spec import ProviderSpec

DISCOVERY_TIMEOUT_SECONDS: Final = 5.0
# A discovery document is a few KiB; the cap keeps a hostile or broken issuer from making the
# binder buffer an unbounded body.
MAX_DISCOVERY_BYTES: Final = 256 * 1024


async def _fetch(name: str, url: str, http: httpx2.AsyncClient) -> bytes:
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


async def fetch_document(name: str, url: str, http: httpx2.AsyncClient) -> Mapping[str, Any]:
    """The JSON object at `url`, or ProviderDiscoveryError naming the provider."""
    raw = await _fetch(name, url, http)
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
    return doc


async def resolve(entry: ProviderEntry, context: ResolveContext) -> ProviderSpec:
    """The spec of an entry whose kind discovers its endpoints: the kind's own `resolve` when
    it has one (mcp), else its one discovery document."""
    kind = KINDS[entry.kind]
    loopback = context.allow_insecure_loopback
    if kind.resolve is not None:
        return await kind.resolve(entry, context)
    if kind.discovery_url is None:
        return kind.spec(entry, BuildContext(allow_insecure_loopback=loopback))
    document = await fetch_document(entry.name, kind.discovery_url(entry), context.http)
    return kind.spec(entry, BuildContext(allow_insecure_loopback=loopback, document=document))


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
    """An oidc provider from its discovery document (a PROVIDERS entry's fields, parsed by the
    one parser first). `scopes` are extra default scopes."""
    entry = parse_entry(
        {
            "name": name,
            "kind": "oidc",
            "issuer": issuer,
            "client_id": client_id,
            "secret_arn": secret_arn,
            "scopes": None if scopes is None else list(scopes),
            "allowed_scopes": None if allowed_scopes is None else list(allowed_scopes),
        },
        allow_insecure_loopback=allow_insecure_loopback,
    )
    context = ResolveContext(http=http, allow_insecure_loopback=allow_insecure_loopback)
    return await resolve(entry, context)
