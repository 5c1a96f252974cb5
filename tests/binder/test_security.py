"""One test per threat of the design brief: each attack fails, and nothing is stored.

Names follow the threat list so docs/threat-model.md can point at them.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import anyio
import boto3
import pytest
from joserfc.jwk import RSAKey
from starlette.testclient import TestClient

from svc_common.jsonlog import JsonFormatter, quiet_third_party
from tests.asgi import post_cut_short
from tests.binder.conftest import (
    BASE,
    CLIENT_ID,
    INTERNAL,
    ISSUER,
    PROVIDER_SECRET,
    PROVIDER_URL,
    PUBLIC,
    REGION,
    Cognito,
    Harness,
    provider_entry,
    running_binder,
)


def _consent_link(binder: Harness, token: str, **kwargs: Any) -> str:
    response = binder.request_token(token, **kwargs)
    assert response.status_code == 403, response.text
    return str(response.json()["authorization_url"])


def _provider_redirect(binder: Harness, token: str) -> str:
    redirect = binder.open_authorization(token, _consent_link(binder, token))
    assert redirect.status_code == 302, redirect.text
    return str(redirect.headers["location"])


def _with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def _nothing_stored(binder: Harness) -> None:
    assert binder.stored_secret_names() == []


# -- session binding ----------------------------------------------------------------------------


def test_forwarded_authorization_url_opened_by_another_user_is_refused(binder: Harness) -> None:
    """Browser swapping: alice's consent link, forwarded to bob, must not connect bob's account
    to alice (or alice's to bob), and the link must die for everyone."""
    alice, bob = binder.cognito.token("alice"), binder.cognito.token("bob")
    link = _consent_link(binder, alice)
    refused = binder.open_authorization(bob, link)
    assert refused.status_code == 403
    assert "belongs to someone else" in refused.text
    assert "location" not in refused.headers
    # Dead for everyone, the rightful user included.
    assert binder.open_authorization(alice, link).status_code == 409
    assert binder.provider.counters.authorize == 0
    _nothing_stored(binder)


def test_callback_completed_by_a_different_user_is_refused(binder: Harness) -> None:
    """CSRF / login CSRF: alice's provider answer delivered in bob's browser is refused."""
    alice, bob = binder.cognito.token("alice"), binder.cognito.token("bob")
    callback = binder.consent_at_provider(_provider_redirect(binder, alice))
    refused = binder.callback(bob, callback)
    assert refused.status_code == 403
    assert binder.provider.counters.token_code == 0, "the code was never exchanged"
    # The state was consumed and the session failed: alice cannot finish it either.
    assert binder.callback(alice, callback).status_code == 400
    _nothing_stored(binder)


def test_callback_without_state_is_refused(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    callback = binder.consent_at_provider(_provider_redirect(binder, alice))
    refused = binder.callback(alice, _with_query(callback, state=None))
    assert refused.status_code == 400
    assert "does not match a request you started" in refused.text
    _nothing_stored(binder)


def test_callback_with_forged_state_is_refused(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    callback = binder.consent_at_provider(_provider_redirect(binder, alice))
    refused = binder.callback(alice, _with_query(callback, state="A" * 43))
    assert refused.status_code == 400
    assert binder.provider.counters.token_code == 0
    _nothing_stored(binder)


def test_state_replay_is_refused(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    callback = binder.consent_at_provider(_provider_redirect(binder, alice))
    assert binder.callback(alice, callback).status_code == 200
    stored = binder.request_token(alice).json()["access_token"]
    replay = binder.callback(alice, callback)
    assert replay.status_code == 400
    assert binder.provider.counters.token_code == 1
    assert binder.request_token(alice).json()["access_token"] == stored


def test_code_injection_with_another_users_code_is_refused(binder: Harness) -> None:
    """Bob's own code and state, delivered in alice's browser: the state binds to bob."""
    alice, bob = binder.cognito.token("alice"), binder.cognito.token("bob")
    bobs_callback = binder.consent_at_provider(
        _provider_redirect(binder, bob), subject="bob@provider"
    )
    assert binder.callback(alice, bobs_callback).status_code == 403
    _nothing_stored(binder)


def test_code_injection_into_own_state_fails_pkce(binder: Harness) -> None:
    """An attacker's code spliced into alice's own callback: alice's PKCE verifier does not
    match the attacker's challenge, so the provider refuses the exchange."""
    alice, bob = binder.cognito.token("alice"), binder.cognito.token("bob")
    alices_callback = binder.consent_at_provider(_provider_redirect(binder, alice))
    bobs_callback = binder.consent_at_provider(
        _provider_redirect(binder, bob), subject="bob@provider"
    )
    bobs_code = parse_qs(urlsplit(bobs_callback).query)["code"][0]
    refused = binder.callback(alice, _with_query(alices_callback, code=bobs_code))
    assert refused.status_code == 400
    assert "refused the authorization" in refused.text
    _nothing_stored(binder)


def test_pkce_downgrade_is_refused(binder: Harness) -> None:
    """Stripping the S256 challenge from the authorization request gets no usable code."""
    alice = binder.cognito.token("alice")
    stripped = _with_query(
        _provider_redirect(binder, alice), code_challenge=None, code_challenge_method=None
    )
    parts = urlsplit(stripped)
    with TestClient(binder.provider.app(), base_url=PROVIDER_URL) as browser:
        response = browser.get(
            f"{parts.path}?{parts.query}&login_hint=alice", follow_redirects=False
        )
    if response.status_code in (302, 303):
        location = response.headers["location"]
        assert "error=" in location or binder.callback(alice, location).status_code >= 400
    else:
        assert response.status_code >= 400
    _nothing_stored(binder)


def test_mix_up_with_a_wrong_issuer_is_refused(binder: Harness) -> None:
    binder.provider.faults.iss_override = "https://attacker.test"
    alice = binder.cognito.token("alice")
    refused = binder.callback(alice, binder.consent_at_provider(_provider_redirect(binder, alice)))
    assert refused.status_code == 400
    assert "different issuer" in refused.text
    assert binder.provider.counters.token_code == 0
    _nothing_stored(binder)


def test_missing_issuer_from_a_provider_that_promises_it_is_refused(binder: Harness) -> None:
    binder.provider.faults.send_iss = False
    alice = binder.cognito.token("alice")
    refused = binder.callback(alice, binder.consent_at_provider(_provider_redirect(binder, alice)))
    assert refused.status_code == 400
    _nothing_stored(binder)


@pytest.fixture
def two_providers(aws: dict[str, Any], cognito: Cognito) -> Iterator[Harness]:
    second = {**provider_entry(aws["secret_arn"]), "name": "other"}
    providers = json.dumps([provider_entry(aws["secret_arn"]), second])
    with running_binder(aws, cognito, PROVIDERS=providers) as harness:
        yield harness


def test_mix_up_on_another_providers_callback_is_refused(two_providers: Harness) -> None:
    """The answer for provider `fake` arriving on `other`'s callback path is refused."""
    binder = two_providers
    alice = binder.cognito.token("alice")
    callback = binder.consent_at_provider(_provider_redirect(binder, alice))
    swapped = callback.replace("/oauth2/callback/fake", "/oauth2/callback/other")
    refused = binder.callback(alice, swapped)
    assert refused.status_code == 400
    assert "different provider" in refused.text
    _nothing_stored(binder)


def test_provider_denial_stores_nothing(binder: Harness) -> None:
    binder.provider.faults.deny = True
    alice = binder.cognito.token("alice")
    refused = binder.callback(alice, binder.consent_at_provider(_provider_redirect(binder, alice)))
    assert refused.status_code == 400
    assert "access_denied" in refused.text
    _nothing_stored(binder)


# -- return URL -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/steal",
        "https://app.example.com.evil.example/",
        "https://app.example.com@evil.example/",
        "http://app.example.com/",
        "//evil.example/",
        "javascript:alert(1)",
        "https://app.example.com:444/",
    ],
)
def test_foreign_origin_return_url_is_refused(binder: Harness, url: str) -> None:
    alice = binder.cognito.token("alice")
    response = binder.request_token(alice, return_url=url)
    assert response.status_code == 400
    assert response.json()["field"] == "return_url"


# -- expiry ---------------------------------------------------------------------------------------


def _expire_session(link: str) -> None:
    session_id = link.rsplit("/", 1)[1]
    boto3.client("dynamodb", region_name=REGION).update_item(
        TableName="sessions",
        Key={"pk": {"S": f"session#{session_id}"}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )


def test_expired_session_is_refused_at_authorize(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    link = _consent_link(binder, alice)
    _expire_session(link)
    response = binder.open_authorization(alice, link)
    assert response.status_code == 410
    assert "expired" in response.text


def test_expired_session_is_refused_at_callback(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    link = _consent_link(binder, alice)
    redirect = binder.open_authorization(alice, link).headers["location"]
    callback = binder.consent_at_provider(redirect)
    _expire_session(link)
    assert binder.callback(alice, callback).status_code in (400, 410)
    assert binder.provider.counters.token_code == 0
    _nothing_stored(binder)


def test_unknown_session_is_a_404(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    response = binder.open_authorization(alice, f"{BASE}/oauth2/authorize/{'x' * 32}")
    assert response.status_code == 404


# -- JWT forgery ----------------------------------------------------------------------------------


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64(value: dict[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def _forged_tokens(cognito: Cognito) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "alice",
        "client_id": CLIENT_ID,
        "token_use": "access",
        "exp": now + 3600,
        "iat": now,
    }
    other_key = RSAKey.generate_key(2048, parameters={"kid": "pool-key-1"})
    public_pem = cognito.key.as_pem(private=False)
    none_header = {"alg": "none", "typ": "JWT"}
    hs_header = {"alg": "HS256", "kid": "pool-key-1"}
    hs_input = f"{_b64(hs_header)}.{_b64(claims)}"
    hs_signature = hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest()
    return {
        "alg_none": f"{_b64(none_header)}.{_b64(claims)}.",
        # Algorithm confusion: an HMAC keyed with the pool's public key.
        "hs256_with_public_key": f"{hs_input}.{_b64url(hs_signature)}",
        "wrong_key": cognito.token("alice", key=other_key),
        "wrong_issuer": cognito.token("alice", iss="https://cognito-idp.us-east-1.amazonaws.com/x"),
        "wrong_client": cognito.token("alice", client_id="someone-elses-app"),
        "id_token": cognito.token("alice", token_use="id", aud=CLIENT_ID),
        "expired": cognito.token("alice", exp=now - 3600, iat=now - 7200),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "alg_none",
        "hs256_with_public_key",
        "wrong_key",
        "wrong_issuer",
        "wrong_client",
        "id_token",
        "expired",
    ],
)
def test_forged_or_unfit_jwt_is_refused(binder: Harness, kind: str) -> None:
    token = _forged_tokens(binder.cognito)[kind]
    internal = binder.request_token(token)
    assert internal.status_code == 401
    assert internal.json()["error"] == "invalid_token"
    assert token not in internal.text
    browser = binder.client.get(
        f"{PUBLIC}/oauth2/connections", headers={"x-amzn-oidc-accesstoken": token}
    )
    assert browser.status_code == 401
    assert boto3.client("dynamodb", region_name=REGION).scan(TableName="sessions")["Count"] == 0


def test_internal_api_without_a_token_is_refused(binder: Harness) -> None:
    for method, path in (
        ("POST", "/internal/tokens"),
        ("GET", "/internal/connections"),
        ("GET", "/internal/providers"),
        ("DELETE", "/internal/tokens/fake"),
    ):
        response = binder.client.request(method, f"{INTERNAL}{path}", json={"provider": "fake"})
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")


# -- concurrency, logs, refresh races --------------------------------------------------------------


def test_concurrent_users_never_receive_each_others_tokens(binder: Harness) -> None:
    users = [f"user{i}" for i in range(12)]
    tokens = {u: binder.cognito.token(u) for u in users}
    for user in users:
        link = _consent_link(binder, tokens[user])
        redirect = binder.open_authorization(tokens[user], link).headers["location"]
        callback = binder.consent_at_provider(redirect, subject=f"{user}@provider")
        assert binder.callback(tokens[user], callback).status_code == 200

    def fetch(user: str) -> tuple[str, str]:
        response = binder.request_token(tokens[user])
        assert response.status_code == 200
        return user, response.json()["access_token"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(fetch, users * 5))
    with TestClient(binder.provider.app(), base_url=PROVIDER_URL) as provider:
        for user, access_token in results:
            me = provider.get("/userinfo", headers={"authorization": f"Bearer {access_token}"})
            assert me.json()["sub"] == f"{user}@provider"


def test_no_token_code_state_or_secret_in_logs(
    binder: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Even at LOG_LEVEL=DEBUG (the services quiet the libraries that log bodies)."""
    quiet_third_party()
    caplog.set_level(logging.DEBUG)
    alice = binder.cognito.token("alice")
    redirect = _provider_redirect(binder, alice)
    callback = binder.consent_at_provider(redirect)
    query = parse_qs(urlsplit(callback).query)
    assert binder.callback(alice, callback).status_code == 200
    issued = binder.request_token(alice).json()
    binder.callback(alice, callback)  # a refused replay logs too
    name = binder.stored_secret_names()[0]
    stored = json.loads(
        boto3.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=name)[
            "SecretString"
        ]
    )
    secrets_ = [
        alice,
        issued["access_token"],
        stored["refresh_token"],
        query["code"][0],
        query["state"][0],
        parse_qs(urlsplit(redirect).query)["code_challenge"][0],
        PROVIDER_SECRET,
    ]
    formatter = JsonFormatter("binder")
    lines = [formatter.format(record) for record in caplog.records]
    assert any('"audit":"connection_created"' in line for line in lines)
    for line in lines:
        for value in secrets_:
            assert value not in line


def test_concurrent_refresh_in_one_process_refreshes_once(binder: Harness) -> None:
    binder.provider.faults.expires_in = 60  # within the skew: every use wants a refresh
    alice = binder.cognito.token("alice")
    assert (
        binder.callback(
            alice, binder.consent_at_provider(_provider_redirect(binder, alice))
        ).status_code
        == 200
    )
    binder.provider.faults.expires_in = 3600  # the refreshed token is fresh

    def fetch(_: int) -> str:
        response = binder.request_token(alice)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = set(pool.map(fetch, range(32)))
    assert binder.provider.counters.refreshes == 1
    assert binder.provider.counters.replayed_refresh_tokens == 0
    assert len(results) == 1
    assert binder.provider.is_token_active(results.pop())


def test_scope_upgrade_respects_the_operators_allow_list(
    aws: dict[str, Any], cognito: Cognito
) -> None:
    """With allowed_scopes set, asking for more access re-asks for the granted scopes that are
    allowed plus the new ones (the provider's default scopes are added by the binder)."""
    entry = {**provider_entry(aws["secret_arn"]), "allowed_scopes": ["read", "write"]}
    with running_binder(aws, cognito, PROVIDERS=json.dumps([entry])) as binder:
        alice = cognito.token("alice")
        assert binder.connect(alice, scopes=["read"]).status_code == 200
        more = binder.request_token(alice, scopes=["write"])
        assert more.json()["reason"] == "insufficient_scope"
        redirect = binder.open_authorization(alice, more.json()["authorization_url"])
        assert redirect.status_code == 302, redirect.text
        scope = parse_qs(urlsplit(redirect.headers["location"]).query)["scope"][0].split()
        assert {"read", "write"} <= set(scope)
        assert binder.request_token(alice, scopes=["delete"]).status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/",  # urllib raises ValueError: an unparseable URL was a 500
        "http://[evil.example]/",
        "https://app.example.com:99999/",  # port out of range
        " https://app.example.com/x",  # whitespace urllib strips before checking
        "https://app.example.com/x ",
        "https://app.example.com/x\r\nSet-Cookie: a=b",  # urllib removes CR/LF/tab
        "https://app.example.com/a\tb",
        "\x00https://app.example.com/",
        "https://app.example.com\\@evil.example/",  # browsers read "\" as "/"
        "https://app.example.com/caf\u00e9",  # not ASCII: must be sent percent-encoded
    ],
)
def test_return_url_that_is_not_exactly_a_checked_url_is_refused(binder: Harness, url: str) -> None:
    alice = binder.cognito.token("alice")
    response = binder.request_token(alice, return_url=url)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.json()["field"] == "return_url"
    assert binder.stored_secret_names() == []


def test_the_stored_return_url_is_exactly_the_one_checked(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    url = "https://app.example.com/chat?next=%2Fa%20b#frag"
    consent = binder.request_token(alice, return_url=url).json()
    redirect = binder.open_authorization(alice, consent["authorization_url"])
    done = binder.callback(alice, binder.consent_at_provider(redirect.headers["location"]))
    assert done.status_code == 303
    assert done.headers["location"] == url


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"provider": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"provider": "fake", "scopes": ' + b"[" * 40 + b"]" * 40 + b"}",
        b'{"provider": "fake", "scopes": [NaN]}',
        b"\xff\xfe\x00",
    ],
)
def test_any_json_body_shape_is_a_400_not_a_500(binder: Harness, body: bytes) -> None:
    _assert_a_short_400(binder, body, fields=("body", "scopes"))


@pytest.mark.parametrize(
    "body",
    [
        b'{"\\ud800": 1}',  # a lone surrogate cannot be encoded back as UTF-8
        b'{"provider": "fake", "' + b"x" * 5000 + b'": 1}',
        b'{"provider": "\\udfff"}',
        b'{"provider": "fake", "scopes": ["\\ud800"]}',
        b'{"provider": "fake", "scopes": [], "return_url": "https://app.example.com/\\ud800"}',
    ],
)
def test_odd_strings_in_the_body_are_a_400_that_does_not_echo_them(
    binder: Harness, body: bytes
) -> None:
    _assert_a_short_400(binder, body, fields=("body", "provider", "scopes", "return_url"))


def _assert_a_short_400(binder: Harness, body: bytes, *, fields: tuple[str, ...]) -> None:
    alice = binder.cognito.token("alice")
    response = binder.client.post(
        f"{INTERNAL}/internal/tokens",
        content=body,
        headers={"authorization": f"Bearer {alice}", "content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.json()["field"] in fields
    assert len(response.text) < 400
    assert "xxxxxxxx" not in response.text


# -- bounds on what one user can make the binder hold ------------------------------------------


def test_open_authorization_sessions_per_user_are_bounded(
    aws: dict[str, Any], cognito: Cognito
) -> None:
    with running_binder(aws, cognito, MAX_SESSIONS_PER_USER="3") as binder:
        alice, bob = cognito.token("alice"), cognito.token("bob")
        for _ in range(3):
            assert binder.request_token(alice).status_code == 403
        refused = binder.request_token(alice)
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "too_many_sessions"
        assert 0 < int(refused.headers["retry-after"]) <= 600
        assert binder.request_token(bob).status_code == 403  # per user, not global
        sessions = boto3.client("dynamodb", region_name=REGION).scan(TableName="sessions")
        opened = [i for i in sessions["Items"] if i["pk"]["S"].startswith("session#")]
        assert len(opened) == 4  # three of alice's, one of bob's
        # The window ends: alice may start again.
        user_hash = anyio.run(binder.services.verifier.verify, alice).user_hash
        boto3.client("dynamodb", region_name=REGION).update_item(
            TableName="sessions",
            Key={"pk": {"S": f"opensessions#{user_hash}"}},
            UpdateExpression="SET window_ends = :past",
            ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
        )
        assert binder.request_token(alice).status_code == 403


def test_the_refresh_lock_map_holds_only_keys_in_use(binder: Harness) -> None:
    binder.provider.faults.expires_in = 120  # inside the skew: every token request refreshes
    users = [binder.cognito.token(f"user{i}") for i in range(5)]
    for token in users:
        binder.connect(token)
        assert binder.request_token(token).status_code == 200
    assert binder.provider.counters.refreshes == 5
    assert len(binder.services.broker._refresh_locks) == 0


def test_error_pages_never_echo_codes_states_or_provider_text(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    callback = binder.consent_at_provider(_provider_redirect(binder, alice))
    query = parse_qs(urlsplit(callback).query)
    code, state = query["code"][0], query["state"][0]
    pages = [
        # unknown state
        binder.callback(alice, _with_query(callback, state="S" * 43)),
        # the provider's own error, with text an attacker controls
        binder.callback(
            alice,
            _with_query(
                callback,
                error="access_denied<script>x</script>",
                error_description="<b>call +1 555 0100 to restore access</b>",
            ),
        ),
    ]
    # a code the provider refuses at the exchange, on a live state
    callback2 = binder.consent_at_provider(_provider_redirect(binder, alice))
    pages.append(binder.callback(alice, _with_query(callback2, code="C" * 40)))
    for page in pages:
        assert 400 <= page.status_code < 500, page.text
        assert page.headers["content-type"].startswith("text/html")
        for secret in (code, state, "S" * 43, "C" * 40, "<script>", "555 0100", "<b>"):
            assert secret not in page.text
        assert "Traceback" not in page.text
    _nothing_stored(binder)


def test_an_empty_allow_list_allows_nothing_beyond_the_defaults(
    aws: dict[str, Any], cognito: Cognito
) -> None:
    """`allowed_scopes: []` never fails open: every scope but the provider's defaults is refused."""
    entry = {**provider_entry(aws["secret_arn"]), "allowed_scopes": []}
    with running_binder(aws, cognito, PROVIDERS=json.dumps([entry])) as binder:
        alice = cognito.token("alice")
        refused = binder.request_token(alice, scopes=["read"])
        assert refused.status_code == 400, refused.text
        assert refused.json()["field"] == "scopes"
        assert binder.request_token(alice, scopes=["openid"]).json()["error"] == "consent_required"


def test_a_body_cut_short_by_the_client_is_a_400_not_a_500(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    sent = anyio.run(
        lambda: post_cut_short(
            binder.app,
            path="/internal/tokens",
            token=alice,
            server=("testserver", 8081),
            body_start=b'{"provi',
        )
    )
    assert sent[0]["status"] == 400
