"""The binder's ASGI application factory."""

from __future__ import annotations

from starlette.applications import Starlette
from svc_common.health import healthz_route

from binder.settings import Settings


def create_app(settings: Settings) -> Starlette:
    return Starlette(routes=[healthz_route("binder")])
