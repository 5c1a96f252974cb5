"""moto server answering one request at a time, for the load run (bench/load.py).

`python -m moto.server` serves each request on its own thread, and some moto backends are not
safe under that: DynamoDB's TransactWriteItems deep-copies the whole table (to roll back on a
failed condition) while other threads write to it, and the copy fails with "dictionary changed
size during iteration" (HTTP 500; after botocore's retries the binder rightly answers 503). Real
DynamoDB is atomic per item and per transaction, so requests to moto are serialized:
moto: connections are still served on threads (keep-alive works), the app runs under one lock.

Run: python -m devstack.moto_server -H 127.0.0.1 -p PORT (loopback only). The local stack,
the integration tests and the benchmarks all use it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterable
from types import FrameType
from typing import TYPE_CHECKING

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

from devstack import logs, moto_fixes

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

LOOPBACK = "127.0.0.1"


def serialized_app() -> WSGIApplication:
    moto_fixes.apply()
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serve(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with lock:
            # The whole body is produced under the lock: moto builds it from shared state.
            return list(app(environ, start_response))

    return serve


def _stop(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-H", "--host", default=LOOPBACK)
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.host != LOOPBACK:
        parser.error(f"loopback only ({LOOPBACK})")
    logs.configure()  # werkzeug's request lines hold URLs: it logs warnings only
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logging.getLogger("devstack.moto_server").info(
        "moto server on http://%s:%d (request lines are not logged)", args.host, args.port
    )
    run_simple(
        args.host,
        args.port,
        serialized_app(),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
