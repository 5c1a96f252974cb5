"""Both services start, answer /healthz, and fail clearly on bad settings.

These tests also run on the Python of the container images (`make test` runs them again in
.venv-image with the interpreter named by the Dockerfiles' FROM line).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from agent.app import create_app as create_agent
from agent.settings import Settings as AgentSettings
from binder.app import create_app as create_binder
from binder.settings import Settings as BinderSettings
from svc_common.settings import SettingsError

ROOT = Path(__file__).resolve().parents[2]
# A complete binder environment that reaches nothing: AWS calls go to a closed loopback port
# and the JWKS address is a closed loopback port too (nothing here may leave the machine).
BINDER_ENV = {
    "PUBLIC_BASE_URL": "https://agents.example.com",
    "COGNITO_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TEST",
    "COGNITO_CLIENT_IDS": "client-a",
    "COGNITO_JWKS_URL": "http://127.0.0.1:9/jwks.json",
    "ALLOW_INSECURE_LOOPBACK": "true",
    "VAULT_PREFIX": "vault",
    "VAULT_KMS_KEY_ARN": "arn:aws:kms:us-east-1:111111111111:key/test",
    "SESSION_TABLE_NAME": "sessions",
    "PROVIDERS": "[]",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
}
AGENT_ENV = {
    "COGNITO_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TEST",
    "COGNITO_CLIENT_IDS": "client-a",
    "COGNITO_JWKS_URL": "http://127.0.0.1:9/jwks.json",
    "ALLOW_INSECURE_LOOPBACK": "true",
    "BINDER_INTERNAL_URL": "http://127.0.0.1:9",
    "AGENT_MODEL": "offline",
}
PYTHONPATH = os.pathsep.join(str(ROOT / "services" / d) for d in ("common", "binder", "agent"))


@pytest.mark.parametrize(
    ("name", "client"),
    [
        ("binder", lambda: TestClient(create_binder(BinderSettings.from_env(BINDER_ENV)))),
        ("agent", lambda: TestClient(create_agent(AgentSettings.from_env(AGENT_ENV)))),
    ],
)
def test_healthz(name: str, client: object) -> None:
    with client() as c:  # type: ignore[operator]
        response = c.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "service": name}
        assert response.headers["cache-control"] == "no-store"
        assert c.post("/healthz").status_code == 405
        assert c.get("/nothing-here").status_code == 404


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BIND_HOST": "example.com"}, "BIND_HOST must be an IP address"),
        ({"PUBLIC_PORT": "70000"}, "PUBLIC_PORT must be an integer from 1 to 65535"),
        ({"INTERNAL_PORT": "http"}, "INTERNAL_PORT must be an integer"),
        ({"PUBLIC_PORT": "9000", "INTERNAL_PORT": "9000"}, "must differ"),
        ({"LOG_LEVEL": "CHATTY"}, "LOG_LEVEL must be one of"),
    ],
)
def test_binder_settings_name_the_bad_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        BinderSettings.from_env({**BINDER_ENV, **env})


def test_defaults_bind_loopback_only() -> None:
    assert BinderSettings.from_env(BINDER_ENV).server.bind_host == "127.0.0.1"
    assert AgentSettings.from_env(AGENT_ENV).server.bind_host == "127.0.0.1"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(module: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": PYTHONPATH, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_healthy(
    url: str, process: subprocess.Popen[str], timeout: float = 15.0
) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited early: {process.stderr.read() if process.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                body: dict[str, str] = json.loads(response.read())
                return body
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {timeout}s")


@pytest.fixture
def binder_process() -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    ports = _free_ports(2)
    process = _start(
        "binder", {**BINDER_ENV, "PUBLIC_PORT": str(ports[0]), "INTERNAL_PORT": str(ports[1])}
    )
    try:
        yield process, ports
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_binder_entrypoint_serves_both_ports_and_stops_cleanly(
    binder_process: tuple[subprocess.Popen[str], list[int]],
) -> None:
    process, ports = binder_process
    for port in ports:
        assert _wait_healthy(f"http://127.0.0.1:{port}/healthz", process)["service"] == "binder"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert lines, "the service logs JSON lines"
    assert all(line["service"] == "binder" for line in lines)
    assert not any("/healthz" in line["message"] for line in lines), "no access log lines"
    assert any("Finished server process" in line["message"] for line in lines), "graceful stop"


def test_agent_entrypoint_serves_healthz() -> None:
    (port,) = _free_ports(1)
    process = _start("agent", {**AGENT_ENV, "PORT": str(port)})
    try:
        assert _wait_healthy(f"http://127.0.0.1:{port}/healthz", process)["service"] == "agent"
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert process.returncode == 0


def test_port_in_use_is_named() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = _start("agent", {**AGENT_ENV, "PORT": str(port)})
        _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr


def test_bad_setting_stops_the_process_with_its_name() -> None:
    process = _start("binder", {**BINDER_ENV, "PUBLIC_PORT": "not-a-port"})
    _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert "binder: configuration error: PUBLIC_PORT must be an integer" in stderr
    assert "Traceback" not in stderr


def test_listening_sockets_let_asyncio_disable_nagle() -> None:
    """asyncio turns on TCP_NODELAY for accepted connections only if the listening socket is
    explicitly TCP; otherwise each response stalls ~40 ms on Nagle and delayed ACKs."""
    from svc_common.serve import bind_sockets

    (sock,) = bind_sockets("127.0.0.1", [0])
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()
