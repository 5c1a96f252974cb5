"""Driving an ASGI app by hand, for what a test client cannot do (a client that leaves)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Scope


async def post_cut_short(
    app: ASGIApp, *, path: str, token: str, server: tuple[str, int], body_start: bytes
) -> list[Message]:
    """POST part of a JSON body, then disconnect (as a client that gave up does); returns what
    the app sent."""
    incoming: list[Message] = [
        {"type": "http.request", "body": body_start, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "headers": [
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
        ],
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "server": server,
        "client": ("192.0.2.1", 40000),
    }
    await app(scope, receive, send)
    return sent
