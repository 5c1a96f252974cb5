"""Fetching discovery documents (binder.providers.discovery): bounded, no redirects."""

from __future__ import annotations

import anyio
import httpx2
import pytest

from binder.providers import discovery
from binder.providers.schema import ProviderDiscoveryError
from tests.binder.providers.support import discover, discovery_doc


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("status", [201, 301, 302, 404, 500])
async def test_discover_oidc_non_200_refused(status: int) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            status, json=discovery_doc(), headers={"Location": "https://evil.example.com/"}
        )

    with pytest.raises(ProviderDiscoveryError, match=f"HTTP {status}"):
        await discover(handler)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"[" * 100_000, "not valid JSON"),
        (b" " * (discovery.MAX_DISCOVERY_BYTES + 1), "too large"),
    ],
)
async def test_discover_oidc_bad_documents(body: bytes, pattern: str) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body)

    with pytest.raises(ProviderDiscoveryError, match=pattern):
        await discover(handler)


@pytest.mark.anyio
async def test_discover_oidc_transport_error() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    with pytest.raises(ProviderDiscoveryError, match="ConnectError"):
        await discover(handler)


@pytest.mark.anyio
async def test_discover_oidc_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "DISCOVERY_TIMEOUT_SECONDS", 0.05)

    async def handler(request: httpx2.Request) -> httpx2.Response:
        await anyio.sleep(5)
        return httpx2.Response(200, json=discovery_doc())

    with pytest.raises(ProviderDiscoveryError, match="timed out"):
        await discover(handler)
