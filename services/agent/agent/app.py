"""The agent's ASGI application factory."""

from __future__ import annotations

from starlette.applications import Starlette

from agent.settings import Settings
from svc_common.health import healthz_route


def create_app(settings: Settings) -> Starlette:
    return Starlette(routes=[healthz_route("agent")])
