"""What an overloaded AWS does to the binder: answers lost after the write was applied, retries
that meet their own earlier attempt, calls that fail outright. Each is a 503 with Retry-After
or a flow that still completes; never a 500, never a dead link the user cannot retry.

botocore retries a call whose answer timed out; when the first attempt had been applied, the
retry meets its own write: a conditional put is refused, a transaction is cancelled. The
`applied_twice` fault reproduces exactly that, without timing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.binder.conftest import PUBLIC, Harness


def applied_twice(
    monkeypatch: pytest.MonkeyPatch,
    client: Any,
    operation: str,
    when: Callable[[dict[str, Any]], bool] = lambda kwargs: True,
) -> list[int]:
    """Make `operation` apply, lose its answer, and be retried once (what botocore does after a
    read timeout): the caller sees the retry's answer. Returns a counter of faults injected."""
    real = getattr(client, operation)
    injected: list[int] = []

    def twice(**kwargs: Any) -> Any:
        if not when(kwargs) or injected:
            return real(**kwargs)
        injected.append(1)
        real(**kwargs)
        return real(**kwargs)

    monkeypatch.setattr(client, operation, twice)
    return injected


def _failing(operation: str, code: str) -> Callable[..., Any]:
    def fail(**kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)

    return fail


def _dynamodb(binder: Harness) -> Any:
    return binder.services.sessions._client


def test_a_session_put_retried_after_a_lost_answer_is_not_a_500(
    binder: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = applied_twice(
        monkeypatch,
        _dynamodb(binder),
        "put_item",
        lambda kw: kw["Item"]["pk"]["S"].startswith("session#"),
    )
    alice = binder.cognito.token("alice")
    response = binder.request_token(alice)
    assert faults == [1]
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "consent_required"
    # ... and the link it handed out works.
    redirect = binder.open_authorization(alice, response.json()["authorization_url"])
    assert redirect.status_code == 302, redirect.text


def test_an_authorization_retried_after_a_lost_answer_still_redirects(
    binder: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = binder.cognito.token("alice")
    link = binder.request_token(alice).json()["authorization_url"]
    faults = applied_twice(monkeypatch, _dynamodb(binder), "transact_write_items")
    redirect = binder.open_authorization(alice, link)
    assert faults == [1]
    assert redirect.status_code == 302, redirect.text
    monkeypatch.undo()
    done = binder.callback(alice, binder.consent_at_provider(redirect.headers["location"]))
    assert done.status_code == 200, done.text


def test_reopening_a_link_after_a_503_completes_the_flow(
    binder: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first open was applied but answered 503 (the user never got the redirect); the
    user opens the link again and finishes. The abandoned state is useless afterwards."""
    alice = binder.cognito.token("alice")
    link = binder.request_token(alice).json()["authorization_url"]
    first = binder.open_authorization(alice, link)  # applied; pretend its answer was lost
    assert first.status_code == 302
    again = binder.open_authorization(alice, link)
    assert again.status_code == 302, again.text
    done = binder.callback(alice, binder.consent_at_provider(again.headers["location"]))
    assert done.status_code == 200, done.text
    assert binder.request_token(alice).status_code == 200
    # The first redirect's state is superseded: its callback stores nothing new.
    stale = binder.callback(alice, binder.consent_at_provider(first.headers["location"]))
    assert stale.status_code in (400, 409)
    assert binder.provider.counters.token_code == 1


def test_reopening_a_link_is_still_refused_to_another_user(binder: Harness) -> None:
    alice, bob = binder.cognito.token("alice"), binder.cognito.token("bob")
    link = binder.request_token(alice).json()["authorization_url"]
    assert binder.open_authorization(alice, link).status_code == 302
    assert binder.open_authorization(bob, link).status_code == 403
    assert binder.open_authorization(alice, link).status_code in (409, 410)  # killed


def test_a_lease_retried_after_a_lost_answer_is_ours(
    binder: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    binder.provider.faults.expires_in = 120  # every use refreshes
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    faults = applied_twice(
        monkeypatch,
        _dynamodb(binder),
        "put_item",
        lambda kw: kw["Item"]["pk"]["S"].startswith("lease#"),
    )
    response = binder.request_token(alice)
    assert faults == [1]
    assert response.status_code == 200, response.text
    assert binder.provider.counters.refreshes == 1


def test_a_session_store_outage_while_failing_a_session_is_not_a_500(
    binder: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="binder.audit")
    alice, bob = binder.cognito.token("alice"), binder.cognito.token("bob")
    link = binder.request_token(alice).json()["authorization_url"]
    monkeypatch.setattr(
        _dynamodb(binder), "update_item", _failing("UpdateItem", "ProvisionedThroughputExceeded")
    )
    refused = binder.open_authorization(bob, link)  # the kill cannot be written ...
    assert refused.status_code == 403, refused.text  # ... but bob is still refused
    monkeypatch.undo()
    redirect = binder.open_authorization(alice, link)
    callback = binder.consent_at_provider(redirect.headers["location"])
    monkeypatch.setattr(
        _dynamodb(binder), "update_item", _failing("UpdateItem", "ProvisionedThroughputExceeded")
    )
    foreign = binder.callback(bob, callback)  # second binding check, kill fails again
    assert foreign.status_code == 403, foreign.text


def test_a_provider_down_during_the_exchange_is_a_503_and_the_link_can_be_reopened(
    binder: Harness,
) -> None:
    alice = binder.cognito.token("alice")
    link = binder.request_token(alice).json()["authorization_url"]
    redirect = binder.open_authorization(alice, link)
    callback = binder.consent_at_provider(redirect.headers["location"])
    binder.provider.faults.token_status = 503
    down = binder.callback(alice, callback)
    assert down.status_code == 503, down.text
    assert int(down.headers["retry-after"]) > 0
    assert binder.stored_secret_names() == []
    binder.provider.faults.token_status = None
    again = binder.open_authorization(alice, link)
    assert again.status_code == 302, again.text
    done = binder.callback(alice, binder.consent_at_provider(again.headers["location"]))
    assert done.status_code == 200, done.text


def test_the_vault_down_at_the_callback_is_a_503_and_the_link_can_be_reopened(
    binder: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = binder.cognito.token("alice")
    link = binder.request_token(alice).json()["authorization_url"]
    redirect = binder.open_authorization(alice, link)
    callback = binder.consent_at_provider(redirect.headers["location"])
    vault_client = binder.services.vault._client
    monkeypatch.setattr(
        vault_client, "get_secret_value", _failing("GetSecretValue", "ThrottlingException")
    )
    down = binder.callback(alice, callback)
    assert down.status_code == 503, down.text
    assert int(down.headers["retry-after"]) > 0
    monkeypatch.undo()
    again = binder.open_authorization(alice, link)
    assert again.status_code == 302, again.text
    done = binder.callback(alice, binder.consent_at_provider(again.headers["location"]))
    assert done.status_code == 200, done.text


def test_a_request_abandoned_by_its_client_is_not_logged_as_an_error(
    binder: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """RequestGuard ends a request whose client left quietly, whatever the route."""
    import anyio
    from starlette.requests import ClientDisconnect

    from svc_common.middleware import RequestGuard

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ClientDisconnect

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    caplog.set_level(logging.DEBUG)
    scope = {"type": "http", "method": "POST", "path": "/x", "headers": []}
    anyio.run(RequestGuard(app), scope, receive, send)
    assert sent == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert binder.client.get(f"{PUBLIC}/healthz").status_code == 200
