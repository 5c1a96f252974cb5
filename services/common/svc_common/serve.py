"""Run an ASGI app under uvicorn on one or more ports of one address."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

import uvicorn
from starlette.types import ASGIApp


def bind_sockets(host: str, ports: Sequence[int]) -> list[socket.socket]:
    """Bind every port before serving, so a port in use fails fast with its number named."""
    sockets: list[socket.socket] = []
    for port in ports:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            for opened in sockets:
                opened.close()
            raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


def serve(app: ASGIApp, *, host: str, ports: Sequence[int]) -> None:
    sockets = bind_sockets(host, ports)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    asyncio.run(uvicorn.Server(config).serve(sockets=sockets))
