"""Disconnect and upstream revocation: every style against a fake that checks the exact request,
success and refusal; deletion never depends on the provider."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import boto3
import httpx2
import pytest

from binder.oauth import (
    CONFIRMED,
    NOT_ATTEMPTED,
    REFUSED,
    UNREACHABLE,
    UNSUPPORTED,
    OAuthClient,
)
from binder.providers.registry import build_spec
from binder.providers.spec import ProviderSpec
from binder.vault import TokenRecord
from tests.binder.conftest import (
    INTERNAL,
    PUBLIC,
    REGION,
    Cognito,
    Harness,
    provider_entry,
    running_binder,
)

SECRET = "client-secret-value"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:provider/x-AbCdEf"


class Recorder:
    """A provider endpoint as an httpx2 transport: records each request, answers `reply`."""

    def __init__(self, reply: Callable[[httpx2.Request], httpx2.Response]) -> None:
        self.reply = reply
        self.requests: list[httpx2.Request] = []

    def transport(self) -> httpx2.MockTransport:
        def handle(request: httpx2.Request) -> httpx2.Response:
            request.read()
            self.requests.append(request)
            return self.reply(request)

        return httpx2.MockTransport(handle)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _form(request: httpx2.Request) -> dict[str, str]:
    return dict(httpx2.QueryParams(request.content.decode()))


def _revoke(
    spec: ProviderSpec,
    recorder: Recorder,
    *,
    token: str = "tok-1",  # noqa: S107 - a made-up token value
    hint: str = "access_token",
) -> str:
    oauth = OAuthClient(timeout=2, transport=recorder.transport())
    return anyio.run(lambda: oauth.revoke(spec, client_secret=SECRET, token=token, hint=hint))


def _rfc7009_spec() -> ProviderSpec:
    return build_spec(
        "oauth2",
        name="tickets",
        client_id="tickets-client",
        secret_arn=SECRET_ARN,
        authorization_endpoint="https://tickets.example/authorize",
        token_endpoint="https://tickets.example/token",
        revocation_endpoint="https://tickets.example/revoke",
    )


# -- RFC 7009 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "outcome"), [(200, CONFIRMED), (400, REFUSED), (503, REFUSED)])
def test_rfc7009_revocation_sends_the_token_with_client_authentication(
    status: int, outcome: str
) -> None:
    recorder = Recorder(
        lambda r: httpx2.Response(
            status, json={} if status == 200 else {"error": "invalid_request"}
        )
    )
    assert _revoke(_rfc7009_spec(), recorder, token="rt-1", hint="refresh_token") == outcome
    (request,) = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == "https://tickets.example/revoke"
    assert request.headers["authorization"] == _basic("tickets-client", SECRET)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert _form(request) == {"token": "rt-1", "token_type_hint": "refresh_token"}


def test_rfc7009_revocation_with_client_secret_post_puts_the_credentials_in_the_body() -> None:
    google = build_spec("google", name="google", client_id="g-client", secret_arn=SECRET_ARN)
    recorder = Recorder(lambda r: httpx2.Response(200))
    assert _revoke(google, recorder, token="at-1") == CONFIRMED
    (request,) = recorder.requests
    assert str(request.url) == "https://oauth2.googleapis.com/revoke"
    assert "authorization" not in request.headers
    assert _form(request) == {
        "token": "at-1",
        "token_type_hint": "access_token",
        "client_id": "g-client",
        "client_secret": SECRET,
    }


# -- GitHub -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "outcome"), [(204, CONFIRMED), (404, REFUSED), (422, REFUSED)])
def test_github_revocation_deletes_the_app_token(status: int, outcome: str) -> None:
    github = build_spec("github", name="github", client_id="Iv1.abc", secret_arn=SECRET_ARN)
    recorder = Recorder(lambda r: httpx2.Response(status))
    assert _revoke(github, recorder, token="gho_1") == outcome
    (request,) = recorder.requests
    assert request.method == "DELETE"
    assert str(request.url) == "https://api.github.com/applications/Iv1.abc/token"
    assert request.headers["authorization"] == _basic("Iv1.abc", SECRET)
    assert request.headers["accept"] == "application/vnd.github+json"
    assert json.loads(request.content) == {"access_token": "gho_1"}


def test_github_refresh_tokens_are_not_sent_to_the_token_endpoint() -> None:
    github = build_spec("github", name="github", client_id="Iv1.abc", secret_arn=SECRET_ARN)
    recorder = Recorder(lambda r: httpx2.Response(204))
    assert _revoke(github, recorder, token="ghr_1", hint="refresh_token") == UNSUPPORTED
    assert recorder.requests == []


# -- Slack ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ({"ok": True, "revoked": True}, CONFIRMED),
        ({"ok": False, "error": "invalid_auth"}, REFUSED),  # Slack refuses with HTTP 200
        ({"ok": True, "revoked": False}, REFUSED),
        ([], REFUSED),
    ],
)
def test_slack_revocation_uses_the_token_as_its_own_credential(
    answer: object, outcome: str
) -> None:
    slack = build_spec("slack", name="slack", client_id="123.456", secret_arn=SECRET_ARN)
    recorder = Recorder(lambda r: httpx2.Response(200, json=answer))
    assert _revoke(slack, recorder, token="xoxp-1") == outcome
    (request,) = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == "https://slack.com/api/auth.revoke"
    assert request.headers["authorization"] == "Bearer xoxp-1"
    assert SECRET not in request.content.decode() + str(request.headers)


def test_a_provider_that_cannot_be_reached_is_unreachable_not_an_error() -> None:
    def boom(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    for spec in (
        _rfc7009_spec(),
        build_spec("github", name="github", client_id="Iv1.abc", secret_arn=SECRET_ARN),
        build_spec("slack", name="slack", client_id="123.456", secret_arn=SECRET_ARN),
    ):
        assert _revoke(spec, Recorder(boom)) == UNREACHABLE


def test_revoke_tokens_reports_each_token_kind() -> None:
    recorder = Recorder(lambda r: httpx2.Response(200))
    oauth = OAuthClient(timeout=2, transport=recorder.transport())
    spec = _rfc7009_spec()
    both = anyio.run(
        lambda: oauth.revoke_tokens(
            spec, client_secret=SECRET, access_token="at", refresh_token="rt"
        )
    )
    assert both == {"refresh_token": CONFIRMED, "access_token": CONFIRMED}
    assert [_form(r)["token"] for r in recorder.requests] == ["rt", "at"]
    no_secret = anyio.run(
        lambda: oauth.revoke_tokens(spec, client_secret=None, access_token="at", refresh_token=None)
    )
    assert no_secret == {"access_token": NOT_ATTEMPTED}
    microsoft = build_spec("microsoft", name="ms", client_id="c", secret_arn=SECRET_ARN)
    assert anyio.run(
        lambda: oauth.revoke_tokens(
            microsoft, client_secret=SECRET, access_token="at", refresh_token="rt"
        )
    ) == {"refresh_token": UNSUPPORTED, "access_token": UNSUPPORTED}


# -- disconnect through the binder --------------------------------------------------------------


def _slack_providers(aws: dict[str, Any]) -> str:
    entries = [
        provider_entry(aws["secret_arn"]),
        {"name": "slack", "kind": "slack", "client_id": "123.456", "secret_arn": aws["secret_arn"]},
    ]
    return json.dumps(entries)


def _plant(binder: Harness, token: str, provider: str, record: TokenRecord) -> str:
    user_hash = anyio.run(lambda: binder.services.verifier.verify(token)).user_hash
    anyio.run(lambda: binder.services.vault.put(user_hash, provider, record))
    return user_hash


def _slack_record() -> TokenRecord:
    return TokenRecord(
        provider="slack",
        access_token="xoxp-live-token",
        token_type="Bearer",
        refresh_token=None,
        expires_at=None,
        scopes=("users:read",),
        obtained_at=1,
    )


def _audit_lines(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "fields", {}).get("audit") == event
    ]


@pytest.mark.parametrize(
    ("answer", "summary", "outcome"),
    [
        ({"ok": True, "revoked": True}, "revoked_upstream", CONFIRMED),
        ({"ok": False, "error": "token_revoked"}, "not_revoked_upstream", REFUSED),
    ],
)
def test_disconnecting_slack_deletes_the_connection_and_audits_the_revocation(
    aws: dict[str, Any],
    cognito: Cognito,
    caplog: pytest.LogCaptureFixture,
    answer: dict[str, Any],
    summary: str,
    outcome: str,
) -> None:
    caplog.set_level(logging.INFO, logger="binder.audit")
    slack = Recorder(lambda r: httpx2.Response(200, json=answer))
    with running_binder(
        aws, cognito, routes={"slack.com": slack.transport()}, PROVIDERS=_slack_providers(aws)
    ) as binder:
        alice = cognito.token("alice")
        _plant(binder, alice, "slack", _slack_record())
        auth = {"authorization": f"Bearer {alice}"}
        assert (
            binder.request_token(alice, provider="slack", scopes=["users:read"]).status_code == 200
        )
        response = binder.client.delete(f"{INTERNAL}/internal/tokens/slack", headers=auth)
        assert response.status_code == 204
        assert response.headers["x-revocation"] == summary
        assert binder.stored_secret_names() == []
        again = binder.request_token(alice, provider="slack", scopes=["users:read"])
        assert again.status_code == 403
        assert again.json()["error"] == "consent_required"
    (request,) = slack.requests
    assert request.headers["authorization"] == "Bearer xoxp-live-token"
    (line,) = _audit_lines(caplog, "connection_deleted")
    assert line["reason"] == summary
    assert line["revocation"] == {"access": outcome}
    assert "xoxp-live-token" not in caplog.text


def test_disconnect_deletes_even_when_revocation_blows_up(
    aws: dict[str, Any], cognito: Cognito, monkeypatch: pytest.MonkeyPatch
) -> None:
    def hang(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    with running_binder(
        aws,
        cognito,
        routes={"slack.com": httpx2.MockTransport(hang)},
        PROVIDERS=_slack_providers(aws),
    ) as binder:
        alice = cognito.token("alice")
        _plant(binder, alice, "slack", _slack_record())
        response = binder.client.delete(
            f"{INTERNAL}/internal/tokens/slack", headers={"authorization": f"Bearer {alice}"}
        )
        assert response.status_code == 204
        assert response.headers["x-revocation"] == "not_revoked_upstream"
        assert binder.stored_secret_names() == []


def test_disconnect_deletes_when_the_client_secret_cannot_be_read(
    aws: dict[str, Any], cognito: Cognito, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="binder.audit")
    alice = cognito.token("alice")
    with running_binder(aws, cognito) as binder:
        binder.connect(alice)
    boto3.client("secretsmanager", region_name=REGION).delete_secret(
        SecretId=aws["secret_arn"], ForceDeleteWithoutRecovery=True
    )
    with running_binder(aws, cognito) as binder:  # a fresh process: no cached client secret
        response = binder.client.post(
            f"{PUBLIC}/oauth2/connections/fake/disconnect",
            headers={"x-amzn-oidc-accesstoken": alice, "origin": "https://agents.example.com"},
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert response.headers["location"].endswith("revoked=no")
        assert binder.stored_secret_names() == []
        page = binder.client.get(
            response.headers["location"], headers={"x-amzn-oidc-accesstoken": alice}
        )
        assert "did not confirm" in page.text
    (line,) = _audit_lines(caplog, "connection_deleted")
    assert line["revocation"] == {"refresh": NOT_ATTEMPTED, "access": NOT_ATTEMPTED}


def test_rfc7009_disconnect_revokes_refresh_then_access_token_at_the_provider(
    binder: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="binder.audit")
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    issued = binder.request_token(alice).json()["access_token"]
    assert binder.provider.is_token_active(issued)
    response = binder.client.delete(
        f"{INTERNAL}/internal/tokens/fake", headers={"authorization": f"Bearer {alice}"}
    )
    assert response.status_code == 204
    assert response.headers["x-revocation"] == "revoked_upstream"
    assert not binder.provider.is_token_active(issued)
    assert binder.provider.counters.revocations == 2
    (line,) = _audit_lines(caplog, "connection_deleted")
    assert line["revocation"] == {"refresh": CONFIRMED, "access": CONFIRMED}
