"""Logging of the local stack's own processes: the dev edge, moto server, the mock provider.

They hold the same libraries at WARNING as the services do (svc_common.jsonlog.QUIET_LOGGERS:
httpx2 logs every URL it requests at INFO, the edge's callbacks with their codes and states),
plus the request-line loggers of the servers they run on, whose lines carry query strings
(`state`, `nonce`, `code_challenge` on the provider's authorize endpoint). The lines are plain
text with no extra fields: a library's `extra=` objects are never printed.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

# The devstack modules run from the repository's root (`python -m devstack...`) under several
# launchers (make dev, the integration tests, the benchmarks); the services' shared package
# sits beside them, so its one list of quiet loggers is found here rather than by each launcher.
_COMMON = str(Path(__file__).resolve().parent.parent / "services" / "common")
if _COMMON not in sys.path:
    sys.path.append(_COMMON)

from svc_common.jsonlog import QUIET_LOGGERS as SERVICE_QUIET_LOGGERS  # noqa: E402

# Servers' request lines, each with its URL and query string.
REQUEST_LINE_LOGGERS = ("werkzeug", "uvicorn.access")
QUIET_LOGGERS = (*SERVICE_QUIET_LOGGERS, *REQUEST_LINE_LOGGERS)


def quiet() -> None:
    """Hold body- and URL-logging libraries at WARNING, whatever the root level is."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure(level: int = logging.INFO) -> None:
    """Plain lines on stderr (the supervisor writes them to `{process}.log`), libraries quiet."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet()
