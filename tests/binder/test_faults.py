"""AWS failing under the binder: clear 503s with Retry-After, audit lines, nothing lost."""

from __future__ import annotations

import logging
from typing import Any

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
    # The session is dead: the same answer cannot be replayed once KMS is back.
    assert binder.callback(alice, callback_url).status_code == 400


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


def test_provider_timeout_during_exchange_is_a_502_page(binder: Harness) -> None:
    binder.provider.faults.token_status = 503
    alice = binder.cognito.token("alice")
    link = binder.request_token(alice).json()["authorization_url"]
    redirect = binder.open_authorization(alice, link)
    response = binder.callback(alice, binder.consent_at_provider(redirect.headers["location"]))
    assert response.status_code == 502
    assert "Nothing was stored" in response.text
    assert binder.stored_secret_names() == []


def test_provider_without_expires_in_stores_a_token_without_expiry(binder: Harness) -> None:
    """RFC 6749 makes expires_in optional: a generic provider's token is then stored without an
    expiry (never refreshed ahead of time); built-ins with known lifetimes set their own."""
    binder.provider.faults.omit_expires_in = True
    alice = binder.cognito.token("alice")
    assert binder.connect(alice).status_code == 200
    issued = binder.request_token(alice).json()
    assert issued["expires_at"] is None
    assert binder.request_token(alice).status_code == 200
    assert binder.provider.counters.refreshes == 0
