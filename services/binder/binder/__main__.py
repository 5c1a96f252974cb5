"""Entry point of the binder image: `python -m binder`."""

from __future__ import annotations

import sys

from binder.app import create_app
from binder.settings import Settings
from svc_common import jsonlog
from svc_common.serve import serve
from svc_common.settings import SettingsError


def main() -> None:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"binder: configuration error: {exc}")
    jsonlog.configure("binder", settings.server.log_level)
    serve(
        create_app(settings),
        host=settings.server.bind_host,
        ports=[settings.public_port, settings.internal_port],
    )


if __name__ == "__main__":
    main()
