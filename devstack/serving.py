"""How the local stack's small servers run (the notes API, the MCP server and its authorization
server): on loopback only, with the local stack's quiet logging, no access log (request lines
carry query strings), no proxy headers trusted and no server header."""

from __future__ import annotations

import argparse
import logging
import urllib.parse
from typing import Any

import uvicorn

from devstack import logs

LOOPBACK = "127.0.0.1"


def loopback_url(value: str) -> str:
    """An argparse type: an http URL on loopback (the local stack's issuers), without a
    trailing slash."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme != "http" or parts.hostname not in (LOOPBACK, "localhost"):
        raise argparse.ArgumentTypeError(f"not a loopback http URL: {value}")
    return value.rstrip("/")


def serve(app: Any, port: int) -> None:
    """Run `app` on 127.0.0.1:`port` until interrupted."""
    logs.configure(logging.INFO)
    uvicorn.run(
        app,
        host=LOOPBACK,
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
