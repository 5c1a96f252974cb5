"""A counting reverse proxy in front of moto server, for benchmarks and fault tests.

It forwards every request unchanged and counts AWS API calls by `X-Amz-Target` (for example
`secretsmanager.GetSecretValue`). `GET /_proxy/counts` returns the counts and
`POST /_proxy/reset` clears them. Loopback only.

Run: python -m devstack.aws_proxy --port P --upstream http://127.0.0.1:M
"""

from __future__ import annotations

import argparse
import threading
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",
}


def create_proxy(upstream: str) -> Starlette:
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    client = httpx2.AsyncClient(base_url=upstream, timeout=30)

    async def proxy(request: Request) -> Response:
        target = request.headers.get("x-amz-target") or f"{request.method} {request.url.path}"
        with lock:
            counts[target] += 1
        upstream_response = await client.request(
            request.method,
            request.url.path,
            params=request.query_params,
            content=await request.body(),
            headers={k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP},
        )
        return Response(
            upstream_response.content,
            status_code=upstream_response.status_code,
            headers={
                k: v for k, v in upstream_response.headers.items() if k.lower() not in _HOP_BY_HOP
            },
        )

    async def get_counts(request: Request) -> JSONResponse:
        with lock:
            return JSONResponse(dict(counts))

    async def reset(request: Request) -> JSONResponse:
        with lock:
            counts.clear()
        return JSONResponse({})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]
    return Starlette(
        routes=[
            Route("/_proxy/counts", get_counts, methods=["GET"]),
            Route("/_proxy/reset", reset, methods=["POST"]),
            Route("/{path:path}", proxy, methods=methods),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    if not args.upstream.startswith("http://127.0.0.1:"):
        raise SystemExit("the upstream must be a loopback moto server (http://127.0.0.1:PORT)")
    uvicorn.run(create_proxy(args.upstream), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
