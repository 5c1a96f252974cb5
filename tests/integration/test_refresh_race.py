"""Two binder processes, one moto server, one provider that rotates refresh tokens: many
concurrent token requests at expiry cause exactly one upstream refresh, and every caller gets
the new token. The provider counts replays of rotated-out refresh tokens: there must be none.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx2
import pytest

from devstack import aws, procs
from tests.integration.conftest import PASSWORDS, RunningBinder

REQUESTS = 48


@pytest.fixture
def fake_provider_process(log_dir: Path) -> Iterator[str]:
    port = procs.free_port()
    child = procs.start(
        "fake-provider",
        [
            sys.executable,
            "-m",
            "tests.fakes.provider",
            "--port",
            str(port),
            "--client-id",
            "binder-client",
            "--client-secret",
            "fake-secret",
        ],
        env={**os.environ},
        log_dir=log_dir,
    )
    url = f"http://{procs.LOOPBACK}:{port}"
    try:
        procs.wait_http(child, f"{url}/.well-known/openid-configuration")
        yield url
    finally:
        child.stop()


def _fake_entry(local: aws.LocalAws, provider: str) -> dict[str, object]:
    return {
        "name": "fake",
        "kind": "oidc",
        "client_id": "binder-client",
        "issuer": provider,
        "secret_arn": local.provider_secrets["fake"],
    }


def _consent(
    binder: RunningBinder, token: str, *, before_callback: Callable[[], object] | None = None
) -> httpx2.Response:
    """The browser's part of a consent with the fake provider; returns the callback's answer."""
    link = httpx2.post(
        f"{binder.internal}/internal/tokens",
        json={"provider": "fake", "scopes": ["read"]},
        headers={"authorization": f"Bearer {token}"},
    ).json()["authorization_url"]
    with httpx2.Client(timeout=30, follow_redirects=False) as browser:
        to_provider = browser.get(link, headers={"x-amzn-oidc-accesstoken": token})
        consented = browser.get(
            to_provider.headers["location"] + "&" + urlencode({"login_hint": "alice@fake"})
        )
        if before_callback is not None:
            before_callback()
        return browser.get(
            consented.headers["location"], headers={"x-amzn-oidc-accesstoken": token}
        )


def test_concurrent_requests_across_two_binders_refresh_once(
    local_aws: aws.LocalAws,
    fake_provider_process: str,
    start_binder: Callable[..., RunningBinder],
) -> None:
    provider = fake_provider_process
    entry = _fake_entry(local_aws, provider)
    first = start_binder(local_aws, [entry], name="binder-a")
    second = start_binder(local_aws, [entry], name="binder-b")
    alice = aws.sign_in(local_aws, "alice", PASSWORDS["alice"])
    as_alice = {"authorization": f"Bearer {alice}"}
    body = {"provider": "fake", "scopes": ["read"]}
    control = httpx2.Client(base_url=provider, timeout=10)
    # Tokens issued now expire inside the binders' 300 s refresh skew.
    assert control.post("/_control/faults", json={"expires_in": 60}).status_code == 200

    done = _consent(first, alice)
    assert done.status_code == 200, done.text

    # The refreshed token will be fresh; the stored one is due for refresh now. A slow token
    # endpoint keeps the refresh in flight while the other process's requests arrive.
    control.post("/_control/faults", json={"expires_in": 3600, "token_delay_seconds": 0.5})
    assert control.get("/_control/counters").json()["refreshes"] == 0

    def ask(i: int) -> str:
        binder = first if i % 2 else second
        response = httpx2.post(
            f"{binder.internal}/internal/tokens", json=body, headers=as_alice, timeout=30
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        tokens = list(pool.map(ask, range(REQUESTS)))

    counters = control.get("/_control/counters").json()
    assert counters["refreshes"] == 1
    assert counters["replayed_refresh_tokens"] == 0
    assert len(set(tokens)) == 1, "every caller gets the one new token"
    me = httpx2.get(f"{provider}/userinfo", headers={"authorization": f"Bearer {tokens[0]}"})
    assert me.status_code == 200
    assert me.json()["sub"] == "alice@fake"


def test_provider_timing_out_during_the_exchange_stores_nothing(
    local_aws: aws.LocalAws,
    fake_provider_process: str,
    start_binder: Callable[..., RunningBinder],
) -> None:
    provider = fake_provider_process
    entry = _fake_entry(local_aws, provider)
    binder = start_binder(local_aws, [entry], extra_env={"HTTP_TIMEOUT_SECONDS": "1"})
    alice = aws.sign_in(local_aws, "alice", PASSWORDS["alice"])
    control = httpx2.Client(base_url=provider, timeout=10)
    done = _consent(
        binder,
        alice,
        before_callback=lambda: control.post("/_control/faults", json={"token_delay_seconds": 3}),
    )
    assert done.status_code == 503
    assert int(done.headers["retry-after"]) > 0
    assert "Nothing was stored" in done.text
    secrets = aws.client("secretsmanager", local_aws.endpoint)
    names = [s["Name"] for s in secrets.list_secrets()["SecretList"]]
    assert not [n for n in names if n.startswith("agent-token-vault/")]
