"""Pure ASGI middleware both services use: request IDs, body limits, security headers."""

from __future__ import annotations

import itertools
import re
import secrets

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._=;:-]{1,128}$")


class RequestGuard:
    """Request ID and body limit in one pass (each middleware layer costs every request).

    - Takes the ALB's trace ID (or a well-formed x-request-id) or makes one, puts it in
      `scope["state"]["request_id"]` for audit lines and echoes it as `x-request-id`.
    - Answers 413 to bodies over `max_bytes`, announced by Content-Length or streamed.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int = 16384) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Unique per process start, then a counter: IDs correlate log lines, they are not
        # secrets, so one random prefix is enough.
        self._prefix = secrets.token_hex(6)
        self._counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        candidate = b""
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await _too_large(send)
                    return
            elif name in (b"x-amzn-trace-id", b"x-request-id") and not candidate:
                candidate = value
        text = candidate.decode("latin-1")
        request_id = text if _REQUEST_ID.match(text) else f"{self._prefix}-{next(self._counter)}"
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        received = 0
        started = False

        async def guarded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, guarded_receive, send_with_id)
        except _TooLarge:
            if not started:
                await _too_large(send)
        except ClientDisconnect:
            # The client left while its body was read: nobody reads an answer, and it is not
            # a server error to log or count.
            return


class _TooLarge(Exception):
    pass


async def _too_large(send: Send) -> None:
    body = b'{"error":"payload_too_large","message":"request body too large"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# Pages are plain HTML with one inline style block and no scripts.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders:
    """Headers every response carries. `no-referrer` matters: callback URLs hold codes."""

    def __init__(self, app: ASGIApp, *, csp: str = PAGE_CSP) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"cache-control", b"no-store"),
            (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.headers if n not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
