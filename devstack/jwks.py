"""An issuer's signing keys, for the local stack's resource servers (the notes API and the MCP
server): found through the issuer's metadata (`issuer` checked exactly, then its `jwks_uri`)
and cached by `kid`. An unknown `kid` triggers one refetch at most every REFETCH_SECONDS, and
keys already known keep working if the issuer is down.

Written here because joserfc parses key sets but fetches none, and the services' verifier
(svc_common.identity) is Cognito's, with its JWKS URL configured rather than discovered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx2
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

MAX_DOCUMENT_BYTES = 64 * 1024
REFETCH_SECONDS = 10.0

log = logging.getLogger("devstack.jwks")


class IssuerKeys:
    """`metadata_path` is where the issuer's metadata is (RFC 8414 or OIDC discovery);
    `http` may be set later (an app's lifespan opens it)."""

    def __init__(
        self, issuer: str, metadata_path: str, http: httpx2.AsyncClient | None = None
    ) -> None:
        self.issuer = issuer
        self.http = http
        self._metadata_url = f"{issuer}/{metadata_path}"
        self._keys: dict[str, RSAKey] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> RSAKey | None:
        if kid not in self._keys:
            await self._refresh()
        return self._keys.get(kid)

    async def _get_json(self, url: str) -> Any:
        if self.http is None:
            raise RuntimeError("the HTTP client starts with the app's lifespan")
        response = await self.http.get(url, headers={"accept": "application/json"})
        if response.status_code != 200 or len(response.content) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"answered {response.status_code}")
        return response.json()

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < REFETCH_SECONDS:
                return
            self._fetched_at = time.monotonic()
            try:
                document = await self._get_json(self._metadata_url)
                if not isinstance(document, dict) or document.get("issuer") != self.issuer:
                    raise ValueError("the metadata names another issuer")
                jwks_uri = document.get("jwks_uri")
                if not isinstance(jwks_uri, str):
                    raise ValueError("the metadata has no jwks_uri")
                key_set = KeySet.import_key_set(await self._get_json(jwks_uri))
            except (httpx2.HTTPError, ValueError, JoseError) as exc:
                log.warning("JWKS unavailable: %s", type(exc).__name__)
                return
            for key in key_set.keys:
                if isinstance(key, RSAKey) and key.kid is not None:
                    self._keys[str(key.kid)] = key
