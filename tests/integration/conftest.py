"""Real processes on 127.0.0.1: moto server, OAuth providers, binder(s) under uvicorn."""

from __future__ import annotations

import os
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import werkzeug.serving
from oidc_provider_mock import app as oidc_mock_app

from devstack import aws, procs, services

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"alice": "Alice-local-Passw0rd!", "bob": "Bob-local-Passw0rd!"}
MOCK_CLIENT = ("binder-local", "binder-local-secret")


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integration-logs")


@pytest.fixture(scope="session")
def moto_endpoint(log_dir: Path) -> Iterator[str]:
    port = procs.free_port()
    child = procs.start(
        "moto",
        [sys.executable, "-m", "devstack.moto_server", "-H", procs.LOOPBACK, "-p", str(port)],
        env={**os.environ},
        log_dir=log_dir,
        cwd=ROOT,
    )
    endpoint = f"http://{procs.LOOPBACK}:{port}"
    try:
        procs.wait_http(child, f"{endpoint}/moto-api/")
        yield endpoint
    finally:
        child.stop()


@pytest.fixture
def local_aws(moto_endpoint: str) -> aws.LocalAws:
    """Fresh AWS state for each test."""
    reset = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(reset, timeout=10) as response:  # noqa: S310 - loopback only
        response.read()
    return aws.bootstrap(
        moto_endpoint,
        users=PASSWORDS,
        providers={"mock": MOCK_CLIENT, "fake": ("binder-client", "fake-secret")},
    )


@pytest.fixture(scope="session")
def oidc_mock() -> Iterator[str]:
    """oidc-provider-mock (a real OIDC provider server by another author) on 127.0.0.1."""
    server = werkzeug.serving.make_server(procs.LOOPBACK, 0, oidc_mock_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://{procs.LOOPBACK}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@dataclass
class RunningBinder:
    child: procs.Child
    public: str
    internal: str


@pytest.fixture
def start_binder(
    log_dir: Path,
) -> Iterator[Callable[..., RunningBinder]]:
    started: list[procs.Child] = []

    def start(
        local: aws.LocalAws,
        providers: list[dict[str, object]],
        *,
        name: str = "binder",
        public_port: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> RunningBinder:
        public = public_port or procs.free_port()
        internal = procs.free_port()
        child = procs.start(
            name,
            [sys.executable, "-m", "binder"],
            env=services.binder_env(
                local, providers, public_port=public, internal_port=internal, **(extra_env or {})
            ),
            log_dir=log_dir,
            cwd=ROOT,
        )
        started.append(child)
        procs.wait_http(child, f"http://{procs.LOOPBACK}:{internal}/healthz")
        return RunningBinder(
            child=child,
            public=f"http://{procs.LOOPBACK}:{public}",
            internal=f"http://{procs.LOOPBACK}:{internal}",
        )

    yield start
    for child in started:
        child.stop()
