"""Tests of the fake OAuth 2.0 / OIDC provider itself (tests/fakes/provider.py)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet, RSAKey

from tests.fakes.provider import (
    AUTHORIZATION_CODE_TTL_SECONDS,
    DEFAULT_SUBJECT,
    FakeProvider,
    Faults,
    serve_in_thread,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
ISSUER = "https://idp.fake.test"
CLIENT_ID = "fake-client"
CLIENT_SECRET = "fake-secret"
REDIRECT_URI = "https://binder.example.test/oauth2/callback/fake"
BASIC = httpx2.BasicAuth(CLIENT_ID, CLIENT_SECRET)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider(issuer=ISSUER)


@pytest.fixture
async def client(provider: FakeProvider) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=provider.app())
    async with httpx2.AsyncClient(transport=transport, base_url=ISSUER) as c:
        yield c


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, s256(verifier)


def location_params(response: httpx2.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def authorize(
    client: httpx2.AsyncClient, **overrides: str | None
) -> tuple[httpx2.Response, str]:
    """GET /authorize with sensible parameters; returns the response and the PKCE verifier."""
    verifier, challenge = pkce_pair()
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email offline_access",
        "state": "state-123",
        "nonce": "nonce-456",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    query = {k: v for k, v in params.items() if v is not None}
    return await client.get("/authorize", params=query), verifier


async def get_code(client: httpx2.AsyncClient, **overrides: str | None) -> tuple[str, str]:
    response, verifier = await authorize(client, **overrides)
    params = location_params(response)
    assert "error" not in params, params
    return params["code"], verifier


async def exchange(
    client: httpx2.AsyncClient,
    code: str,
    verifier: str | None,
    *,
    auth: httpx2.BasicAuth | None = BASIC,
    **extra: str,
) -> httpx2.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    if verifier is not None:
        data["code_verifier"] = verifier
    data.update(extra)
    if auth is None:
        return await client.post("/token", data=data)
    return await client.post("/token", data=data, auth=auth)


async def tokens(client: httpx2.AsyncClient, **overrides: str | None) -> dict[str, Any]:
    code, verifier = await get_code(client, **overrides)
    response = await exchange(client, code, verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(client: httpx2.AsyncClient, refresh_token: str, **extra: str) -> httpx2.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    return await client.post("/token", data=data, auth=BASIC)


async def userinfo(client: httpx2.AsyncClient, access_token: str) -> httpx2.Response:
    return await client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def assert_oauth_error(response: httpx2.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


# --------------------------------------------------------------------------- discovery and flow


async def test_discovery_document(client: httpx2.AsyncClient) -> None:
    response = await client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    doc = response.json()
    assert doc["issuer"] == ISSUER
    for name, path in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks"),
        ("revocation_endpoint", "/revoke"),
    ]:
        assert doc[name] == ISSUER + path
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert {"openid", "offline_access", "profile", "email", "read", "write"} <= set(
        doc["scopes_supported"]
    )
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]


async def test_full_code_flow_with_pkce(client: httpx2.AsyncClient, provider: FakeProvider) -> None:
    response, verifier = await authorize(client, login_hint="alice")
    params = location_params(response)
    assert params["state"] == "state-123"
    assert params["iss"] == ISSUER
    assert set(params) == {"code", "state", "iss"}

    token_response = await exchange(client, params["code"], verifier)
    assert token_response.status_code == 200, token_response.text
    assert token_response.headers["cache-control"] == "no-store"
    body = token_response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "openid profile email offline_access"
    assert body["access_token"]
    assert body["refresh_token"]
    assert body["id_token"]

    info = await userinfo(client, body["access_token"])
    assert info.status_code == 200
    assert info.json() == {
        "sub": "alice",
        "name": "Test User alice",
        "email": "alice@example.test",
        "preferred_username": "alice",
    }
    counters = provider.counters
    assert (counters.authorize, counters.token_code, counters.userinfo) == (1, 1, 1)
    assert counters.token_requests_total == 1
    assert counters.refreshes == 0


async def test_default_subject_and_client_secret_post(client: httpx2.AsyncClient) -> None:
    code, verifier = await get_code(client)
    response = await exchange(
        client, code, verifier, auth=None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    assert response.status_code == 200, response.text
    info = await userinfo(client, response.json()["access_token"])
    assert info.json()["sub"] == DEFAULT_SUBJECT


async def test_id_token_verifies_against_jwks_and_carries_nonce(
    client: httpx2.AsyncClient,
) -> None:
    body = await tokens(client, login_hint="bob", nonce="n-0S6_WzA2Mj")
    key_set = KeySet.import_key_set((await client.get("/jwks")).json())
    token = jwt.decode(body["id_token"], key_set, algorithms=["RS256"])
    assert token.header["alg"] == "RS256"
    assert token.header["kid"] == key_set.keys[0].kid
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": CLIENT_ID},
        sub={"essential": True, "value": "bob"},
        nonce={"essential": True, "value": "n-0S6_WzA2Mj"},
        exp={"essential": True},
        iat={"essential": True},
    )
    registry.validate(token.claims)

    # A key that is not the provider's does not verify it.
    foreign = RSAKey.generate_key(2048)
    with pytest.raises(BadSignatureError):
        jwt.decode(body["id_token"], foreign, algorithms=["RS256"])


async def test_no_id_token_without_openid_and_no_nonce_when_absent(
    client: httpx2.AsyncClient,
) -> None:
    body = await tokens(client, scope="read write", nonce=None)
    assert "id_token" not in body
    assert body["scope"] == "read write"
    body = await tokens(client, nonce=None)
    claims = jwt.decode(body["id_token"], KeySet.import_key_set((await client.get("/jwks")).json()))
    assert "nonce" not in claims.claims


# ------------------------------------------------------------------------------- /authorize


async def test_authorize_refuses_unknown_client_and_bad_redirect_without_redirecting(
    client: httpx2.AsyncClient,
) -> None:
    response, _ = await authorize(client, client_id="someone-else")
    assert response.status_code == 400
    assert "location" not in response.headers
    for bad in ["javascript:alert(1)", "/relative", "ftp://x.test/cb", REDIRECT_URI + "#frag"]:
        response, _ = await authorize(client, redirect_uri=bad)
        assert response.status_code == 400, bad


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"state": None}, "invalid_request"),
        ({"scope": None}, "invalid_scope"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
    ],
)
async def test_authorize_errors_redirect_back(
    client: httpx2.AsyncClient, overrides: dict[str, str | None], error: str
) -> None:
    response, _ = await authorize(client, **overrides)
    params = location_params(response)
    assert params["error"] == error
    assert "code" not in params


async def test_redirect_uri_query_is_kept(client: httpx2.AsyncClient) -> None:
    response, _ = await authorize(client, redirect_uri="http://127.0.0.1:9/cb?x=1")
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("http", "127.0.0.1:9", "/cb")
    query = parse_qs(location.query)
    assert query["x"] == ["1"]
    assert "code" in query


# ------------------------------------------------------------------------------------- /token


async def test_pkce_mismatch_refused(client: httpx2.AsyncClient, provider: FakeProvider) -> None:
    code, _ = await get_code(client)
    other_verifier, _ = pkce_pair()
    assert_oauth_error(await exchange(client, code, other_verifier), 400, "invalid_grant")
    assert provider.counters.token_code == 0


async def test_missing_verifier_refused(client: httpx2.AsyncClient) -> None:
    code, _ = await get_code(client)
    assert_oauth_error(await exchange(client, code, None), 400, "invalid_grant")


async def test_code_reuse_refused_and_revokes_first_tokens(client: httpx2.AsyncClient) -> None:
    code, verifier = await get_code(client)
    first = await exchange(client, code, verifier)
    assert first.status_code == 200
    assert_oauth_error(await exchange(client, code, verifier), 400, "invalid_grant")
    assert (await userinfo(client, first.json()["access_token"])).status_code == 401
    assert_oauth_error(await refresh(client, first.json()["refresh_token"]), 400, "invalid_grant")


async def test_unknown_code_refused(client: httpx2.AsyncClient) -> None:
    verifier, _ = pkce_pair()
    assert_oauth_error(await exchange(client, "not-a-code", verifier), 400, "invalid_grant")


async def test_code_expires_after_60_seconds(
    client: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    start = time.time()
    provider.clock = lambda: start
    code, verifier = await get_code(client)
    provider.clock = lambda: start + AUTHORIZATION_CODE_TTL_SECONDS + 1
    assert_oauth_error(await exchange(client, code, verifier), 400, "invalid_grant")


async def test_redirect_uri_must_match(client: httpx2.AsyncClient) -> None:
    code, verifier = await get_code(client)
    response = await exchange(client, code, verifier, redirect_uri=REDIRECT_URI + "/other")
    assert_oauth_error(response, 400, "invalid_grant")


@pytest.mark.parametrize(
    "auth",
    [
        httpx2.BasicAuth(CLIENT_ID, "wrong-secret"),
        httpx2.BasicAuth("other-client", CLIENT_SECRET),
    ],
)
async def test_wrong_basic_credentials_refused(
    client: httpx2.AsyncClient, provider: FakeProvider, auth: httpx2.BasicAuth
) -> None:
    code, verifier = await get_code(client)
    response = await exchange(client, code, verifier, auth=auth)
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")
    # The code was not spent by an unauthenticated request.
    assert (await exchange(client, code, verifier)).status_code == 200


async def test_wrong_post_secret_and_missing_auth_refused(client: httpx2.AsyncClient) -> None:
    code, verifier = await get_code(client)
    response = await exchange(
        client,
        code,
        verifier,
        auth=None,
        client_id=CLIENT_ID,
        client_secret="nope",
    )
    assert_oauth_error(response, 401, "invalid_client")
    assert_oauth_error(await exchange(client, code, verifier, auth=None), 401, "invalid_client")


async def test_two_auth_methods_refused(client: httpx2.AsyncClient) -> None:
    code, verifier = await get_code(client)
    response = await exchange(client, code, verifier, client_secret=CLIENT_SECRET)
    assert_oauth_error(response, 400, "invalid_request")


async def test_grant_type_and_content_type_checked(client: httpx2.AsyncClient) -> None:
    response = await client.post("/token", data={"grant_type": "password"}, auth=BASIC)
    assert_oauth_error(response, 400, "unsupported_grant_type")
    response = await client.post("/token", json={"grant_type": "authorization_code"}, auth=BASIC)
    assert_oauth_error(response, 400, "invalid_request")


# ------------------------------------------------------------------------------------ refresh


async def test_refresh_rotation_and_replay_detection(
    client: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    first = await tokens(client, login_hint="carol")
    second = await refresh(client, first["refresh_token"])
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    assert body["scope"] == first["scope"]
    assert (await userinfo(client, body["access_token"])).status_code == 200

    replay = await refresh(client, first["refresh_token"])
    assert_oauth_error(replay, 400, "invalid_grant")
    assert provider.counters.replayed_refresh_tokens == 1

    assert (await refresh(client, body["refresh_token"])).status_code == 200
    assert provider.counters.refreshes == 2
    assert provider.counters.refreshes_by_subject == {"carol": 2}
    assert provider.counters.token_requests_total == 4


async def test_refresh_without_rotation_reuses_token(
    client: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    provider.faults.rotate_refresh_tokens = False
    first = await tokens(client)
    for _ in range(2):
        response = await refresh(client, first["refresh_token"])
        assert response.status_code == 200, response.text
        assert response.json()["refresh_token"] == first["refresh_token"]
    assert provider.counters.refreshes == 2
    assert provider.counters.replayed_refresh_tokens == 0


async def test_refresh_scope_can_narrow_but_not_widen(client: httpx2.AsyncClient) -> None:
    first = await tokens(client, scope="openid read write offline_access")
    narrowed = await refresh(client, first["refresh_token"], scope="read")
    assert narrowed.status_code == 200
    assert narrowed.json()["scope"] == "read"
    # The refresh token keeps the original grant's scope.
    again = await refresh(client, narrowed.json()["refresh_token"])
    assert again.json()["scope"] == "openid read write offline_access"
    wider = await refresh(client, again.json()["refresh_token"], scope="read admin")
    assert_oauth_error(wider, 400, "invalid_scope")


async def test_unknown_refresh_token_refused(
    client: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    assert_oauth_error(await refresh(client, "never-issued"), 400, "invalid_grant")
    assert provider.counters.replayed_refresh_tokens == 0


async def test_concurrent_refreshes_with_rotation_exactly_one_wins(
    client: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    first = provider.issue_token_for("dave", ["openid", "read"])
    responses: list[httpx2.Response] = []

    async def one() -> None:
        responses.append(await refresh(client, first["refresh_token"]))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(one)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * 49
    assert all(r.json()["error"] == "invalid_grant" for r in responses if r.status_code == 400)
    assert provider.counters.refreshes == 1
    assert provider.counters.refreshes_by_subject == {"dave": 1}
    assert provider.counters.replayed_refresh_tokens == 49
    assert provider.counters.token_requests_total == 50


# ------------------------------------------------------------------------------------- faults


async def test_fault_token_delay(client: httpx2.AsyncClient, provider: FakeProvider) -> None:
    first = await tokens(client)
    provider.faults.token_delay_seconds = 0.3
    started = time.monotonic()
    response = await refresh(client, first["refresh_token"])
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200


async def test_fault_delay_times_out_a_client(provider: FakeProvider) -> None:
    provider.faults.token_delay_seconds = 5
    with serve_in_thread(provider) as url:
        async with httpx2.AsyncClient(base_url=url, timeout=0.3) as http:
            started = time.monotonic()
            with pytest.raises(httpx2.ReadTimeout):
                await http.post("/token", data={"grant_type": "refresh_token"}, auth=BASIC)
            assert time.monotonic() - started < 3
        started = time.monotonic()
    # Stopping does not wait for the delayed request to finish.
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("status", "error"), [(503, "temporarily_unavailable"), (500, "server_error")]
)
async def test_fault_token_status(
    client: httpx2.AsyncClient, provider: FakeProvider, status: int, error: str
) -> None:
    first = await tokens(client)
    provider.faults.token_status = status
    assert_oauth_error(await refresh(client, first["refresh_token"]), status, error)
    code, verifier = await get_code(client)
    assert_oauth_error(await exchange(client, code, verifier), status, error)
    provider.faults.token_status = None
    # Nothing was consumed while the fault was on.
    assert (await refresh(client, first["refresh_token"])).status_code == 200
    assert (await exchange(client, code, verifier)).status_code == 200
    assert provider.counters.token_requests_total == 5


async def test_fault_refresh_invalid_grant(
    client: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    first = await tokens(client)
    provider.faults.refresh_invalid_grant = True
    assert_oauth_error(await refresh(client, first["refresh_token"]), 400, "invalid_grant")
    assert provider.counters.refreshes == 0
    # Code exchanges are unaffected.
    await tokens(client)
    provider.faults.refresh_invalid_grant = False
    assert (await refresh(client, first["refresh_token"])).status_code == 200


async def test_fault_omit_refresh_token(client: httpx2.AsyncClient, provider: FakeProvider) -> None:
    first = await tokens(client)
    provider.faults.omit_refresh_token = True
    assert "refresh_token" not in await tokens(client)
    # A refresh answered without a new refresh token leaves the old one valid, even with rotation.
    for _ in range(2):
        response = await refresh(client, first["refresh_token"])
        assert response.status_code == 200
        assert "refresh_token" not in response.json()
    assert provider.counters.replayed_refresh_tokens == 0


async def test_fault_omit_expires_in(client: httpx2.AsyncClient, provider: FakeProvider) -> None:
    provider.faults.omit_expires_in = True
    body = await tokens(client)
    assert "expires_in" not in body
    assert "access_token" in body


async def test_fault_expires_in_and_expiry(
    client: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    provider.faults.expires_in = 120
    body = await tokens(client)
    assert body["expires_in"] == 120
    assert (await userinfo(client, body["access_token"])).status_code == 200
    now = time.time()
    provider.clock = lambda: now + 121
    response = await userinfo(client, body["access_token"])
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    # The refresh token outlives the access token.
    assert (await refresh(client, body["refresh_token"])).status_code == 200


async def test_fault_deny(client: httpx2.AsyncClient, provider: FakeProvider) -> None:
    provider.faults.deny = True
    response, _ = await authorize(client)
    params = location_params(response)
    assert params["error"] == "access_denied"
    assert params["state"] == "state-123"
    assert params["iss"] == ISSUER
    assert "code" not in params
    assert provider.counters.authorize == 1


async def test_fault_iss_override_and_send_iss(
    client: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    provider.faults.iss_override = "https://evil.example.test"
    params = location_params((await authorize(client))[0])
    assert params["iss"] == "https://evil.example.test"
    assert "code" in params
    provider.faults.send_iss = False
    params = location_params((await authorize(client))[0])
    assert "iss" not in params
    assert "code" in params


async def test_fault_verify_pkce_off(client: httpx2.AsyncClient, provider: FakeProvider) -> None:
    provider.faults.verify_pkce = False
    code, _ = await get_code(client, code_challenge=None, code_challenge_method=None)
    assert (await exchange(client, code, None)).status_code == 200
    # A wrong verifier is not noticed either.
    code, _ = await get_code(client)
    wrong, _ = pkce_pair()
    assert (await exchange(client, code, wrong)).status_code == 200


# --------------------------------------------------------------------------- revoke, userinfo


async def test_revoke_access_token(client: httpx2.AsyncClient, provider: FakeProvider) -> None:
    body = await tokens(client)
    response = await client.post(
        "/revoke",
        data={"token": body["access_token"], "token_type_hint": "access_token"},
        auth=BASIC,
    )
    assert response.status_code == 200
    assert not provider.is_token_active(body["access_token"])
    info = await userinfo(client, body["access_token"])
    assert info.status_code == 401
    assert info.headers["www-authenticate"].startswith("Bearer")
    # The refresh token still works.
    assert (await refresh(client, body["refresh_token"])).status_code == 200
    assert provider.counters.revocations == 1


async def test_revoke_refresh_token_invalidates_its_access_tokens(
    client: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    first = await tokens(client)
    second = (await refresh(client, first["refresh_token"])).json()
    # The hint is only a hint: a wrong one still revokes.
    response = await client.post(
        "/revoke",
        data={
            "token": second["refresh_token"],
            "token_type_hint": "access_token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert response.status_code == 200
    for access_token in (first["access_token"], second["access_token"]):
        assert (await userinfo(client, access_token)).status_code == 401
    assert_oauth_error(await refresh(client, second["refresh_token"]), 400, "invalid_grant")
    assert provider.counters.replayed_refresh_tokens == 0


async def test_revoke_unknown_token_is_ok_but_needs_client_auth(
    client: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    assert (await client.post("/revoke", data={"token": "unknown"}, auth=BASIC)).status_code == 200
    response = await client.post("/revoke", data={"token": "unknown"})
    assert_oauth_error(response, 401, "invalid_client")
    assert_oauth_error(await client.post("/revoke", data={}, auth=BASIC), 400, "invalid_request")
    assert provider.counters.revocations == 1


async def test_userinfo_needs_a_bearer_token(client: httpx2.AsyncClient) -> None:
    response = await client.get("/userinfo")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    response = await userinfo(client, "forged")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_issue_token_for(client: httpx2.AsyncClient, provider: FakeProvider) -> None:
    body = provider.issue_token_for("erin", ["read", "write"])
    assert body["scope"] == "read write"
    assert body["token_type"] == "Bearer"
    assert "id_token" not in body
    assert provider.is_token_active(body["access_token"])
    assert provider.is_token_active(body["refresh_token"])
    assert (await userinfo(client, body["access_token"])).json()["sub"] == "erin"
    assert (await refresh(client, body["refresh_token"])).status_code == 200
    assert not provider.is_token_active(body["refresh_token"])
    assert "id_token" in provider.issue_token_for("erin", ["openid"])


# -------------------------------------------------------------------------------- control API


async def test_control_api(client: httpx2.AsyncClient, provider: FakeProvider) -> None:
    response = await client.post(
        "/_control/faults", json={"deny": True, "expires_in": 5, "iss_override": "https://x.test"}
    )
    assert response.status_code == 200
    assert response.json()["deny"] is True
    assert provider.faults == Faults(deny=True, expires_in=5, iss_override="https://x.test")
    # Merged, not replaced.
    await client.post("/_control/faults", json={"token_status": 503})
    assert provider.faults.deny is True
    assert provider.faults.token_status == 503
    assert (await client.get("/_control/faults")).json()["token_status"] == 503

    for bad in ({"no_such_fault": 1}, {"deny": "yes"}, {"expires_in": True}, [1]):
        assert (await client.post("/_control/faults", json=bad)).status_code == 400
    assert (await client.post("/_control/faults", content=b"{")).status_code == 400

    await authorize(client)
    await client.post("/token", data={"grant_type": "refresh_token"}, auth=BASIC)
    counters = (await client.get("/_control/counters")).json()
    assert counters["authorize"] == 1
    assert counters["token_requests_total"] == 1
    assert counters["refreshes_by_subject"] == {}

    issued = await client.post("/_control/issue", json={"subject": "frank", "scopes": ["read"]})
    assert issued.status_code == 200
    assert (await client.post("/_control/issue", json={"subject": 1})).status_code == 400

    faults, counters_object = provider.faults, provider.counters
    assert (await client.post("/_control/reset")).status_code == 200
    assert provider.faults == Faults()
    # Reset in place: references held by a test stay current.
    assert provider.faults is faults
    assert provider.counters is counters_object
    assert counters_object.authorize == 0
    assert (await client.get("/_control/counters")).json() == {
        "authorize": 0,
        "token_code": 0,
        "refreshes": 0,
        "refreshes_by_subject": {},
        "replayed_refresh_tokens": 0,
        "revocations": 0,
        "userinfo": 0,
        "token_requests_total": 0,
    }
    # Tokens survive a reset.
    assert (await userinfo(client, issued.json()["access_token"])).status_code == 200


# ----------------------------------------------------------------------------- a real server


def _port_is_closed(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_serve_in_thread_listens_on_loopback_and_stops() -> None:
    provider = FakeProvider(issuer="http://placeholder.invalid")
    with serve_in_thread(provider) as url:
        parts = urlsplit(url)
        assert parts.scheme == "http"
        assert parts.hostname == "127.0.0.1"
        assert parts.port
        assert provider.issuer == url
        response = httpx2.get(f"{url}/.well-known/openid-configuration", timeout=5)
        assert response.status_code == 200
        assert response.json()["issuer"] == url
        assert response.json()["token_endpoint"] == f"{url}/token"
    assert _port_is_closed(parts.port)


def test_serve_in_thread_refuses_other_hosts() -> None:
    provider = FakeProvider(issuer=ISSUER)
    with (
        pytest.raises(ValueError, match=r"127\.0\.0\.1"),
        serve_in_thread(provider, host="0.0.0.0"),  # noqa: S104 - refused
    ):
        pass


async def test_concurrent_refreshes_over_http(provider: FakeProvider) -> None:
    with serve_in_thread(provider) as url:
        first = provider.issue_token_for("gina", ["read"])
        limits = httpx2.Limits(max_connections=60)
        async with httpx2.AsyncClient(base_url=url, timeout=10, limits=limits) as http:
            responses: list[httpx2.Response] = []

            async def one() -> None:
                responses.append(await refresh(http, first["refresh_token"]))

            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(one)
            counters = (await http.get("/_control/counters")).json()

    assert sorted(r.status_code for r in responses) == [200] + [400] * 49
    assert counters["refreshes"] == 1
    assert counters["replayed_refresh_tokens"] == 49
    assert counters["token_requests_total"] == 50


def test_cli_serves_in_its_own_process_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.provider", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        response = httpx2.get(f"{url}/.well-known/openid-configuration", timeout=5)
        assert response.json()["issuer"] == url
        faults = httpx2.post(f"{url}/_control/faults", json={"deny": True}, timeout=5)
        assert faults.json()["deny"] is True
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert _port_is_closed(urlsplit(url).port or 0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
