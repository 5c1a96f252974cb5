"""The baseline of the binder hot-path benchmark: a bare Starlette JSON route, served by the
same uvicorn setup as the services (svc_common.serve)."""

from __future__ import annotations

import json
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from svc_common.serve import serve


async def echo(request: Request) -> JSONResponse:
    body = json.loads(await request.body())
    return JSONResponse({"ok": True, "provider": body.get("provider")})


def main() -> None:
    serve(
        Starlette(routes=[Route("/bench", echo, methods=["POST"])]),
        host="127.0.0.1",
        ports=[int(sys.argv[1])],
    )


if __name__ == "__main__":
    main()
