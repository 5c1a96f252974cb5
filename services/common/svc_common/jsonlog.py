"""One JSON object per log line, for CloudWatch Logs Insights.

Only the message and a few fixed fields are written; exception tracebacks are reduced to the
exception type so that request data (which may hold tokens) never reaches the logs.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry: dict[str, Any] = {
            "time": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
        return _ENCODER.encode(entry)


# Libraries that log request and response bodies at DEBUG (botocore logs every
# GetSecretValue response, tokens included) or URLs at INFO. They stay at WARNING whatever
# LOG_LEVEL says: a debugging session must not write the vault into the logs.
QUIET_LOGGERS = (
    "botocore",
    "boto3",
    "urllib3",
    "s3transfer",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "authlib",
    "hpack",
)


def quiet_third_party() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure(service: str, level: str) -> None:
    """Route the root logger and uvicorn's loggers through the JSON formatter.

    The lines carry no source location, thread or process fields, so logging is told not to
    collect them (the logging HOWTO's "Optimization" settings): every audited request pays
    for a log line, and finding the caller's frame was most of its cost.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.logAsyncioTasks = False  # type: ignore[attr-defined]  # Python 3.12+
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Access lines carry query strings (OAuth codes and states): never log them.
    logging.getLogger("uvicorn.access").disabled = True
    quiet_third_party()
