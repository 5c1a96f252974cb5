"""AWS failing under a running binder, injected by a proxy in front of moto server: retries
with backoff absorb short faults; lasting ones become a clear 503 with Retry-After, with an
audit line and nothing overwritten. The provider timing out during the code exchange stores
nothing either."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from devstack import aws, procs
from tests.integration.conftest import MOCK_CLIENT, PASSWORDS, ROOT, RunningBinder


@pytest.fixture
def proxy(moto_endpoint: str, log_dir: Path) -> Iterator[str]:
    port = procs.free_port()
    child = procs.start(
        "aws-proxy",
        [
            sys.executable,
            "-m",
            "devstack.aws_proxy",
            "--port",
            str(port),
            "--upstream",
            moto_endpoint,
        ],
        env={**os.environ},
        log_dir=log_dir,
        cwd=ROOT,
    )
    url = f"http://{procs.LOOPBACK}:{port}"
    try:
        procs.wait_http(child, f"{url}/_proxy/counts")
        yield url
    finally:
        child.stop()


def _post(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback test servers only
        url,
        data=data,
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return json.loads(response.read() or b"{}")


def _counts(proxy: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{proxy}/_proxy/counts", timeout=10) as response:  # noqa: S310
        return dict(json.loads(response.read()))


def _connect(binder: RunningBinder, token: str) -> None:
    body = {"provider": "mock", "scopes": ["profile"]}
    link = httpx2.post(
        f"{binder.internal}/internal/tokens",
        json=body,
        headers={"authorization": f"Bearer {token}"},
    ).json()["authorization_url"]
    with httpx2.Client(timeout=30, follow_redirects=False) as browser:
        to_provider = browser.get(link, headers={"x-amzn-oidc-accesstoken": token})
        consented = browser.post(to_provider.headers["location"], data={"sub": "alice@mock"})
        done = browser.get(
            consented.headers["location"], headers={"x-amzn-oidc-accesstoken": token}
        )
        assert done.status_code == 200, done.text


@pytest.fixture
def running(
    local_aws: aws.LocalAws,
    proxy: str,
    oidc_mock: str,
    start_binder: Callable[..., RunningBinder],
) -> tuple[RunningBinder, str, str]:
    through_proxy = dataclasses.replace(local_aws, endpoint=proxy)
    binder = start_binder(
        through_proxy,
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
    alice = aws.sign_in(local_aws, "alice", PASSWORDS["alice"])
    return binder, proxy, alice


def _ask(binder: RunningBinder, token: str) -> httpx2.Response:
    return httpx2.post(
        f"{binder.internal}/internal/tokens",
        json={"provider": "mock", "scopes": ["profile"]},
        headers={"authorization": f"Bearer {token}"},
        timeout=60,
    )


def test_short_secrets_manager_outage_is_retried_away(
    running: tuple[RunningBinder, str, str],
) -> None:
    binder, proxy, alice = running
    _post(f"{proxy}/_proxy/reset")
    _post(
        f"{proxy}/_proxy/faults",
        {
            "target": "secretsmanager.GetSecretValue",
            "status": 500,
            "code": "InternalServiceError",
            "count": 2,
        },
    )
    response = _ask(binder, alice)
    assert response.status_code == 403  # no connection yet: the read succeeded on attempt 3
    assert _counts(proxy)["secretsmanager.GetSecretValue"] == 3


def test_lasting_throttling_is_a_503_with_retry_after_and_an_audit_line(
    running: tuple[RunningBinder, str, str],
) -> None:
    binder, proxy, alice = running
    _post(f"{proxy}/_proxy/reset")
    _post(
        f"{proxy}/_proxy/faults",
        {
            "target": "secretsmanager.GetSecretValue",
            "status": 400,
            "code": "ThrottlingException",
            "count": -1,
        },
    )
    response = _ask(binder, alice)
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    # botocore standard mode, three attempts in all (app.AWS_CONFIG).
    assert _counts(proxy)["secretsmanager.GetSecretValue"] == 3
    assert '"audit":"vault_unavailable"' in binder.child.log_tail(200)


@pytest.fixture
def restart(
    start_binder: Callable[..., RunningBinder],
    local_aws: aws.LocalAws,
    oidc_mock: str,
    proxy: str,
) -> Callable[[RunningBinder], RunningBinder]:
    """A new binder task in place of `old` (same public port), with an empty cache."""

    def again(old: RunningBinder) -> RunningBinder:
        old.child.stop()
        return start_binder(
            dataclasses.replace(local_aws, endpoint=proxy),
            [
                {
                    "name": "mock",
                    "kind": "oidc",
                    "client_id": MOCK_CLIENT[0],
                    "issuer": oidc_mock,
                    "secret_arn": local_aws.provider_secrets["mock"],
                }
            ],
            name="binder-restarted",
            public_port=int(old.public.rsplit(":", 1)[1]),
        )

    return again


def test_kms_denying_decrypt_is_a_503_and_overwrites_nothing(
    running: tuple[RunningBinder, str, str],
    local_aws: aws.LocalAws,
    restart: Callable[[RunningBinder], RunningBinder],
) -> None:
    binder, proxy, alice = running
    _connect(binder, alice)
    secrets = aws.client("secretsmanager", local_aws.endpoint)
    (name,) = [
        s["Name"]
        for s in secrets.list_secrets()["SecretList"]
        if s["Name"].startswith("agent-token-vault/")
    ]
    before = secrets.get_secret_value(SecretId=name)["SecretString"]
    _post(
        f"{proxy}/_proxy/faults",
        {
            "target": "secretsmanager.GetSecretValue",
            "status": 400,
            "code": "DecryptionFailure",
            "count": -1,
        },
    )
    fresh = restart(binder)
    response = _ask(fresh, alice)
    assert response.status_code == 503
    assert response.json()["code"] == "DecryptionFailure"
    assert secrets.get_secret_value(SecretId=name)["SecretString"] == before
    assert '"reason":"DecryptionFailure"' in fresh.child.log_tail(200)
