"""Run an ASGI app under uvicorn on one or more ports of one address."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Sequence

import uvicorn
from starlette.types import ASGIApp


def bind_sockets(host: str, ports: Sequence[int]) -> list[socket.socket]:
    """Bind every port before serving, so a port in use fails fast with its number named."""
    sockets: list[socket.socket] = []
    for port in ports:
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only when
        # the listening socket says TCP; without it every response waits ~40 ms (Nagle against
        # the client's delayed ACK), because uvicorn writes headers and body separately.
        sock = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
        )
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


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(app: ASGIApp, *, host: str, ports: Sequence[int]) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully and exit 0.

    uvicorn drains connections, then re-raises the signal it caught against the handler that
    was in place before it started; that handler is `_exit_quietly`, so a stop requested by
    ECS or by Ctrl-C ends with status 0 and no traceback.
    """
    sockets = bind_sockets(host, ports)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_quietly)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    asyncio.run(uvicorn.Server(config).serve(sockets=sockets))
