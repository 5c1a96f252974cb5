"""The local notes API (devstack/notes_server.py): the resource server of the agent's notes tools.

Tokens are minted here with a test key that a fake issuer publishes (discovery + JWKS, through
an ASGI transport: no socket), so every claim can be bent; the last tests use the local OIDC
provider itself (devstack/oidc_provider.py, in process through WSGI) to show that what it
issues is what the notes API accepts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from oidc_provider_mock import _storage
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from devstack import jwks, notes_server, oidc_provider

ISSUER = "http://provider.test"
AUDIENCE = "http://127.0.0.1:8105"
CLIENT_ID = "secure-agents-notes"
LOOPBACK_CLIENT = ("127.0.0.1", 50000)
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
# Same kid, another key: a signature the issuer never made.
FOREIGN_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
ALICE = "alice@demo.example"
BOB = "bob@demo.example"
# Bidi controls, zero-width characters, an astral emoji, quotes, markup and newlines.
TRICKY = "\u202egnp.exe\u202c \u200b\u200d\u2066x\u2069 \U0001f600 \"'<b>&amp;</b>\n\r\t"


class FakeIssuer:
    """Discovery and JWKS of ISSUER; counts JWKS fetches."""

    def __init__(self) -> None:
        self.keys: list[RSAKey] = [KEY]
        self.jwks_fetches = 0

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            return JSONResponse({"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})

        async def jwks(request: Request) -> Response:
            self.jwks_fetches += 1
            return JSONResponse(KeySet(list(self.keys)).as_dict(private=False))

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/jwks", jwks),
            ]
        )


def mint(
    sub: str = ALICE,
    *,
    key: RSAKey = KEY,
    header: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "sub": sub,
        "aud": AUDIENCE,
        "client_id": CLIENT_ID,
        "scope": "openid notes",
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(8),
        **claims,
    }
    for name in drop:
        values.pop(name)
    return jwt.encode(
        {"alg": "RS256", "typ": "at+jwt", "kid": key.kid, **(header or {})}, values, key
    )


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


@pytest.fixture
def app(issuer: FakeIssuer) -> Starlette:
    config = notes_server.NotesConfig(
        issuer=ISSUER, audience=AUDIENCE, client_ids=frozenset({CLIENT_ID})
    )
    return notes_server.create_app(config, transport=httpx2.ASGITransport(app=issuer.app()))


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app, base_url=AUDIENCE, client=LOOPBACK_CLIENT) as test_client:
        yield test_client


def writes(client: TestClient) -> dict[str, int]:
    response = client.get("/_test/writes")
    assert response.status_code == 200
    counts: dict[str, int] = response.json()
    return counts


def create(client: TestClient, token: str, title: str = "Hello", body: str = "hi") -> Any:
    return client.post("/notes", json={"title": title, "body": body}, headers=bearer(token))


# -- tokens ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_token_is_required(client: TestClient, method: str) -> None:
    response = client.request(method, "/notes", json={"title": "t", "body": "b"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="notes"'
    assert response.json() == {"error": "unauthorized", "reason": "missing"}
    assert response.headers["cache-control"] == "no-store"
    assert writes(client)["writes"] == 0


def test_a_valid_token_lists_and_creates(client: TestClient) -> None:
    token = mint()
    assert client.get("/notes", headers=bearer(token)).json() == {"notes": []}
    created = create(client, token, "Groceries", "milk, eggs")
    assert created.status_code == 201, created.text
    note = created.json()
    assert set(note) == {"id", "title", "body", "created_at"}
    assert (note["title"], note["body"]) == ("Groceries", "milk, eggs")
    assert note["created_at"].endswith("Z")
    assert client.get("/notes", headers=bearer(token)).json() == {"notes": [note]}


def _claims(sub: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": sub,
        "aud": AUDIENCE,
        "client_id": CLIENT_ID,
        "scope": "notes",
        "iat": now,
        "exp": now + 300,
    }


def _alg_none() -> str:
    claims = _claims(ALICE)
    return f"{_b64({'alg': 'none', 'typ': 'at+jwt', 'kid': 'k1'})}.{_b64(claims)}."


def _hs256_with_the_public_key() -> str:
    """Algorithm confusion: HMAC keyed with the issuer's public key, which anyone can fetch."""
    claims = _claims(ALICE)
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'at+jwt', 'kid': 'k1'})}.{_b64(claims)}"
    secret = json.dumps(KEY.as_dict(private=False), sort_keys=True).encode()
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _tampered() -> str:
    header, _, signature = mint().split(".")
    claims = _claims(BOB)
    return f"{header}.{_b64(claims)}.{signature}"


REFUSED: dict[str, tuple[Callable[[], str], int, str]] = {
    "wrong issuer": (lambda: mint(iss="http://127.0.0.1:1"), 401, "wrong_issuer"),
    "issuer with a trailing slash": (lambda: mint(iss=f"{ISSUER}/"), 401, "wrong_issuer"),
    "expired": (lambda: mint(exp=int(time.time()) - 1), 401, "expired"),
    "issued in the future": (lambda: mint(iat=int(time.time()) + 600), 401, "not_yet_valid"),
    "not before later": (lambda: mint(nbf=int(time.time()) + 600), 401, "not_yet_valid"),
    "no exp": (lambda: mint(drop=("exp",)), 401, "missing_claim"),
    "no sub": (lambda: mint(drop=("sub",)), 401, "missing_claim"),
    "foreign signature": (lambda: mint(key=FOREIGN_KEY), 401, "bad_signature"),
    "claims swapped under a real signature": (_tampered, 401, "bad_signature"),
    "unknown key": (
        lambda: mint(key=RSAKey.generate_key(2048, parameters={"kid": "k9"}, private=True)),
        401,
        "unknown_key",
    ),
    "alg none": (_alg_none, 401, "unsupported_algorithm"),
    "alg HS256": (_hs256_with_the_public_key, 401, "unsupported_algorithm"),
    "an ID token (typ JWT)": (lambda: mint(header={"typ": "JWT"}), 401, "not_an_access_token"),
    "no typ": (
        lambda: f"{_b64({'alg': 'RS256', 'kid': 'k1'})}.{mint().split('.', 1)[1]}",
        401,
        "not_an_access_token",
    ),
    "wrong audience": (lambda: mint(aud=f"{ISSUER}/userinfo"), 401, "wrong_audience"),
    "audience list without us": (lambda: mint(aud=["http://a", "http://b"]), 401, "wrong_audience"),
    "another client": (lambda: mint(client_id="secure-agents-local"), 401, "wrong_client"),
    "no notes scope": (lambda: mint(scope="openid profile"), 403, "insufficient_scope"),
    "scope as a prefix": (lambda: mint(scope="openid notesx"), 403, "insufficient_scope"),
    "not a JWT": (lambda: "opaque-token-value", 401, "malformed"),
    "too long": (lambda: "a." * 5000 + "b", 401, "malformed"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bad_tokens_are_refused_and_write_nothing(
    client: TestClient, case: str, method: str
) -> None:
    make, status, reason = REFUSED[case]
    token = make()
    response = client.request(
        method, "/notes", json={"title": "t", "body": "b"}, headers=bearer(token)
    )
    assert response.status_code == status, response.text
    assert response.json()["reason"] == reason
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="notes", error="')
    assert f'error_description="{reason}"' in challenge
    if status == 403:
        assert 'error="insufficient_scope"' in challenge
        assert 'scope="notes"' in challenge
    assert token not in response.text
    assert writes(client)["writes"] == 0
    assert client.get("/notes", headers=bearer(mint(BOB))).json() == {"notes": []}


@pytest.mark.parametrize("value", ["Basic YWxpY2U6cHc=", "Bearer", "Bearer a b", "bearer  "])
def test_a_malformed_authorization_header_is_a_400(client: TestClient, value: str) -> None:
    response = client.get("/notes", headers={"authorization": value})
    assert response.status_code in (400, 401)
    assert "www-authenticate" in response.headers


def test_two_authorization_headers_are_refused(client: TestClient) -> None:
    response = client.get(
        "/notes",
        headers=[("authorization", f"Bearer {mint()}"), ("authorization", f"Bearer {mint(BOB)}")],
    )
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]


def test_an_unknown_kid_refetches_the_jwks_at_most_once_per_interval(
    client: TestClient, issuer: FakeIssuer
) -> None:
    assert client.get("/notes", headers=bearer(mint())).status_code == 200
    assert issuer.jwks_fetches == 1
    for n in range(20):
        other = RSAKey.generate_key(2048, parameters={"kid": f"forged-{n}"}, private=True)
        assert client.get("/notes", headers=bearer(mint(key=other))).status_code == 401
    assert issuer.jwks_fetches == 1  # within the interval of the first fetch: none at all


def test_a_rotated_key_is_found(
    client: TestClient, issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/notes", headers=bearer(mint())).status_code == 200
    new = RSAKey.generate_key(2048, parameters={"kid": "k2"}, private=True)
    issuer.keys.append(new)
    monkeypatch.setattr(jwks, "REFETCH_SECONDS", 0.0)
    assert client.get("/notes", headers=bearer(mint(key=new))).status_code == 200


def test_a_discovery_document_naming_another_issuer_is_not_trusted() -> None:
    async def discovery(request: Request) -> Response:
        return JSONResponse({"issuer": "http://evil.test", "jwks_uri": f"{ISSUER}/jwks"})

    async def jwks(request: Request) -> Response:
        return JSONResponse(KeySet([KEY]).as_dict(private=False))

    fake = Starlette(
        routes=[Route("/.well-known/openid-configuration", discovery), Route("/jwks", jwks)]
    )
    config = notes_server.NotesConfig(
        issuer=ISSUER, audience=AUDIENCE, client_ids=frozenset({CLIENT_ID})
    )
    app = notes_server.create_app(config, transport=httpx2.ASGITransport(app=fake))
    with TestClient(app, base_url=AUDIENCE) as client:
        response = client.get("/notes", headers=bearer(mint()))
    assert response.status_code == 401
    assert response.json()["reason"] == "unknown_key"


# -- notes ----------------------------------------------------------------------------------------


def test_each_user_sees_only_their_own_notes(client: TestClient) -> None:
    alice, bob = mint(ALICE), mint(BOB)
    mine = create(client, alice, "alice's", "private").json()
    theirs = create(client, bob, "bob's", "also private").json()
    assert client.get("/notes", headers=bearer(alice)).json() == {"notes": [mine]}
    assert client.get("/notes", headers=bearer(bob)).json() == {"notes": [theirs]}
    # The same user through another token (another session, a refresh) sees the same notes.
    assert client.get("/notes", headers=bearer(mint(ALICE))).json() == {"notes": [mine]}
    # A user whose sub merely starts like alice's is someone else.
    assert client.get("/notes", headers=bearer(mint(ALICE + "x"))).json() == {"notes": []}


@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_a_10000_character_body_round_trips_exactly(client: TestClient, ensure_ascii: bool) -> None:
    body = (TRICKY * 400)[:9_999] + "\U0001f600"
    title = ("T" + TRICKY * 10)[:199] + "\u200b"
    assert (len(body), len(title)) == (10_000, 200)
    token = mint()
    content = json.dumps({"title": title, "body": body}, ensure_ascii=ensure_ascii)
    created = client.post(
        "/notes",
        content=content.encode("utf-8"),
        headers={**bearer(token), "content-type": "application/json"},
    )
    assert created.status_code == 201, created.text[:200]
    assert (created.json()["title"], created.json()["body"]) == (title, body)
    (listed,) = client.get("/notes", headers=bearer(token)).json()["notes"]
    assert (listed["title"], listed["body"]) == (title, body)


BAD_INPUT: dict[str, tuple[Any, str | None]] = {
    "no title": ({"body": "b"}, "title"),
    "no body": ({"title": "t"}, "body"),
    "empty title": ({"title": "", "body": "b"}, "title"),
    "title not a string": ({"title": 5, "body": "b"}, "title"),
    "title of 201 characters": ({"title": "x" * 201, "body": "b"}, "title"),
    "body of 10001 characters": ({"title": "t", "body": "x" * 10_001}, "body"),
    "body null": ({"title": "t", "body": None}, "body"),
    "an unknown field": ({"title": "t", "body": "b", "tags": []}, "tags"),
    "a JSON array": (["t", "b"], None),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_a_400_naming_the_field(client: TestClient, case: str) -> None:
    payload, field_name = BAD_INPUT[case]
    response = client.post("/notes", json=payload, headers=bearer(mint()))
    assert response.status_code == 400, response.text
    data = response.json()
    assert data["error"] == "invalid_request"
    assert data.get("field") == field_name
    if field_name:
        assert field_name in data["message"]
    assert writes(client) == {"writes": 0, "write_attempts": 1}


def test_a_lone_surrogate_is_refused(client: TestClient) -> None:
    response = client.post(
        "/notes",
        content=b'{"title": "a\\ud800b", "body": ""}',
        headers={**bearer(mint()), "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["field"] == "title"


def test_limits_are_inclusive(client: TestClient) -> None:
    assert create(client, mint(), "x" * 200, "y" * 10_000).status_code == 201
    assert create(client, mint(), "x", "").status_code == 201


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"not json", "application/json", 400),
        (b'{"title": "t", "body": "b"}', "text/plain", 415),
        (b'{"title": "t", "body": "' + b"x" * (300 * 1024) + b'"}', "application/json", 413),
        (b"\xff\xfe", "application/json", 400),
    ],
)
def test_bodies_that_are_not_a_small_json_object_are_refused(
    client: TestClient, content: bytes, content_type: str, status: int
) -> None:
    response = client.post(
        "/notes", content=content, headers={**bearer(mint()), "content-type": content_type}
    )
    assert response.status_code == status
    assert writes(client)["writes"] == 0


# -- the write counter ----------------------------------------------------------------------------


def test_the_write_counter_counts_created_notes_and_every_attempt(client: TestClient) -> None:
    assert writes(client) == {"writes": 0, "write_attempts": 0}
    assert create(client, mint()).status_code == 201
    assert create(client, mint(BOB)).status_code == 201
    assert create(client, mint(exp=1)).status_code == 401
    assert create(client, mint(), title="").status_code == 400
    client.get("/notes", headers=bearer(mint()))  # reads are not writes
    assert writes(client) == {"writes": 2, "write_attempts": 4}


def test_the_write_counter_needs_no_token_but_answers_loopback_only(app: Starlette) -> None:
    with TestClient(app, base_url=AUDIENCE, client=("10.0.0.7", 4000)) as remote:
        assert remote.get("/_test/writes").status_code == 404
    with TestClient(app, base_url=AUDIENCE, client=LOOPBACK_CLIENT) as local:
        assert local.get("/_test/writes").json() == {"writes": 0, "write_attempts": 0}
        assert local.post("/_test/writes").status_code == 405  # read-only


def test_no_token_title_or_body_is_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint()
    with caplog.at_level(logging.DEBUG):
        create(client, token, "secret-title-5c1", "secret-body-77a")
        client.get("/notes", headers=bearer(token))
        client.get("/notes", headers=bearer(mint(exp=1)))
    text = caplog.text
    assert "POST /notes created" in text
    for secret in (token, token.split(".")[1], "secret-title-5c1", "secret-body-77a", ALICE):
        assert secret not in text
    assert hashlib.sha256(f"{ISSUER}|{ALICE}".encode()).hexdigest()[:12] in text


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "service": "notes"}


# -- with the local OIDC provider's own tokens ---------------------------------------------------


def provider_tokens(
    provider: httpx2.Client, *, client_id: str, scope: str, sub: str = ALICE
) -> dict[str, Any]:
    """An authorization-code flow with PKCE at the local provider, as the binder runs it."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    redirect_uri = "http://127.0.0.1:8000/oauth2/callback/notes"
    query = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": scope,
        "state": secrets.token_urlsafe(12),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    consented = provider.post("/oauth2/authorize", params=query, data={"sub": sub})
    assert consented.status_code == 302, consented.text
    location = urllib.parse.urlsplit(consented.headers["location"])
    code = urllib.parse.parse_qs(location.query)["code"][0]
    issued = provider.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        auth=(client_id, "any-secret"),
    )
    assert issued.status_code == 200, issued.text
    tokens: dict[str, Any] = issued.json()
    return tokens


class AsyncWSGI(httpx2.AsyncBaseTransport):
    """The provider's WSGI app behind the notes server's async client (no socket)."""

    def __init__(self, app: Any) -> None:
        self._sync = httpx2.WSGITransport(app=app)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        content = await request.aread()
        sync_request = httpx2.Request(
            request.method, request.url, headers=request.headers, content=content
        )
        response = self._sync.handle_request(sync_request)
        return httpx2.Response(
            response.status_code, headers=response.headers, content=response.read()
        )


@pytest.fixture
def provider_app(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    # create_app extends the provider's supported scopes (a class attribute): restore it.
    monkeypatch.setattr(_storage.Client, "SCOPES_SUPPORTED", _storage.Client.SCOPES_SUPPORTED)
    from oidc_provider_mock import User

    users = [User(sub=ALICE, claims={"name": "Alice"}), User(sub=BOB, claims={})]
    return oidc_provider.create_app(users, {"notes": AUDIENCE})


@pytest.fixture
def provider(provider_app: Any) -> Iterator[httpx2.Client]:
    with httpx2.Client(transport=httpx2.WSGITransport(app=provider_app), base_url=ISSUER) as http:
        yield http


@pytest.fixture
def real_client(provider_app: Any) -> Iterator[TestClient]:
    config = notes_server.NotesConfig(
        issuer=ISSUER, audience=AUDIENCE, client_ids=frozenset({CLIENT_ID})
    )
    app = notes_server.create_app(config, transport=AsyncWSGI(provider_app))
    with TestClient(app, base_url=AUDIENCE, client=LOOPBACK_CLIENT) as test_client:
        yield test_client


def test_the_provider_issues_rfc9068_access_tokens(provider: httpx2.Client) -> None:
    discovery = provider.get("/.well-known/openid-configuration").json()
    assert "notes" in discovery["scopes_supported"]
    tokens = provider_tokens(provider, client_id=CLIENT_ID, scope="openid notes")
    assert tokens["scope"] == "openid notes"
    key_set = KeySet.import_key_set(provider.get("/jwks").json())
    decoded = jwt.decode(tokens["access_token"], key_set, algorithms=["RS256"])
    assert decoded.header["typ"] == "at+jwt"
    claims = decoded.claims
    assert claims["iss"] == ISSUER == discovery["issuer"]
    assert (claims["sub"], claims["aud"], claims["client_id"]) == (ALICE, AUDIENCE, CLIENT_ID)
    assert claims["scope"] == "openid notes"
    assert claims["exp"] - claims["iat"] == tokens["expires_in"]
    # The provider still knows its tokens: userinfo (the whoami tool) works with them.
    info = provider.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert info.status_code == 200
    assert info.json()["sub"] == ALICE
    # A refreshed token is a JWT of the same shape.
    refreshed = provider.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(CLIENT_ID, "any-secret"),
    )
    assert refreshed.status_code == 200, refreshed.text
    again = jwt.decode(refreshed.json()["access_token"], key_set, algorithms=["RS256"]).claims
    assert (again["sub"], again["aud"], again["scope"]) == (ALICE, AUDIENCE, "openid notes")


def test_a_token_without_the_notes_scope_is_for_userinfo_only(provider: httpx2.Client) -> None:
    tokens = provider_tokens(provider, client_id="secure-agents-local", scope="openid profile")
    key_set = KeySet.import_key_set(provider.get("/jwks").json())
    claims = jwt.decode(tokens["access_token"], key_set, algorithms=["RS256"]).claims
    assert claims["aud"] == f"{ISSUER}/userinfo"


def test_the_notes_api_accepts_the_providers_tokens_for_the_notes_client_only(
    provider: httpx2.Client, real_client: TestClient
) -> None:
    alice = provider_tokens(provider, client_id=CLIENT_ID, scope="openid notes")
    bob = provider_tokens(provider, client_id=CLIENT_ID, scope="openid notes", sub=BOB)
    created = create(real_client, alice["access_token"], "from the provider", "ok")
    assert created.status_code == 201, created.text
    listed = real_client.get("/notes", headers=bearer(alice["access_token"])).json()["notes"]
    assert [n["title"] for n in listed] == ["from the provider"]
    assert real_client.get("/notes", headers=bearer(bob["access_token"])).json() == {"notes": []}

    refusals = {
        "another client, notes scope": (
            provider_tokens(provider, client_id="secure-agents-local", scope="openid notes"),
            "access_token",
            "wrong_client",
        ),
        "the notes client without the scope": (
            provider_tokens(provider, client_id=CLIENT_ID, scope="openid"),
            "access_token",
            "wrong_audience",
        ),
        "the provider's ID token": (alice, "id_token", "not_an_access_token"),
    }
    for case, (tokens, kind, reason) in refusals.items():
        response = real_client.get("/notes", headers=bearer(tokens[kind]))
        assert response.status_code == 401, case
        assert response.json()["reason"] == reason, case
    assert writes(real_client)["writes"] == 1
