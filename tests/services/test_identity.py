"""Cognito access-token verification: one test per attack or refusal the design names.

No network: the JWKS is served through httpx2.MockTransport, keys are generated here, and time
is a fake clock, so expiry and the refetch interval are exact.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import httpx2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.datastructures import Headers

from svc_common.identity import (
    REASONS,
    CognitoVerifier,
    InvalidToken,
    VerifiedUser,
    token_from_headers,
)

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example"
JWKS_URL = f"{ISSUER}/.well-known/jwks.json"
CLIENT_ID = "agentclient"
OTHER_CLIENT_ID = "binderclient"
SUBJECT = "5f1c3d2e-0000-4000-8000-0123456789ab"
START = 1_700_000_000.0
DROP = object()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


@pytest.fixture(scope="module")
def key_a() -> RSAKey:
    return _rsa_key("kid-a")


@pytest.fixture(scope="module")
def key_b() -> RSAKey:
    return _rsa_key("kid-b")


@pytest.fixture(scope="module")
def attacker_key() -> RSAKey:
    return _rsa_key("kid-a")


def public_jwk(key: RSAKey, **params: Any) -> dict[str, Any]:
    return {**dict(key.as_dict(private=False)), **params}


class JwksServer:
    """The user pool's JWKS endpoint, counting every request it answers."""

    def __init__(self, *keys: RSAKey) -> None:
        self.keys: list[dict[str, Any]] = [public_jwk(k) for k in keys]
        self.status = 200
        self.body: bytes | None = None
        self.headers: dict[str, str] = {}
        self.delay = 0.0
        self.requests: list[httpx2.Request] = []

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.delay:
            await anyio.sleep(self.delay)
        body = self.body if self.body is not None else json.dumps({"keys": self.keys}).encode()
        return httpx2.Response(self.status, content=body, headers=self.headers)

    @property
    def fetches(self) -> int:
        return len(self.requests)


@pytest.fixture
def server(key_a: RSAKey) -> JwksServer:
    return JwksServer(key_a)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def http(server: JwksServer) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(server.handle)) as client:
        yield client


@pytest.fixture
def verifier(http: httpx2.AsyncClient, clock: FakeClock) -> CognitoVerifier:
    return CognitoVerifier(issuer=ISSUER, client_ids=[CLIENT_ID], http=http, clock=clock)


def access_claims(clock: FakeClock, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Claims shaped like a Cognito access token; DROP as a value removes the claim."""
    now = int(clock())
    claims: dict[str, Any] = {
        "sub": SUBJECT,
        "iss": ISSUER,
        "client_id": CLIENT_ID,
        "origin_jti": "8a4b-origin",
        "event_id": "e-1",
        "token_use": "access",
        "scope": "openid profile agent/chat",
        "auth_time": now,
        "exp": now + 3600,
        "iat": now,
        "jti": "jti-1",
        "username": "alice",
        "version": 2,
    }
    for name, value in (overrides or {}).items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def sign(
    key: RSAKey,
    clock: FakeClock,
    overrides: Mapping[str, Any] | None = None,
    *,
    kid: str | None = None,
) -> str:
    header = {"alg": "RS256", "kid": kid if kid is not None else key.kid}
    return jwt.encode(header, access_claims(clock, overrides), key, default_type=None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: object) -> str:
    return b64(json.dumps(value).encode())


async def refused(verifier: CognitoVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    return caught.value.reason


# --- accepted tokens ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_valid_token_is_accepted(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock, server: JwksServer
) -> None:
    user = await verifier.verify(sign(key_a, clock))

    assert user == VerifiedUser(
        issuer=ISSUER,
        subject=SUBJECT,
        client_id=CLIENT_ID,
        username="alice",
        scopes=("openid", "profile", "agent/chat"),
        expires_at=int(START) + 3600,
    )
    assert user.user_key == f"{ISSUER}|{SUBJECT}"
    assert user.user_hash == hashlib.sha256(f"{ISSUER}|{SUBJECT}".encode()).hexdigest()
    assert len(user.user_hash) == 64
    assert server.fetches == 1
    assert str(server.requests[0].url) == JWKS_URL


@pytest.mark.anyio
async def test_second_client_and_cognito_username_are_accepted(
    http: httpx2.AsyncClient, key_a: RSAKey, clock: FakeClock
) -> None:
    verifier = CognitoVerifier(
        issuer=ISSUER, client_ids={CLIENT_ID, OTHER_CLIENT_ID}, http=http, clock=clock
    )
    token = sign(
        key_a,
        clock,
        {
            "client_id": OTHER_CLIENT_ID,
            "username": DROP,
            "cognito:username": "bob",
            "scope": DROP,
        },
    )

    user = await verifier.verify(token)

    assert user.client_id == OTHER_CLIENT_ID
    assert user.username == "bob"
    assert user.scopes == ()


@pytest.mark.anyio
async def test_jwks_url_override_is_used(
    http: httpx2.AsyncClient, key_a: RSAKey, clock: FakeClock, server: JwksServer
) -> None:
    local_jwks = "http://127.0.0.1:5000/eu-west-1_Example/.well-known/jwks.json"
    verifier = CognitoVerifier(
        issuer=ISSUER, client_ids=[CLIENT_ID], http=http, jwks_url=local_jwks, clock=clock
    )

    await verifier.verify(sign(key_a, clock))

    assert [str(r.url) for r in server.requests] == [local_jwks]


# --- forged tokens -----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"])
async def test_alg_none_is_refused(
    verifier: CognitoVerifier, clock: FakeClock, server: JwksServer, signature: str
) -> None:
    token = f"{b64json({'alg': 'none', 'kid': 'kid-a'})}.{b64json(access_claims(clock))}."
    assert await refused(verifier, token + signature) == "unsupported_algorithm"
    assert server.fetches == 0


@pytest.mark.anyio
async def test_hs256_with_public_key_as_hmac_secret_is_refused(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock
) -> None:
    """Algorithm confusion: an HMAC keyed with the (public) RSA key must not pass as RS256."""
    await verifier.preload()
    signing_input = f"{b64json({'alg': 'HS256', 'kid': 'kid-a'})}.{b64json(access_claims(clock))}"
    for secret in (key_a.as_pem(private=False), json.dumps(public_jwk(key_a)).encode()):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert await refused(verifier, f"{signing_input}.{b64(mac)}") == "unsupported_algorithm"


@pytest.mark.anyio
@pytest.mark.parametrize("alg", ["ES256", "PS256", "RS512", "rs256", "HS512"])
async def test_other_algorithms_are_refused(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock, alg: str
) -> None:
    token = sign(key_a, clock)
    _, payload, signature = token.split(".")
    forged = f"{b64json({'alg': alg, 'kid': 'kid-a'})}.{payload}.{signature}"
    assert await refused(verifier, forged) == "unsupported_algorithm"


@pytest.mark.anyio
async def test_missing_kid_is_refused(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock
) -> None:
    token = jwt.encode({"alg": "RS256"}, access_claims(clock), key_a)
    assert await refused(verifier, token) == "malformed"


@pytest.mark.anyio
async def test_token_signed_by_another_key_with_known_kid_is_refused(
    verifier: CognitoVerifier, attacker_key: RSAKey, clock: FakeClock
) -> None:
    assert attacker_key.kid == "kid-a"
    assert await refused(verifier, sign(attacker_key, clock)) == "bad_signature"


@pytest.mark.anyio
async def test_tampered_payload_is_refused(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock
) -> None:
    header, _, signature = sign(key_a, clock).split(".")
    payload = b64json(access_claims(clock, {"sub": "someone-else"}))
    assert await refused(verifier, f"{header}.{payload}.{signature}") == "bad_signature"


# --- JWKS cache, refetch and rotation ----------------------------------------------------------


@pytest.mark.anyio
async def test_unknown_kid_refetches_at_most_once_per_interval(
    verifier: CognitoVerifier, key_b: RSAKey, clock: FakeClock, server: JwksServer
) -> None:
    await verifier.preload()
    assert server.fetches == 1
    clock.advance(61)

    assert await refused(verifier, sign(key_b, clock)) == "unknown_key"
    assert server.fetches == 2

    clock.advance(30)
    assert await refused(verifier, sign(key_b, clock, kid="kid-x")) == "unknown_key"
    assert await refused(verifier, sign(key_b, clock, kid="kid-y")) == "unknown_key"
    assert server.fetches == 2


@pytest.mark.anyio
async def test_refetch_happens_again_after_the_interval(
    verifier: CognitoVerifier, key_b: RSAKey, clock: FakeClock, server: JwksServer
) -> None:
    await verifier.preload()
    assert await refused(verifier, sign(key_b, clock)) == "unknown_key"
    assert server.fetches == 1  # within the interval of the preload

    clock.advance(60)
    assert await refused(verifier, sign(key_b, clock)) == "unknown_key"
    assert server.fetches == 2

    clock.advance(59)
    assert await refused(verifier, sign(key_b, clock)) == "unknown_key"
    assert server.fetches == 2

    clock.advance(1)
    assert await refused(verifier, sign(key_b, clock)) == "unknown_key"
    assert server.fetches == 3


@pytest.mark.anyio
async def test_key_rotation_new_kid_is_accepted_after_refetch(
    verifier: CognitoVerifier, key_a: RSAKey, key_b: RSAKey, clock: FakeClock, server: JwksServer
) -> None:
    await verifier.preload()
    server.keys = [public_jwk(key_a), public_jwk(key_b)]
    clock.advance(61)

    user = await verifier.verify(sign(key_b, clock))
    assert user.subject == SUBJECT
    assert server.fetches == 2

    # Both keys are now cached: neither needs another fetch.
    await verifier.verify(sign(key_a, clock))
    await verifier.verify(sign(key_b, clock))
    assert server.fetches == 2


@pytest.mark.anyio
async def test_key_removed_from_jwks_is_dropped_on_refetch(
    verifier: CognitoVerifier, key_a: RSAKey, key_b: RSAKey, clock: FakeClock, server: JwksServer
) -> None:
    await verifier.preload()
    server.keys = [public_jwk(key_b)]
    clock.advance(61)
    await verifier.verify(sign(key_b, clock))

    assert await refused(verifier, sign(key_a, clock)) == "unknown_key"


@pytest.mark.anyio
async def test_jwks_500_after_first_fetch_keeps_cached_keys(
    verifier: CognitoVerifier,
    key_a: RSAKey,
    key_b: RSAKey,
    clock: FakeClock,
    server: JwksServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await verifier.preload()
    server.status = 500
    server.keys = [public_jwk(key_a), public_jwk(key_b)]
    clock.advance(61)

    with caplog.at_level(logging.WARNING, logger="svc_common.identity"):
        assert (await verifier.verify(sign(key_a, clock))).subject == SUBJECT
        assert await refused(verifier, sign(key_b, clock)) == "unknown_key"
        assert (await verifier.verify(sign(key_a, clock))).subject == SUBJECT

    assert server.fetches == 2
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert JWKS_URL in record.getMessage()
    assert "500" in record.getMessage()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, None),
        (404, None),
        (200, b"<html>not json</html>"),
        (200, b'{"no_keys": []}'),
        (200, b'[{"keys": []}]'),
        (200, b'{"keys": [' + b'"x",' * 40_000 + b'"x"]}'),
    ],
)
async def test_jwks_never_fetched_fails_closed(
    verifier: CognitoVerifier,
    key_a: RSAKey,
    clock: FakeClock,
    server: JwksServer,
    status: int,
    body: bytes | None,
) -> None:
    server.status = status
    server.body = body
    await verifier.preload()  # logged, not raised

    assert await refused(verifier, sign(key_a, clock)) == "jwks_unavailable"
    assert server.fetches == 1


@pytest.mark.anyio
async def test_jwks_transport_error_fails_closed(key_a: RSAKey, clock: FakeClock) -> None:
    def unreachable(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(unreachable)) as http:
        verifier = CognitoVerifier(issuer=ISSUER, client_ids=[CLIENT_ID], http=http, clock=clock)
        await verifier.preload()
        assert await refused(verifier, sign(key_a, clock)) == "jwks_unavailable"


@pytest.mark.anyio
async def test_jwks_redirect_is_not_followed(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock, server: JwksServer
) -> None:
    server.status = 302
    server.headers = {"location": "https://attacker.example/jwks.json"}

    assert await refused(verifier, sign(key_a, clock)) == "jwks_unavailable"
    assert [r.url.host for r in server.requests] == ["cognito-idp.eu-west-1.amazonaws.com"]


def _short_rsa_jwk(kid: str) -> dict[str, Any]:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 -- on purpose
    n = weak.public_key().public_numbers().n
    return {"kty": "RSA", "kid": kid, "n": b64(n.to_bytes(128, "big")), "e": "AQAB"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "entry",
    [
        pytest.param({"use": "enc"}, id="use-enc"),
        pytest.param({"alg": "RS512"}, id="alg-other"),
        pytest.param({"key_ops": ["encrypt"]}, id="key-ops-encrypt"),
        pytest.param({"kty": "EC"}, id="not-rsa"),
        pytest.param({"use": DROP}, id="no-use-is-accepted"),
    ],
)
async def test_only_rsa_signature_keys_are_taken_from_jwks(
    verifier: CognitoVerifier,
    key_a: RSAKey,
    clock: FakeClock,
    server: JwksServer,
    entry: dict[str, Any],
) -> None:
    jwk = public_jwk(key_a)
    for name, value in entry.items():
        if value is DROP:
            jwk.pop(name)
        else:
            jwk[name] = value
    server.keys = [jwk]

    if "use" in entry and entry["use"] is DROP:
        assert (await verifier.verify(sign(key_a, clock))).subject == SUBJECT
    else:
        assert await refused(verifier, sign(key_a, clock)) == "unknown_key"


@pytest.mark.anyio
async def test_short_and_duplicate_keys_are_ignored(
    verifier: CognitoVerifier, key_a: RSAKey, key_b: RSAKey, clock: FakeClock, server: JwksServer
) -> None:
    server.keys = [
        _short_rsa_jwk("kid-short"),
        public_jwk(key_a),
        public_jwk(key_b),
        public_jwk(key_a, kid="kid-b"),  # same kid twice: neither is trusted
    ]
    assert (await verifier.verify(sign(key_a, clock))).subject == SUBJECT
    assert await refused(verifier, sign(key_b, clock)) == "unknown_key"
    assert await refused(verifier, sign(key_a, clock, kid="kid-short")) == "unknown_key"


@pytest.mark.anyio
@pytest.mark.parametrize("known", [True, False])
async def test_concurrent_unknown_kid_causes_one_fetch(
    verifier: CognitoVerifier,
    key_a: RSAKey,
    key_b: RSAKey,
    clock: FakeClock,
    server: JwksServer,
    known: bool,
) -> None:
    await verifier.preload()
    clock.advance(61)
    server.delay = 0.05  # every verification arrives while the fetch is in flight
    if known:
        server.keys = [public_jwk(key_a), public_jwk(key_b)]
    tokens = [sign(key_b, clock, {"jti": f"jti-{i}"}) for i in range(20)]
    outcomes: list[str] = []

    async def one(token: str) -> None:
        try:
            await verifier.verify(token)
            outcomes.append("ok")
        except InvalidToken as exc:
            outcomes.append(exc.reason)

    async with anyio.create_task_group() as group:
        for token in tokens:
            group.start_soon(one, token)

    assert server.fetches == 2  # the preload, then exactly one refetch
    assert outcomes == ["ok" if known else "unknown_key"] * 20


# --- claims ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wrong_issuer_is_refused(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock
) -> None:
    for iss in (
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other",
        ISSUER + "/",
        ISSUER.upper(),
        DROP,
    ):
        assert await refused(verifier, sign(key_a, clock, {"iss": iss})) == "wrong_issuer"


@pytest.mark.anyio
async def test_wrong_client_id_is_refused(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock
) -> None:
    for client_id in (OTHER_CLIENT_ID, "", ["agentclient"], DROP):
        token = sign(key_a, clock, {"client_id": client_id})
        assert await refused(verifier, token) == "wrong_client"


@pytest.mark.anyio
async def test_empty_client_id_never_matches(
    http: httpx2.AsyncClient, key_a: RSAKey, clock: FakeClock
) -> None:
    verifier = CognitoVerifier(issuer=ISSUER, client_ids=[CLIENT_ID, ""], http=http, clock=clock)
    assert await refused(verifier, sign(key_a, clock, {"client_id": ""})) == "wrong_client"


@pytest.mark.anyio
async def test_id_token_is_refused(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock
) -> None:
    id_token = sign(
        key_a,
        clock,
        {"token_use": "id", "aud": CLIENT_ID, "client_id": DROP, "email": "alice@example.com"},
    )
    assert await refused(verifier, id_token) == "not_an_access_token"
    no_use = sign(key_a, clock, {"token_use": DROP})
    assert await refused(verifier, no_use) == "not_an_access_token"


@pytest.mark.anyio
async def test_expired_token_beyond_leeway_is_refused(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock
) -> None:
    token = sign(key_a, clock)
    clock.advance(3600 + 31)
    assert await refused(verifier, token) == "expired"


@pytest.mark.anyio
async def test_expired_token_within_leeway_is_accepted(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock
) -> None:
    token = sign(key_a, clock)
    clock.advance(3600 + 30)
    assert (await verifier.verify(token)).expires_at == int(START) + 3600


@pytest.mark.anyio
async def test_missing_or_bogus_exp_is_refused(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock
) -> None:
    assert await refused(verifier, sign(key_a, clock, {"exp": DROP})) == "missing_claim"
    assert await refused(verifier, sign(key_a, clock, {"exp": "9999999999"})) == "malformed"
    assert await refused(verifier, sign(key_a, clock, {"exp": True})) == "malformed"
    # NaN compares false with everything, so it would never expire: refused while parsing.
    header, _, _ = sign(key_a, clock).split(".")
    nan_payload = json.dumps(access_claims(clock, {"exp": float("nan")})).encode()
    signing_input = f"{header}.{b64(nan_payload)}".encode()
    assert b"NaN" in nan_payload
    assert key_a.private_key is not None
    signature = key_a.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    assert await refused(verifier, f"{signing_input.decode()}.{b64(signature)}") == "malformed"


@pytest.mark.anyio
async def test_nbf_in_the_future_is_refused(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock
) -> None:
    token = sign(key_a, clock, {"nbf": int(START) + 120})
    assert await refused(verifier, token) == "not_yet_valid"
    within = sign(key_a, clock, {"nbf": int(START) + 30})
    assert (await verifier.verify(within)).subject == SUBJECT


@pytest.mark.anyio
async def test_iat_in_the_future_is_refused(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock
) -> None:
    token = sign(key_a, clock, {"iat": int(START) + 120})
    assert await refused(verifier, token) == "not_yet_valid"


@pytest.mark.anyio
async def test_missing_sub_is_refused(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock
) -> None:
    for sub in (DROP, "", "   ", 42, None):
        assert await refused(verifier, sign(key_a, clock, {"sub": sub})) == "missing_claim"


# --- malformed input ---------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("a.b", id="two-segments"),
        pytest.param("a.b.c.d", id="four-segments"),
        pytest.param("..", id="empty-segments"),
        pytest.param("!!!.???.***", id="not-base64url"),
        pytest.param("eyJhbGciOiJSUzI1NiJ9+.e30.c2ln", id="standard-base64-alphabet"),
        pytest.param("a.b.c", id="header-not-decodable"),
        pytest.param(f"{b64(b'not json')}.e30.c2ln", id="header-not-json"),
        pytest.param(f"{b64json(['RS256'])}.e30.c2ln", id="header-not-object"),
        pytest.param(f"{b64(bytes([0xFF, 0xFE]))}.e30.c2ln", id="header-not-utf8"),
        pytest.param(
            b64(b'{"alg":"none","alg":"RS256","kid":"kid-a"}') + ".e30.c2ln",
            id="duplicate-header-member",
        ),
        pytest.param(f"{b64json({'alg': 'RS256', 'kid': 'kid-a'})}.e30.", id="no-signature"),
        pytest.param(f"{b64json({'alg': 'RS256', 'kid': 7})}.e30.c2ln", id="kid-not-string"),
        pytest.param(
            f"{b64json({'alg': 'RS256', 'kid': 'kid-a', 'crit': ['b64'], 'b64': False})}.e30.c2ln",
            id="crit-header",
        ),
        pytest.param(" " + "e30.e30.c2ln", id="leading-space"),
    ],
)
async def test_malformed_strings_are_refused(
    verifier: CognitoVerifier, server: JwksServer, token: str
) -> None:
    assert await refused(verifier, token) == "malformed"
    assert server.fetches == 0


@pytest.mark.anyio
async def test_oversized_token_is_refused_before_parsing(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock, server: JwksServer
) -> None:
    big = sign(key_a, clock, {"padding": "x" * 10_240})
    assert len(big) > 10_240
    assert await refused(verifier, big) == "too_large"
    assert await refused(verifier, "a" * 10_240) == "too_large"
    assert server.fetches == 0


# --- token_from_headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"authorization": "Bearer tok.en.1"}, "tok.en.1", id="bearer"),
        pytest.param({"Authorization": "bearer tok.en.1"}, "tok.en.1", id="lower-case-scheme"),
        pytest.param({"AUTHORIZATION": "BEARER  tok.en.1 "}, "tok.en.1", id="upper-case-name"),
        pytest.param({"x-amzn-oidc-accesstoken": "tok.en.1"}, "tok.en.1", id="alb-header"),
        pytest.param({"X-Amzn-Oidc-AccessToken": "tok.en.1"}, "tok.en.1", id="alb-header-case"),
        pytest.param(
            {"authorization": "Bearer tok.en.1", "x-amzn-oidc-accesstoken": "tok.en.1"},
            "tok.en.1",
            id="both-equal",
        ),
    ],
)
def test_token_from_headers_finds_the_token(headers: dict[str, str], expected: str) -> None:
    assert token_from_headers(headers) == expected
    assert token_from_headers(Headers(headers=headers)) == expected


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param({}, "missing", id="none"),
        pytest.param({"cookie": "session=tok.en.1"}, "missing", id="unrelated-headers"),
        pytest.param({"authorization": "  "}, "missing", id="blank"),
        pytest.param(
            {"authorization": "Bearer tok.en.1", "x-amzn-oidc-accesstoken": "tok.en.2"},
            "ambiguous",
            id="both-different",
        ),
        pytest.param({"authorization": "Basic dXNlcjpwYXNz"}, "malformed", id="basic-scheme"),
        pytest.param({"authorization": "Bearer"}, "malformed", id="bearer-without-token"),
        pytest.param({"authorization": "Bearer a b"}, "malformed", id="bearer-two-tokens"),
        pytest.param({"authorization": "tok.en.1"}, "malformed", id="no-scheme"),
    ],
)
def test_token_from_headers_refuses(headers: dict[str, str], reason: str) -> None:
    for mapping in (headers, Headers(headers=headers)):
        with pytest.raises(InvalidToken) as caught:
            token_from_headers(mapping)
        assert caught.value.reason == reason


def test_token_from_headers_repeated_authorization_is_ambiguous() -> None:
    headers = Headers(
        raw=[(b"authorization", b"Bearer tok.en.1"), (b"authorization", b"Bearer tok.en.2")]
    )
    with pytest.raises(InvalidToken) as caught:
        token_from_headers(headers)
    assert caught.value.reason == "ambiguous"


# --- nothing leaks -----------------------------------------------------------------------------


def test_invalid_token_accepts_only_known_reasons() -> None:
    assert InvalidToken("expired").reason == "expired"
    assert str(InvalidToken("expired")) == "expired"
    with pytest.raises(ValueError, match="unknown InvalidToken reason"):
        InvalidToken("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    assert len(REASONS) == 14


@pytest.mark.anyio
async def test_no_message_or_log_contains_the_token(
    verifier: CognitoVerifier,
    key_a: RSAKey,
    attacker_key: RSAKey,
    key_b: RSAKey,
    clock: FakeClock,
    server: JwksServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = sign(key_a, clock)
    header, payload, signature = good.split(".")
    tokens = [
        sign(attacker_key, clock),
        sign(key_b, clock),
        sign(key_a, clock, {"iss": "https://evil.example"}),
        sign(key_a, clock, {"token_use": "id"}),
        sign(key_a, clock, {"client_id": "other"}),
        sign(key_a, clock, {"sub": DROP}),
        sign(key_a, clock, {"exp": int(START) - 3600}),
        f"{header}.{payload}",
        f"{b64json({'alg': 'none', 'kid': 'kid-a'})}.{payload}.",
        f"{header}.{payload}.{signature}" + "x" * 9000,
        f"{b64(b'{')}.{payload}.{signature}",
    ]
    await verifier.preload()
    server.status = 503
    clock.advance(61)
    with caplog.at_level(logging.DEBUG):
        for token in tokens:
            with pytest.raises(InvalidToken) as caught:
                await verifier.verify(token)
            exc = caught.value
            rendered = [str(exc), repr(exc), *map(str, exc.args)]
            for part in (token, *[p for p in token.split(".") if len(p) > 8]):
                assert all(part not in text for text in rendered)
            assert exc.__cause__ is None
            assert exc.__suppress_context__ or exc.__context__ is None
        with pytest.raises(InvalidToken):
            token_from_headers({"authorization": f"Basic {good}"})

    assert caplog.records, "the JWKS failure should have been logged"
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        for token in (*tokens, good):
            for part in (token, *[p for p in token.split(".") if len(p) > 8]):
                assert part not in text


def test_constructor_rejects_unusable_configuration() -> None:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda r: httpx2.Response(500)))
    with pytest.raises(ValueError, match="client_ids"):
        CognitoVerifier(issuer=ISSUER, client_ids="agentclient", http=http)
    with pytest.raises(ValueError, match="client_ids"):
        CognitoVerifier(issuer=ISSUER, client_ids=[], http=http)
    with pytest.raises(ValueError, match="client_ids"):
        CognitoVerifier(issuer=ISSUER, client_ids=["", ""], http=http)
    with pytest.raises(ValueError, match="issuer"):
        CognitoVerifier(issuer="", client_ids=[CLIENT_ID], http=http)


# --- the verified-token cache ------------------------------------------------------------------


@pytest.mark.anyio
async def test_cached_token_still_expires(
    verifier: CognitoVerifier, key_a: RSAKey, clock: FakeClock
) -> None:
    token = sign(key_a, clock, {"exp": int(clock()) + 120})
    assert (await verifier.verify(token)).subject == SUBJECT
    clock.advance(120 + 31)  # past exp and the 30 s leeway
    assert await refused(verifier, token) == "expired"


@pytest.mark.anyio
async def test_cache_never_serves_a_different_token(
    verifier: CognitoVerifier, key_a: RSAKey, attacker_key: RSAKey, clock: FakeClock
) -> None:
    good = sign(key_a, clock)
    await verifier.verify(good)
    header, _, signature = good.split(".")
    forged_payload = b64json({**access_claims(clock), "sub": "mallory"})
    assert await refused(verifier, f"{header}.{forged_payload}.{signature}") == "bad_signature"
    assert await refused(verifier, sign(attacker_key, clock, kid=key_a.kid)) == "bad_signature"


@pytest.mark.anyio
async def test_cache_is_bounded(http: httpx2.AsyncClient, key_a: RSAKey, clock: FakeClock) -> None:
    small = CognitoVerifier(
        issuer=ISSUER, client_ids=[CLIENT_ID], http=http, clock=clock, verified_cache_size=3
    )
    for i in range(10):
        await small.verify(sign(key_a, clock, {"jti": f"jti-{i}"}))
    assert len(small._verified) == 3
