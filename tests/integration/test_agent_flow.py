"""Agent + binder under uvicorn, moto server, a real OIDC provider: a user asks who they are
at the provider, is asked to connect, consents, asks again, and gets the answer computed from
the provider's userinfo (offline planner: the same tools and orchestrator as with Bedrock)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from devstack import aws, procs, services
from tests.integration.conftest import MOCK_CLIENT, PASSWORDS, ROOT, RunningBinder


@pytest.fixture
def start_agent(log_dir: Path) -> Iterator[Callable[..., str]]:
    started: list[procs.Child] = []

    def start(local: aws.LocalAws, binder: RunningBinder, issuer: str) -> str:
        port = procs.free_port()
        child = procs.start(
            "agent",
            [sys.executable, "-m", "agent"],
            env=services.agent_env(
                issuer=local.issuer,
                client_id=local.client_id,
                jwks_url=local.jwks_url,
                port=port,
                binder_url=binder.internal,
                userinfo={"mock": f"{issuer}/userinfo"},
            ),
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
