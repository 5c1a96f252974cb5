"""Entry point of the agent image: `python -m agent`."""

from __future__ import annotations

import sys

from agent.app import create_app
from agent.settings import Settings
from svc_common import jsonlog
from svc_common.serve import serve
from svc_common.settings import SettingsError


def main() -> None:
    try:
        settings = Settings.from_env()
        jsonlog.configure("agent", settings.server.log_level)
        app = create_app(settings)
    except SettingsError as exc:
        sys.exit(f"agent: configuration error: {exc}")
    serve(app, host=settings.server.bind_host, ports=[settings.port])


if __name__ == "__main__":
    main()
