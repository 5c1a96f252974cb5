"""Fetching key sets: a bounded GET and a refetch throttle, for every JWKS the services read.

The Cognito verifier (svc_common/identity.py) and the binder's ID-token validator
(binder/id_tokens.py) fetch keys the same way: no redirects (the URL is configuration, never a
hop to another host), a size cap (a hostile or broken endpoint cannot make us buffer an
unbounded body), and at most one attempt per interval, so forged `kid`s cannot make us hammer
the endpoint. Written by hand: httpx2 has no response-size limit, and the throttle is one
timestamp.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx2


class FetchFailed(Exception):
    """`reason`: the HTTP status, "too_large", or the httpx2 exception's type name."""

    def __init__(self, reason: int | str) -> None:
        super().__init__(str(reason))
        self.reason = reason


async def get_capped(
    http: httpx2.AsyncClient, url: str, *, timeout: float, max_bytes: int
) -> bytes:
    """The body of a 200 answer to GET `url`, at most `max_bytes`; FetchFailed otherwise."""
    try:
        async with http.stream(
            "GET",
            url,
            headers={"accept": "application/json"},
            timeout=timeout,
            follow_redirects=False,
        ) as response:
            if response.status_code != 200:
                raise FetchFailed(response.status_code)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise FetchFailed("too_large")
            return bytes(body)
    except (httpx2.HTTPError, httpx2.InvalidURL, httpx2.StreamError) as exc:
        raise FetchFailed(type(exc).__name__) from None


class RefetchThrottle:
    """At most one attempt per `interval` seconds."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.time) -> None:
        self._interval = interval
        self._clock = clock
        self._last: float | None = None

    def may_fetch(self) -> bool:
        if self._last is None:
            return True
        elapsed = self._clock() - self._last
        # A clock that went backwards must not block refetches until it catches up.
        return not 0 <= elapsed < self._interval

    def attempted(self) -> None:
        self._last = self._clock()
