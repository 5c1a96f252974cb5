"""Agent + binder under uvicorn, moto server, a real OIDC provider: a user asks who they are
at the provider, is asked to connect, consents, asks again, and gets the answer computed from
the provider's userinfo (offline planner: the same tools and orchestrator as with Bedrock)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from devstack import aws, procs
from tests.integration.conftest import MOCK_CLIENT, PASSWORDS, ROOT, RunningBinder


def _agent_env(
    local: aws.LocalAws, binder: RunningBinder, port: int, issuer: str
) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(str(ROOT / "services" / d) for d in ("common", "agent")),
        "BIND_HOST": procs.LOOPBACK,
        "PORT": str(port),
        "ALLOW_INSECURE_LOOPBACK": "true",
        "COGNITO_ISSUER": local.issuer,
        "COGNITO_CLIENT_IDS": local.client_id,
        "COGNITO_JWKS_URL": local.jwks_url,
        "BINDER_INTERNAL_URL": binder.internal,
        "AGENT_MODEL": "offline",
        "AGENT_PROVIDERS": "mock",
        "OIDC_USERINFO": json.dumps({"mock": f"{issuer}/userinfo"}),
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture
def start_agent(log_dir: Path) -> Iterator[Callable[..., str]]:
    started: list[procs.Child] = []

    def start(local: aws.LocalAws, binder: RunningBinder, issuer: str) -> str:
        port = procs.free_port()
        child = procs.start(
            "agent",
            [sys.executable, "-m", "agent"],
            env=_agent_env(local, binder, port, issuer),
            log_dir=log_dir,
            cwd=ROOT,
        )
        started.append(child)
        procs.wait_http(child, f"http://{procs.LOOPBACK}:{port}/healthz")
        return f"http://{procs.LOOPBACK}:{port}"

    yield start
    for child in started:
        child.stop()


def test_who_am_i_needs_consent_then_answers_from_userinfo(
    local_aws: aws.LocalAws,
    oidc_mock: str,
    start_binder: Callable[..., RunningBinder],
    start_agent: Callable[..., str],
) -> None:
    binder = start_binder(
        local_aws,
        [
            {
                "name": "mock",
                "kind": "oidc",
                "client_id": MOCK_CLIENT[0],
                "issuer": oidc_mock,
                "secret_arn": local_aws.provider_secrets["mock"],
            }
        ],
    )
    agent = start_agent(local_aws, binder, oidc_mock)
    alice = aws.sign_in(local_aws, "alice", PASSWORDS["alice"])
    api = httpx2.Client(base_url=agent, timeout=30, headers={"authorization": f"Bearer {alice}"})

    first = api.post("/api/chat", json={"message": "who am I on mock?", "history": []})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["reply"].startswith("[offline planner]")
    (item,) = body["authorization_required"]
    assert item["provider"] == "mock"
    assert item["reason"] == "no_connection"
    assert body["tool_calls"] == [
        {"tool": "mock_whoami", "provider": "mock", "status": "authorization_required"}
    ]

    with httpx2.Client(timeout=30, follow_redirects=False) as browser:
        to_provider = browser.get(
            item["authorization_url"], headers={"x-amzn-oidc-accesstoken": alice}
        )
        assert to_provider.status_code == 302, to_provider.text
        consented = browser.post(to_provider.headers["location"], data={"sub": "alice@mock"})
        done = browser.get(
            consented.headers["location"], headers={"x-amzn-oidc-accesstoken": alice}
        )
        assert done.status_code == 200, done.text

    history = [
        {"role": "user", "text": "who am I on mock?"},
        {"role": "assistant", "text": body["reply"]},
    ]
    second = api.post("/api/chat", json={"message": "who am I on mock?", "history": history})
    assert second.status_code == 200, second.text
    answer = second.json()
    assert answer["authorization_required"] == []
    assert answer["tool_calls"] == [{"tool": "mock_whoami", "provider": "mock", "status": "ok"}]
    assert "alice@mock" in answer["reply"]
