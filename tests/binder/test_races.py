"""Refreshes racing disconnects, slow providers and each other, on two binders sharing one vault.

The invariants: a single-use refresh token is spent once; a disconnect that has answered stays
done; a writer that lost the race never overwrites a newer record.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import boto3
import httpx2

from binder.oauth import ProviderError, TokenGrant
from tests.binder.conftest import INTERNAL, REGION, Cognito, Harness, running_binder
from tests.fakes.provider import FakeProvider

PROVIDER = "fake"


def _user_hash(binder: Harness, token: str) -> str:
    return anyio.run(binder.services.verifier.verify, token).user_hash


def _expire(binder: Harness, user_hash: str) -> None:
    vault = binder.services.vault
    record = anyio.run(lambda: vault.get(user_hash, PROVIDER, cached=False))
    assert record is not None
    expired = dataclasses.replace(record, expires_at=int(time.time()) - 10)
    anyio.run(lambda: vault.put(user_hash, PROVIDER, expired))


def _stored(binder: Harness, user_hash: str) -> Any:
    return anyio.run(lambda: binder.services.vault.get(user_hash, PROVIDER, cached=False))


def _wait_until(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_disconnect_during_an_in_flight_refresh_stays_disconnected(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    user_hash = _user_hash(binder, alice)
    _expire(binder, user_hash)
    binder.provider.faults.token_delay_seconds = 1.5  # the refresh is at the provider ...
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        refreshing = pool.submit(binder.request_token, alice)
        _wait_until(lambda: binder.provider.counters.token_requests_total >= 2)
        gone = binder.client.delete(  # ... while the user disconnects
            f"{INTERNAL}/internal/tokens/{PROVIDER}", headers={"authorization": f"Bearer {alice}"}
        )
        assert gone.status_code == 204
        answer = refreshing.result(timeout=30)
    # The refresh's write must not bring the connection back, nor its token reach the agent.
    assert binder.stored_secret_names() == []
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "consent_required"
    again = binder.request_token(alice)
    assert again.status_code == 403
    assert again.json()["reason"] == "no_connection"
    assert binder.stored_secret_names() == []


def test_tokens_refreshed_after_a_disconnect_are_revoked_not_stored(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    user_hash = _user_hash(binder, alice)
    _expire(binder, user_hash)
    real = binder.services.broker._oauth
    fresh: list[TokenGrant] = []
    answered = threading.Event()
    release = threading.Event()

    class _AnsweredThenHeld(_HeldRefresh):
        async def refresh(self, spec: Any, *, client_secret: str, refresh_token: str) -> TokenGrant:
            grant = await real.refresh(
                spec, client_secret=client_secret, refresh_token=refresh_token
            )
            fresh.append(grant)  # the provider has rotated: the new tokens are live ...
            answered.set()
            await anyio.to_thread.run_sync(lambda: release.wait(30))
            return grant

    binder.services.broker._oauth = _AnsweredThenHeld(real, lambda: fresh[0])  # type: ignore[assignment]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        refreshing = pool.submit(binder.request_token, alice)
        assert answered.wait(10)
        gone = binder.client.delete(  # ... when the user disconnects
            f"{INTERNAL}/internal/tokens/{PROVIDER}", headers={"authorization": f"Bearer {alice}"}
        )
        assert gone.status_code == 204
        release.set()
        answer = refreshing.result(timeout=30)
    assert answer.status_code == 403
    assert answer.json()["reason"] == "no_connection"
    assert binder.stored_secret_names() == []
    (grant,) = fresh
    assert not binder.provider.is_token_active(grant.access_token)
    assert grant.refresh_token is not None
    assert not binder.provider.is_token_active(grant.refresh_token)


def test_a_provider_slower_than_the_lease_never_gets_a_refresh_token_twice(
    aws: dict[str, Any], cognito: Cognito
) -> None:
    provider = FakeProvider(
        issuer="https://provider.test",
        client_id="binder-client",
        client_secret="provider-client-secret-value",
    )
    alice = cognito.token("alice")
    with (
        running_binder(aws, cognito, provider) as one,
        running_binder(aws, cognito, provider) as two,
    ):
        for binder in (one, two):  # a lease much shorter than the provider's answer
            binder.services.broker._lease_seconds = 1  # the settings floor is 5 s
        one.connect(alice)
        user_hash = _user_hash(one, alice)
        _expire(one, user_hash)
        provider.faults.token_delay_seconds = 3.0
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(one.request_token, alice)
            _wait_until(lambda: provider.counters.token_requests_total >= 2)
            time.sleep(1.5)  # past the first lease: only renewal keeps the second binder out
            second = pool.submit(two.request_token, alice)
            answers = [first.result(timeout=60), second.result(timeout=60)]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert provider.counters.replayed_refresh_tokens == 0
    assert provider.counters.refreshes == 1
    assert answers[0].json()["access_token"] == answers[1].json()["access_token"]
    stored = _stored(one, user_hash)
    assert stored.status == "active"
    assert stored.access_token == answers[0].json()["access_token"]
    assert provider.is_token_active(stored.access_token)


class _HeldRefresh:
    """An OAuth client whose refresh waits until released, then calls `answer` (which returns
    a grant or raises); everything else goes to the real client."""

    def __init__(self, real: Any, answer: Callable[[], TokenGrant]) -> None:
        self.real = real
        self.answer = answer
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def refresh(self, spec: Any, *, client_secret: str, refresh_token: str) -> TokenGrant:
        self.entered.set()
        await anyio.to_thread.run_sync(lambda: self.release.wait(30))
        return self.answer()


def _lose_the_race(
    aws: dict[str, Any], cognito: Cognito, answer: Callable[[], TokenGrant], **newer: Any
) -> tuple[httpx2.Response, Any]:
    """Alice's refresh is held at the provider while a newer record is stored (a reconnect,
    or a task that refreshed after this one's lease ran out); then the provider answers.
    Returns the refresh request's answer and what the vault holds afterwards."""
    alice = cognito.token("alice")
    with running_binder(aws, cognito) as one:
        one.connect(alice)
        user_hash = _user_hash(one, alice)
        _expire(one, user_hash)
        held = _HeldRefresh(one.services.broker._oauth, answer)
        one.services.broker._oauth = held  # type: ignore[assignment]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(one.request_token, alice)
            assert held.entered.wait(10)
            record = dataclasses.replace(
                _stored(one, user_hash), expires_at=int(time.time()) + 3600, **newer
            )
            anyio.run(lambda: one.services.vault.put(user_hash, PROVIDER, record))
            held.release.set()
            answer_ = slow.result(timeout=30)
        return answer_, _stored(one, user_hash)


def test_a_refresh_that_lost_the_race_does_not_overwrite_the_newer_record(
    aws: dict[str, Any], cognito: Cognito
) -> None:
    stale = TokenGrant(
        access_token="stale-access",
        token_type="Bearer",
        refresh_token="stale-refresh",
        expires_at=int(time.time()) + 3600,
        scopes=None,
        id_token=None,
    )
    answer, stored = _lose_the_race(
        aws, cognito, lambda: stale, access_token="newer-access", refresh_token="newer-rt"
    )
    assert stored.access_token == "newer-access"
    assert stored.refresh_token == "newer-rt"
    assert answer.status_code == 200
    assert answer.json()["access_token"] == "newer-access"


def test_invalid_grant_after_a_lost_race_keeps_the_newer_record(
    aws: dict[str, Any], cognito: Cognito
) -> None:
    def refused() -> TokenGrant:
        raise ProviderError("invalid_grant", "invalid_grant")

    answer, stored = _lose_the_race(aws, cognito, refused, refresh_token="newer-rt")
    assert stored.status == "active"
    assert stored.refresh_token == "newer-rt"
    assert answer.status_code == 200


def test_the_vault_write_is_conditional_on_the_version_read(aws: dict[str, Any]) -> None:
    from binder.vault import TokenRecord, Vault

    vault = Vault(
        client=boto3.client("secretsmanager", region_name=REGION),
        prefix="vault-test",
        kms_key_id=aws["key_arn"],
        cache_ttl=0,
    )
    record = TokenRecord(
        provider=PROVIDER,
        access_token="a1",
        token_type="Bearer",
        refresh_token="r1",
        expires_at=None,
        scopes=("read",),
        obtained_at=1,
    )

    async def scenario() -> None:
        first = await vault.put("u", PROVIDER, record)
        assert first.version
        second = await vault.replace(
            "u",
            PROVIDER,
            dataclasses.replace(record, access_token="a2"),
            expected_version=first.version,
        )
        assert second is not None
        assert second.version != first.version
        stale = await vault.replace(
            "u",
            PROVIDER,
            dataclasses.replace(record, access_token="stale"),
            expected_version=first.version,
        )
        assert stale is None
        current = await vault.get("u", PROVIDER, cached=False)
        assert current is not None
        assert current.access_token == "a2"
        assert await vault.delete("u", PROVIDER)
        assert second.version is not None
        gone = await vault.replace(
            "u",
            PROVIDER,
            dataclasses.replace(record, access_token="ghost"),
            expected_version=second.version,
        )
        assert gone is None
        assert await vault.get("u", PROVIDER, cached=False) is None

    anyio.run(scenario)
    client = boto3.client("secretsmanager", region_name=REGION)
    assert not [s for s in client.list_secrets()["SecretList"] if s["Name"].startswith("vault-")]
