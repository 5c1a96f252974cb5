"""A counting reverse proxy in front of moto server, for benchmarks and fault tests.

It forwards every request unchanged and counts AWS API calls by `X-Amz-Target` (for example
`secretsmanager.GetSecretValue`). `GET /_proxy/counts` returns the counts and
`POST /_proxy/reset` clears them and the faults. `POST /_proxy/faults` with
`{"target": "secretsmanager.GetSecretValue", "status": 500, "code": "InternalServiceError",
"count": 2}` answers the next `count` matching calls (-1: all, until reset) with that AWS error
instead of forwarding them. Loopback only.

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

from devstack import logs

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
    faults: list[dict[str, object]] = []
    lock = threading.Lock()
    client = httpx2.AsyncClient(base_url=upstream, timeout=30)

    async def proxy(request: Request) -> Response:
        target = request.headers.get("x-amz-target") or f"{request.method} {request.url.path}"
        with lock:
            counts[target] += 1
            fault = next((f for f in faults if f["target"] == target and f["count"] != 0), None)
            if fault is not None and isinstance(fault["count"], int) and fault["count"] > 0:
                fault["count"] -= 1
        if fault is not None:
            code = str(fault["code"])
            return JSONResponse(
                {"__type": code, "message": "injected by the test proxy"},
                status_code=int(str(fault["status"])),
                headers={"x-amzn-ErrorType": code},
                media_type="application/x-amz-json-1.1",
            )
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
            faults.clear()
        return JSONResponse({})

    async def add_fault(request: Request) -> JSONResponse:
        spec = await request.json()
        fault = {
            "target": str(spec["target"]),
            "status": int(spec.get("status", 500)),
            "code": str(spec.get("code", "InternalServiceError")),
            "count": int(spec.get("count", -1)),
        }
        with lock:
            faults.append(fault)
        return JSONResponse(fault)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]
    return Starlette(
        routes=[
            Route("/_proxy/counts", get_counts, methods=["GET"]),
            Route("/_proxy/reset", reset, methods=["POST"]),
            Route("/_proxy/faults", add_fault, methods=["POST"]),
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
    logs.configure()  # it forwards AWS calls whose bodies hold vault tokens: libraries quiet
    uvicorn.run(create_proxy(args.upstream), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
