"""AWS failing under the binder: clear 503s with Retry-After, audit lines, nothing lost."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError

from tests.binder.conftest import Harness


def _failing(operation: str, code: str) -> Any:
    def fail(**kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)

    return fail


def test_throttled_secrets_manager_is_a_503_with_retry_after(
    binder: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="binder.audit")
    alice = binder.cognito.token("alice")
    monkeypatch.setattr(
        binder.services.vault._client,
        "get_secret_value",
        _failing("GetSecretValue", "ThrottlingException"),
    )
    response = binder.request_token(alice)
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert response.json() == {
        "error": "temporarily_unavailable",
        "code": "ThrottlingException",
        "retry_after": 5,
    }
    events = [getattr(r, "fields", {}) for r in caplog.records]
    assert any(e.get("audit") == "vault_unavailable" for e in events)


def test_kms_denied_while_storing_fails_the_flow_and_stores_nothing(
    binder: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = binder.cognito.token("alice")
    link = binder.request_token(alice).json()["authorization_url"]
    redirect = binder.open_authorization(alice, link)
    callback_url = binder.consent_at_provider(redirect.headers["location"])
    denied = _failing("CreateSecret", "KMSAccessDeniedException")
    monkeypatch.setattr(binder.services.vault._client, "create_secret", denied)
    response = binder.callback(alice, callback_url)
    assert response.status_code == 503
    assert "Temporarily unavailable" in response.text
    monkeypatch.undo()
    assert binder.stored_secret_names() == []
    # The answer's state is spent: it cannot be replayed once KMS is back ...
    assert binder.callback(alice, callback_url).status_code == 400
    assert binder.stored_secret_names() == []
    # ... but the link still works: the user starts over from it.
    again = binder.open_authorization(alice, link)
    assert (
        binder.callback(alice, binder.consent_at_provider(again.headers["location"])).status_code
        == 200
    )


def test_kms_denied_on_read_is_a_clear_503_and_overwrites_nothing(
    binder: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    binder.services.vault._cache.clear()
    before = binder.stored_secret_names()
    monkeypatch.setattr(
        binder.services.vault._client,
        "get_secret_value",
        _failing("GetSecretValue", "DecryptionFailure"),
    )
    response = binder.request_token(alice)
    assert response.status_code == 503
    assert response.json()["code"] == "DecryptionFailure"
    monkeypatch.undo()
    assert binder.stored_secret_names() == before
    assert binder.request_token(alice).status_code == 200


def test_session_table_down_is_a_503(binder: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = binder.cognito.token("alice")
    monkeypatch.setattr(
        binder.services.sessions._client,
        "put_item",
        _failing("PutItem", "ProvisionedThroughputExceededException"),
    )
    response = binder.request_token(alice)
    assert response.status_code == 503
    assert response.headers["retry-after"]


def test_provider_down_during_exchange_is_a_503_page_with_retry_after(binder: Harness) -> None:
    binder.provider.faults.token_status = 503
    alice = binder.cognito.token("alice")
    link = binder.request_token(alice).json()["authorization_url"]
    redirect = binder.open_authorization(alice, link)
    response = binder.callback(alice, binder.consent_at_provider(redirect.headers["location"]))
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert "Nothing was stored" in response.text
    assert "open the authorization link from the agent again" in response.text
    assert binder.stored_secret_names() == []


def test_provider_without_expires_in_gets_an_assumed_lifetime(binder: Harness) -> None:
    """RFC 6749 makes expires_in optional. A token whose lifetime is unknown is assumed to last
    an hour (not forever), so it is refreshed, or consent asked again, instead of failing at
    the provider for good."""
    binder.provider.faults.omit_expires_in = True
    alice = binder.cognito.token("alice")
    assert binder.connect(alice).status_code == 200
    issued = binder.request_token(alice).json()
    assert issued["expires_at"] == pytest.approx(time.time() + 3600, abs=30)
    assert binder.provider.counters.refreshes == 0


def test_expired_token_without_refresh_token_asks_for_consent(binder: Harness) -> None:
    binder.provider.faults.omit_refresh_token = True
    alice = binder.cognito.token("alice")
    assert binder.connect(alice).status_code == 200
    user_hash = anyio.run(binder.services.verifier.verify, alice).user_hash
    record = anyio.run(lambda: binder.services.vault.get(user_hash, "fake", cached=False))
    assert record is not None
    assert record.refresh_token is None
    expired = dataclasses.replace(record, expires_at=int(time.time()) - 5)
    anyio.run(lambda: binder.services.vault.put(user_hash, "fake", expired))
    response = binder.request_token(alice)
    assert response.status_code == 403
    assert response.json()["reason"] == "reauthorization_required"
