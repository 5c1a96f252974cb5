"""The full consent flow over HTTP: binder under uvicorn, moto server, a real OIDC provider.

The browser is an httpx2 client that keeps cookies; where the ALB would add the signed-in
user's `x-amzn-oidc-accesstoken`, the test adds the Cognito access token moto issued.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx2

from devstack import aws
from tests.integration.conftest import MOCK_CLIENT, PASSWORDS, RunningBinder


def _mock_entry(local: aws.LocalAws, issuer: str) -> dict[str, object]:
    return {
        "name": "mock",
        "kind": "oidc",
        "client_id": MOCK_CLIENT[0],
        "issuer": issuer,
        "secret_arn": local.provider_secrets["mock"],
    }


def test_full_flow_against_a_real_oidc_provider(
    local_aws: aws.LocalAws,
    oidc_mock: str,
    start_binder: Callable[..., RunningBinder],
) -> None:
    binder = start_binder(local_aws, [_mock_entry(local_aws, oidc_mock)])
    alice = aws.sign_in(local_aws, "alice", PASSWORDS["alice"])
    bob = aws.sign_in(local_aws, "bob", PASSWORDS["bob"])
    agent = httpx2.Client(base_url=binder.internal, timeout=30)
    as_alice = {"authorization": f"Bearer {alice}"}

    # 1. The agent asks for a token: none yet, so a consent link.
    first = agent.post(
        "/internal/tokens", json={"provider": "mock", "scopes": ["profile"]}, headers=as_alice
    )
    assert first.status_code == 403, first.text
    link = first.json()["authorization_url"]
    assert link.startswith(f"{binder.public}/oauth2/authorize/")

    with httpx2.Client(timeout=30, follow_redirects=False) as browser:
        # 2. Bob opens alice's link (forwarded): refused, and the link dies.
        forwarded = browser.get(link, headers={"x-amzn-oidc-accesstoken": bob})
        assert forwarded.status_code == 403
        again = agent.post(
            "/internal/tokens", json={"provider": "mock", "scopes": ["profile"]}, headers=as_alice
        )
        link = again.json()["authorization_url"]

        # 3. Alice opens her own link: redirected to the provider.
        to_provider = browser.get(link, headers={"x-amzn-oidc-accesstoken": alice})
        assert to_provider.status_code == 302, to_provider.text
        provider_url = to_provider.headers["location"]
        assert provider_url.startswith(f"{oidc_mock}/oauth2/authorize?")
        assert "code_challenge_method=S256" in provider_url

        # 4. Alice consents at the provider (its form posts the subject).
        consented = browser.post(provider_url, data={"sub": "alice@mock"})
        assert consented.status_code in (302, 303), consented.text
        callback = consented.headers["location"]
        assert callback.startswith(f"{binder.public}/oauth2/callback/mock?")

        # 5. Back at the binder, as alice: the code is exchanged and stored.
        done = browser.get(callback, headers={"x-amzn-oidc-accesstoken": alice})
        assert done.status_code == 200, done.text
        assert "mock is connected" in done.text

        # 6. Replaying the callback does nothing.
        assert browser.get(callback, headers={"x-amzn-oidc-accesstoken": alice}).status_code == 400

    # 7. The agent asks again and gets a token that works at the provider, for alice.
    issued = agent.post(
        "/internal/tokens", json={"provider": "mock", "scopes": ["profile"]}, headers=as_alice
    )
    assert issued.status_code == 200, issued.text
    access_token = issued.json()["access_token"]
    me = httpx2.get(f"{oidc_mock}/userinfo", headers={"authorization": f"Bearer {access_token}"})
    assert me.status_code == 200
    assert me.json()["sub"] == "alice@mock"

    # 8. Bob has nothing.
    bobs = agent.post(
        "/internal/tokens",
        json={"provider": "mock", "scopes": ["profile"]},
        headers={"authorization": f"Bearer {bob}"},
    )
    assert bobs.status_code == 403

    # 9. The secret exists under the vault prefix, encrypted with the vault key.
    secrets = aws.client("secretsmanager", local_aws.endpoint)
    names = [s["Name"] for s in secrets.list_secrets()["SecretList"]]
    vault = [n for n in names if n.startswith("agent-token-vault/mock/")]
    assert len(vault) == 1
    assert secrets.describe_secret(SecretId=vault[0])["KmsKeyId"] == local_aws.key_arn

    # 10. Disconnect: gone, and the agent is asked for consent again.
    assert agent.delete("/internal/tokens/mock", headers=as_alice).status_code == 204
    after = agent.post(
        "/internal/tokens", json={"provider": "mock", "scopes": ["profile"]}, headers=as_alice
    )
    assert after.json()["reason"] == "no_connection"

    # 11. Nothing secret reached the binder's log.
    log = binder.child.log_tail(10_000)
    for value in (alice, bob, access_token, MOCK_CLIENT[1], callback.split("code=")[1][:20]):
        assert value not in log
    assert '"audit":"connection_created"' in log


def test_flow_started_on_one_binder_completes_on_another(
    local_aws: aws.LocalAws,
    oidc_mock: str,
    start_binder: Callable[..., RunningBinder],
) -> None:
    """A binder task that stops mid-flow loses nothing: the state lives in DynamoDB."""
    providers = [_mock_entry(local_aws, oidc_mock)]
    first = start_binder(local_aws, providers, name="binder-first")
    public_port = int(first.public.rsplit(":", 1)[1])
    alice = aws.sign_in(local_aws, "alice", PASSWORDS["alice"])
    as_alice = {"authorization": f"Bearer {alice}"}
    body = {"provider": "mock", "scopes": ["profile"]}
    with httpx2.Client(timeout=30, follow_redirects=False) as browser:
        link = httpx2.post(f"{first.internal}/internal/tokens", json=body, headers=as_alice).json()[
            "authorization_url"
        ]
        to_provider = browser.get(link, headers={"x-amzn-oidc-accesstoken": alice})
        assert to_provider.status_code == 302
        first.child.stop()  # the task dies while the user is at the provider
        second = start_binder(local_aws, providers, name="binder-second", public_port=public_port)
        consented = browser.post(to_provider.headers["location"], data={"sub": "alice@mock"})
        done = browser.get(
            consented.headers["location"], headers={"x-amzn-oidc-accesstoken": alice}
        )
        assert done.status_code == 200, done.text
    issued = httpx2.post(f"{second.internal}/internal/tokens", json=body, headers=as_alice)
    assert issued.status_code == 200
