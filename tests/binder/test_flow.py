"""The binder's flows as the agent and the user see them (moto + fake provider, in-process)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from tests.binder.conftest import BASE, INTERNAL, PUBLIC, REGION, Harness


def test_first_request_asks_for_consent_with_a_binder_link(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    response = binder.request_token(alice, scopes=["read"])
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "consent_required"
    assert body["reason"] == "no_connection"
    assert body["authorization_url"] == f"{BASE}/oauth2/authorize/{body['session_id']}"
    assert len(body["session_id"]) >= 32
    assert body["expires_at"] - time.time() == pytest.approx(600, abs=5)


def test_full_consent_flow_then_the_agent_gets_the_token(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    done = binder.connect(alice, scopes=["read"])
    assert done.status_code == 200
    assert "fake is connected" in done.text
    issued = binder.request_token(alice, scopes=["read"])
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert binder.provider.is_token_active(body["access_token"])
    assert body["token_type"] == "Bearer"
    assert "read" in body["scopes"]
    assert body["expires_at"] > time.time() + 3000
    assert issued.headers["cache-control"] == "no-store"
    assert binder.stored_secret_names() == [f"vault-test/fake/{_user_hash(binder, alice)}"]


def _user_hash(binder: Harness, token: str) -> str:
    import anyio

    user = anyio.run(binder.services.verifier.verify, token)
    return user.user_hash


def test_authorization_request_carries_pkce_state_nonce_and_the_provider_callback(
    binder: Harness,
) -> None:
    alice = binder.cognito.token("alice")
    consent = binder.request_token(alice).json()
    redirect = binder.open_authorization(alice, consent["authorization_url"])
    location = urlsplit(redirect.headers["location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert (
        f"{location.scheme}://{location.netloc}{location.path}" == "https://provider.test/authorize"
    )
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 22  # at least 128 bits, base64url
    assert len(query["nonce"]) >= 22
    assert query["redirect_uri"] == f"{BASE}/oauth2/callback/fake"
    assert query["client_id"] == "binder-client"
    assert set(query["scope"].split()) >= {"openid", "read"}


def test_secret_is_created_with_the_vault_key_and_tags(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    (name,) = binder.stored_secret_names()
    described = boto3.client("secretsmanager", region_name=REGION).describe_secret(SecretId=name)
    assert described["KmsKeyId"] == binder.aws["key_arn"]
    tags = {t["Key"]: t["Value"] for t in described["Tags"]}
    assert tags["oauth-provider"] == "fake"
    assert tags["user-hash"] == name.rsplit("/", 1)[1]
    value = json.loads(
        boto3.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=name)[
            "SecretString"
        ]
    )
    assert set(value) == {
        "provider",
        "access_token",
        "token_type",
        "refresh_token",
        "expires_at",
        "scopes",
        "obtained_at",
        "status",
    }


def test_hot_path_makes_no_aws_call_and_a_miss_exactly_one(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    binder.request_token(alice)  # warm
    vault = binder.services.vault
    before = vault.aws_calls
    for _ in range(20):
        assert binder.request_token(alice).status_code == 200
    assert vault.aws_calls == before
    vault.forget(_user_hash(binder, alice), "fake")
    assert binder.request_token(alice).status_code == 200
    assert vault.aws_calls == before + 1


def test_parallel_sessions_for_one_user_all_complete(binder: Harness) -> None:
    """Several tabs: each session has its own state; finishing one does not break another."""
    alice = binder.cognito.token("alice")
    links = [binder.request_token(alice).json()["authorization_url"] for _ in range(3)]
    redirects = [binder.open_authorization(alice, link) for link in links]
    callbacks = [binder.consent_at_provider(r.headers["location"]) for r in redirects]
    for url in reversed(callbacks):
        assert binder.callback(alice, url).status_code == 200


def test_insufficient_scope_asks_again_for_the_union(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice, scopes=["read"])
    response = binder.request_token(alice, scopes=["write"])
    assert response.status_code == 403
    assert response.json()["reason"] == "insufficient_scope"
    redirect = binder.open_authorization(alice, response.json()["authorization_url"])
    scope = parse_qs(urlsplit(redirect.headers["location"]).query)["scope"][0].split()
    assert {"read", "write"} <= set(scope)


def test_connections_list_never_shows_token_values(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    token = binder.request_token(alice).json()["access_token"]
    listed = binder.client.get(
        f"{INTERNAL}/internal/connections", headers={"authorization": f"Bearer {alice}"}
    )
    assert listed.status_code == 200
    (connection,) = listed.json()["connections"]
    assert connection["provider"] == "fake"
    assert connection["status"] == "active"
    assert token not in listed.text
    page = binder.client.get(
        f"{PUBLIC}/oauth2/connections", headers={"x-amzn-oidc-accesstoken": alice}
    )
    assert page.status_code == 200
    assert "Disconnect" in page.text
    assert token not in page.text


def test_disconnect_revokes_upstream_and_deletes_the_secret(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    token = binder.request_token(alice).json()["access_token"]
    gone = binder.client.delete(
        f"{INTERNAL}/internal/tokens/fake", headers={"authorization": f"Bearer {alice}"}
    )
    assert gone.status_code == 204
    assert binder.provider.counters.revocations == 2  # the refresh token, then the access token
    assert not binder.provider.is_token_active(token)
    assert binder.stored_secret_names() == []
    again = binder.client.delete(
        f"{INTERNAL}/internal/tokens/fake", headers={"authorization": f"Bearer {alice}"}
    )
    assert again.status_code == 404
    assert binder.request_token(alice).json()["reason"] == "no_connection"


def test_connections_page_disconnect_needs_a_same_origin_post(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    headers = {"x-amzn-oidc-accesstoken": alice}
    cross = binder.client.post(
        f"{PUBLIC}/oauth2/connections/fake/disconnect",
        headers={**headers, "origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert cross.status_code == 403
    no_origin = binder.client.post(
        f"{PUBLIC}/oauth2/connections/fake/disconnect", headers=headers, follow_redirects=False
    )
    assert no_origin.status_code == 403
    assert binder.stored_secret_names() != []
    same = binder.client.post(
        f"{PUBLIC}/oauth2/connections/fake/disconnect",
        headers={**headers, "origin": BASE},
        follow_redirects=False,
    )
    assert same.status_code == 303
    assert same.headers["location"] == "/oauth2/connections?disconnected=fake&revoked=yes"
    assert binder.stored_secret_names() == []


def test_allowed_return_url_is_followed_after_consent(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    consent = binder.request_token(alice, return_url="https://app.example.com/chat?x=1").json()
    redirect = binder.open_authorization(alice, consent["authorization_url"])
    done = binder.callback(alice, binder.consent_at_provider(redirect.headers["location"]))
    assert done.status_code == 303
    assert done.headers["location"] == "https://app.example.com/chat?x=1"
    assert done.headers["referrer-policy"] == "no-referrer"


def test_refresh_near_expiry_rotates_and_saves_the_new_refresh_token(binder: Harness) -> None:
    import anyio

    binder.provider.faults.expires_in = 120  # inside the 300 s skew: refresh on every use
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    user_hash = _user_hash(binder, alice)

    def stored() -> Any:
        return anyio.run(lambda: binder.services.vault.get(user_hash, "fake", cached=False))

    spent = [stored().refresh_token]
    for round_ in (1, 2):
        issued = binder.request_token(alice).json()["access_token"]
        assert binder.provider.counters.refreshes == round_
        record = stored()
        # The rotated refresh token is what was saved, the one it replaced is dead, and the
        # access token handed out is the stored one.
        assert record.refresh_token not in spent
        assert binder.provider.is_token_active(record.refresh_token)
        assert not binder.provider.is_token_active(spent[-1])
        assert record.access_token == issued
        spent.append(record.refresh_token)
    assert binder.provider.counters.replayed_refresh_tokens == 0


def test_refresh_without_new_refresh_token_keeps_the_old_one(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    user_hash = _user_hash(binder, alice)
    import anyio

    before = anyio.run(lambda: binder.services.vault.get(user_hash, "fake", cached=False))
    assert before is not None
    binder.provider.faults.omit_refresh_token = True
    binder.provider.faults.rotate_refresh_tokens = False
    _expire(binder, user_hash)
    assert binder.request_token(alice).status_code == 200
    after = anyio.run(lambda: binder.services.vault.get(user_hash, "fake", cached=False))
    assert after is not None
    assert after.refresh_token == before.refresh_token
    assert after.access_token != before.access_token


def _expire(binder: Harness, user_hash: str) -> None:
    """Make the stored token look expired (as time passing would)."""
    import dataclasses

    import anyio

    vault = binder.services.vault
    record = anyio.run(lambda: vault.get(user_hash, "fake", cached=False))
    assert record is not None
    expired = dataclasses.replace(record, expires_at=int(time.time()) - 10)
    anyio.run(lambda: vault.put(user_hash, "fake", expired))


def test_invalid_grant_marks_the_connection_for_reauthorization(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    user_hash = _user_hash(binder, alice)
    binder.provider.faults.refresh_invalid_grant = True
    _expire(binder, user_hash)
    response = binder.request_token(alice)
    assert response.status_code == 403
    assert response.json()["reason"] == "reauthorization_required"
    listed = binder.client.get(
        f"{INTERNAL}/internal/connections", headers={"authorization": f"Bearer {alice}"}
    ).json()["connections"]
    assert listed[0]["status"] == "reauthorization_required"


def test_provider_down_during_refresh_is_a_502_with_retry_after(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    binder.provider.faults.token_status = 503
    _expire(binder, _user_hash(binder, alice))
    response = binder.request_token(alice)
    assert response.status_code == 502
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["error"] == "temporarily_unavailable"


def test_internal_api_rejects_bad_input_with_the_field_named(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    auth = {"authorization": f"Bearer {alice}"}
    url = f"{INTERNAL}/internal/tokens"
    cases = [
        ({"provider": "nope", "scopes": []}, "provider"),
        ({"provider": "fake", "scopes": "read"}, "scopes"),
        ({"provider": "fake", "scopes": ["has space"]}, "scopes"),
        ({"provider": "fake", "scopes": [], "return_url": "https://evil.example/x"}, "return_url"),
        ({"provider": "fake", "extra": 1}, "extra"),
        ([1, 2], "body"),
    ]
    for body, field in cases:
        response = binder.client.post(url, json=body, headers=auth)
        assert response.status_code == 400, body
        assert response.json()["field"] == field
    malformed = binder.client.post(
        url, content=b"{", headers={**auth, "content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["field"] == "body"
    assert binder.client.post(url, content=b"x", headers=auth).status_code == 415
    big = binder.client.post(
        url,
        content=b"{" + b" " * 20000 + b"}",
        headers={**auth, "content-type": "application/json"},
    )
    assert big.status_code == 413


def test_routes_are_split_by_port(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    assert (
        binder.client.post(
            f"{PUBLIC}/internal/tokens",
            json={"provider": "fake"},
            headers={"authorization": f"Bearer {alice}"},
        ).status_code
        == 404
    )
    assert (
        binder.client.get(
            f"{INTERNAL}/oauth2/connections", headers={"x-amzn-oidc-accesstoken": alice}
        ).status_code
        == 404
    )
    assert binder.client.get(f"{PUBLIC}/healthz").status_code == 200
    assert binder.client.get(f"{INTERNAL}/healthz").status_code == 200


def test_audit_lines_for_the_flow(binder: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="binder.audit")
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    binder.request_token(alice)
    events = [getattr(r, "fields", {}).get("audit") for r in caplog.records]
    assert events.count("session_created") == 1
    assert events.count("connection_created") == 1
    assert events.count("token_issued") == 1
    for record in caplog.records:
        fields = getattr(record, "fields", {})
        assert fields.get("user_hash") == _user_hash(binder, alice)
        assert fields.get("request_id")


def test_disconnect_form_from_a_no_referrer_page_is_accepted(binder: Harness) -> None:
    """Browsers post `Origin: null` from no-referrer pages; Sec-Fetch-Site decides then."""
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    headers = {"x-amzn-oidc-accesstoken": alice, "origin": "null"}
    cross = binder.client.post(
        f"{PUBLIC}/oauth2/connections/fake/disconnect",
        headers={**headers, "sec-fetch-site": "cross-site"},
        follow_redirects=False,
    )
    assert cross.status_code == 403
    same = binder.client.post(
        f"{PUBLIC}/oauth2/connections/fake/disconnect",
        headers={**headers, "sec-fetch-site": "same-origin"},
        follow_redirects=False,
    )
    assert same.status_code == 303
    assert binder.stored_secret_names() == []


def test_expires_in_sent_as_a_float_is_honoured() -> None:
    from binder.oauth import _seconds

    assert _seconds(3600) == 3600
    assert _seconds("3600") == 3600
    assert _seconds(3600.0) == 3600
    assert _seconds("nan") is None
    assert _seconds(-5) is None
    assert _seconds(None) is None
