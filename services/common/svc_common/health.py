"""The liveness route both services expose to the ALB and the container health check."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def healthz_route(service: str) -> Route:
    body = {"status": "ok", "service": service}

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse(body, headers={"cache-control": "no-store"})

    return Route("/healthz", healthz, methods=["GET"])
