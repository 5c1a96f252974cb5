"""Provider ID tokens: OIDC Core 3.1.3.7 claim checks, at_hash, and the throttled JWKS cache.

Everything goes through `OAuthClient.validate_id_token`, the binder's entry point. No network:
the provider's JWKS is an httpx2.MockTransport that counts requests, keys are generated here,
and time is a fake clock, so leeway and the refetch interval are exact.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import httpx2
import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OctKey, RSAKey

from binder.id_tokens import REJECTION_CODES, access_token_hash
from binder.oauth import OAuthClient, ProviderError
from binder.providers.microsoft import CONSUMERS_TENANT_ID as MICROSOFT_CONSUMERS_TENANT_ID
from binder.providers.registry import build_spec
from binder.providers.spec import ProviderSpec
from tests.binder.conftest import PROVIDER_CLIENT_ID, Harness
from tests.fakes.provider import FakeProvider

CLIENT_ID = "binder-client"
ISSUER = "https://op.example.com"
JWKS_URI = f"{ISSUER}/jwks"
NONCE = "n-0S6_WzA2Mj"
ACCESS_TOKEN = "SlAV32hkKG-access-token"
START = 1_700_000_000.0
TENANT = "3f2c1a9e-7b6d-4c5e-8f90-123456789abc"
OTHER_TENANT = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
DROP = object()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig", "alg": "RS256"})


@pytest.fixture(scope="module")
def any_rsa_key() -> RSAKey:
    # No "alg" in its JWK: usable with every RSA algorithm.
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-any", "use": "sig"})


@pytest.fixture(scope="module")
def rotated_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-2", "use": "sig"})


@pytest.fixture(scope="module")
def attacker_key() -> RSAKey:
    # Same kid as the provider's key: only the signature tells them apart.
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


@pytest.fixture(scope="module")
def ec_keys() -> dict[str, ECKey]:
    return {
        "ES256": ECKey.generate_key("P-256", parameters={"kid": "ec-256"}),
        "ES384": ECKey.generate_key("P-384", parameters={"kid": "ec-384"}),
        "ES512": ECKey.generate_key("P-521", parameters={"kid": "ec-521"}),
    }


class JwksServer:
    """The provider's JWKS endpoint, counting every request."""

    def __init__(self, *keys: RSAKey | ECKey) -> None:
        self.keys: list[Any] = [dict(k.as_dict(private=False)) for k in keys]
        self.status = 200
        self.body: bytes | None = None
        self.delay = 0.0
        self.requests: list[httpx2.Request] = []

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.delay:
            await anyio.sleep(self.delay)
        body = self.body if self.body is not None else json.dumps({"keys": self.keys}).encode()
        return httpx2.Response(self.status, content=body)

    @property
    def fetches(self) -> int:
        return len(self.requests)


@pytest.fixture
def server(rsa_key: RSAKey, any_rsa_key: RSAKey, ec_keys: dict[str, ECKey]) -> JwksServer:
    return JwksServer(rsa_key, any_rsa_key, *ec_keys.values())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def http(server: JwksServer) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(server.handle)) as client:
        yield client


@pytest.fixture
def oauth(clock: FakeClock) -> OAuthClient:
    return OAuthClient(clock=clock)


def oidc_spec(**changes: Any) -> ProviderSpec:
    base = build_spec("google", name="op", client_id=CLIENT_ID)
    fields: dict[str, Any] = {
        "kind": "oidc",
        "issuer": ISSUER,
        "issuer_aliases": frozenset(),
        "jwks_uri": JWKS_URI,
    }
    fields.update(changes)
    return dataclasses.replace(base, **fields)


def id_claims(clock: FakeClock, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A well-formed ID token's claims; DROP as a value removes a claim."""
    now = int(clock())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": CLIENT_ID,
        "exp": now + 300,
        "iat": now,
        "nonce": NONCE,
    }
    for name, value in (overrides or {}).items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def sign(
    key: RSAKey | ECKey | OctKey,
    claims: Mapping[str, Any],
    *,
    alg: str = "RS256",
    kid: str | None = None,
) -> str:
    header = {"alg": alg, "kid": kid if kid is not None else key.kid}
    return jwt.encode(header, dict(claims), key, algorithms=[alg])


def b64json(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


async def validate(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    token: str,
    *,
    spec: ProviderSpec | None = None,
    nonce: str | None = NONCE,
    access_token: str | None = None,
) -> dict[str, Any]:
    # Only pass access_token when a test means it, so the rest also run against the old API.
    extra: dict[str, Any] = {} if access_token is None else {"access_token": access_token}
    return await oauth.validate_id_token(
        spec or oidc_spec(), token, nonce=nonce, http=http, **extra
    )


async def refused(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    token: str,
    **kwargs: Any,
) -> str:
    with pytest.raises(ProviderError) as caught:
        await validate(oauth, http, token, **kwargs)
    assert caught.value.kind == "rejected"
    assert caught.value.code in REJECTION_CODES
    assert not token or token not in str(caught.value)
    return caught.value.code


# --- accepted tokens ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_valid_id_token_is_accepted(
    oauth: OAuthClient, http: httpx2.AsyncClient, clock: FakeClock, rsa_key: RSAKey
) -> None:
    claims = await validate(oauth, http, sign(rsa_key, id_claims(clock)))
    assert claims["sub"] == "248289761001"
    assert claims["nonce"] == NONCE


@pytest.mark.anyio
@pytest.mark.parametrize("alg", ["PS256", "PS512", "RS384", "ES256", "ES384", "ES512"])
async def test_other_asymmetric_algorithms_are_accepted(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    any_rsa_key: RSAKey,
    ec_keys: dict[str, ECKey],
    alg: str,
) -> None:
    key = ec_keys[alg] if alg.startswith("ES") else any_rsa_key
    assert await validate(oauth, http, sign(key, id_claims(clock), alg=alg))


@pytest.mark.anyio
@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": [CLIENT_ID]},
        {"azp": CLIENT_ID},
        {"aud": [CLIENT_ID, "https://api.example.com"], "azp": CLIENT_ID},
        {"exp": int(START) - 59},  # within the 60 s leeway
        {"iat": int(START) + 59},
        {"exp": START + 300.5, "iat": START - 0.25},  # NumericDate may be fractional
        {"nbf": int(START)},
    ],
    ids=[
        "aud-list",
        "azp",
        "several-aud-with-azp",
        "exp-leeway",
        "iat-leeway",
        "fractional",
        "nbf",
    ],
)
async def test_tokens_oidc_allows_are_accepted(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    rsa_key: RSAKey,
    overrides: dict[str, Any],
) -> None:
    assert await validate(oauth, http, sign(rsa_key, id_claims(clock, overrides)))


@pytest.mark.anyio
async def test_google_legacy_issuer_alias_is_accepted(
    oauth: OAuthClient, http: httpx2.AsyncClient, clock: FakeClock, rsa_key: RSAKey
) -> None:
    spec = dataclasses.replace(
        build_spec("google", name="google", client_id=CLIENT_ID), jwks_uri=JWKS_URI
    )
    for issuer in ("https://accounts.google.com", "accounts.google.com"):
        token = sign(rsa_key, id_claims(clock, {"iss": issuer}))
        assert await validate(oauth, http, token, spec=spec)
    token = sign(rsa_key, id_claims(clock, {"iss": "https://accounts.google.com.evil"}))
    assert await refused(oauth, http, token, spec=spec) == "id_token_issuer"


# --- refused claims ----------------------------------------------------------------------------

NOW = int(START)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"sub": DROP}, "id_token_subject"),
        ({"sub": ""}, "id_token_subject"),
        ({"sub": 248289761001}, "id_token_subject"),
        ({"iat": DROP}, "id_token_iat"),
        ({"iat": "yesterday"}, "id_token_iat"),
        ({"iat": True}, "id_token_iat"),
        ({"iat": NOW + 3600}, "id_token_iat"),
        ({"exp": DROP}, "id_token_exp"),
        ({"exp": "tomorrow"}, "id_token_exp"),
        ({"exp": NOW - 61}, "id_token_expired"),
        ({"nbf": NOW + 3600}, "id_token_not_yet_valid"),
        ({"iss": DROP}, "id_token_issuer"),
        ({"iss": "https://evil.example.com"}, "id_token_issuer"),
        ({"iss": ["https://op.example.com"]}, "id_token_issuer"),
        ({"aud": DROP}, "id_token_audience"),
        ({"aud": "someone-else"}, "id_token_audience"),
        ({"aud": ["someone-else", "another"]}, "id_token_audience"),
        ({"aud": [CLIENT_ID, "https://api.example.com"]}, "id_token_azp"),
        ({"azp": "someone-else"}, "id_token_azp"),
        ({"aud": [CLIENT_ID, "someone-else"], "azp": "someone-else"}, "id_token_azp"),
        ({"nonce": DROP}, "id_token_nonce"),
        ({"nonce": "another-nonce"}, "id_token_nonce"),
        ({"nonce": "n\u00f6nce"}, "id_token_nonce"),
    ],
    ids=[
        "no-sub",
        "empty-sub",
        "numeric-sub",
        "no-iat",
        "text-iat",
        "bool-iat",
        "future-iat",
        "no-exp",
        "text-exp",
        "expired",
        "future-nbf",
        "no-iss",
        "wrong-iss",
        "list-iss",
        "no-aud",
        "wrong-aud",
        "foreign-aud-list",
        "several-aud-without-azp",
        "foreign-azp",
        "several-aud-foreign-azp",
        "no-nonce",
        "wrong-nonce",
        "non-ascii-nonce",
    ],
)
async def test_tokens_breaking_oidc_core_are_refused(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    rsa_key: RSAKey,
    overrides: dict[str, Any],
    code: str,
) -> None:
    assert await refused(oauth, http, sign(rsa_key, id_claims(clock, overrides))) == code


@pytest.mark.anyio
async def test_a_numeric_nonce_does_not_match_its_string_form(
    oauth: OAuthClient, http: httpx2.AsyncClient, clock: FakeClock, rsa_key: RSAKey
) -> None:
    token = sign(rsa_key, id_claims(clock, {"nonce": 12345}))
    assert await refused(oauth, http, token, nonce="12345") == "id_token_nonce"


# --- at_hash -----------------------------------------------------------------------------------


def test_at_hash_matches_the_oidc_core_example() -> None:
    # OIDC Core 1.0 appendix A.3: this access token and its RS256 ID token's at_hash.
    assert access_token_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", "RS256") == (
        "77QmUPtjPfzWtF2AnpK9RQ"
    )


def test_at_hash_uses_the_hash_of_the_tokens_algorithm() -> None:
    lengths = {alg: len(access_token_hash("token", alg)) for alg in ("RS256", "ES384", "PS512")}
    # 16, 24 and 32 bytes of digest, base64url without padding.
    assert lengths == {"RS256": 22, "ES384": 32, "PS512": 43}
    with pytest.raises(ValueError, match="unsupported"):
        access_token_hash("token", "HS256")


@pytest.mark.anyio
@pytest.mark.parametrize("alg", ["RS256", "ES384", "ES512"])
async def test_at_hash_matching_the_access_token_is_accepted(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    rsa_key: RSAKey,
    ec_keys: dict[str, ECKey],
    alg: str,
) -> None:
    key = rsa_key if alg == "RS256" else ec_keys[alg]
    claims = id_claims(clock, {"at_hash": access_token_hash(ACCESS_TOKEN, alg)})
    token = sign(key, claims, alg=alg)
    assert await validate(oauth, http, token, access_token=ACCESS_TOKEN)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "at_hash",
    [
        access_token_hash("another-access-token", "RS256"),
        access_token_hash(ACCESS_TOKEN, "RS512"),  # right token, wrong hash for RS256
        12345,
        "",
    ],
    ids=["other-token", "wrong-hash", "number", "empty"],
)
async def test_at_hash_mismatch_is_refused(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    rsa_key: RSAKey,
    at_hash: object,
) -> None:
    token = sign(rsa_key, id_claims(clock, {"at_hash": at_hash}))
    assert await refused(oauth, http, token, access_token=ACCESS_TOKEN) == "id_token_at_hash"


@pytest.mark.anyio
async def test_at_hash_is_optional_in_the_code_flow(
    oauth: OAuthClient, http: httpx2.AsyncClient, clock: FakeClock, rsa_key: RSAKey
) -> None:
    token = sign(rsa_key, id_claims(clock))
    assert await validate(oauth, http, token, access_token=ACCESS_TOKEN)


# --- Microsoft's {tenantid} issuer ---------------------------------------------------------------


def microsoft(tenant: str | None = None) -> ProviderSpec:
    spec = build_spec("microsoft", name="microsoft", client_id=CLIENT_ID, tenant=tenant)
    return dataclasses.replace(spec, jwks_uri=JWKS_URI)


def ms_issuer(tenant: str) -> str:
    return f"https://login.microsoftonline.com/{tenant}/v2.0"


@pytest.mark.anyio
async def test_microsoft_multi_tenant_token_names_its_tenant_in_iss_and_tid(
    oauth: OAuthClient, http: httpx2.AsyncClient, clock: FakeClock, rsa_key: RSAKey
) -> None:
    good = id_claims(clock, {"iss": ms_issuer(TENANT), "tid": TENANT})
    assert await validate(oauth, http, sign(rsa_key, good), spec=microsoft())
    for overrides, code in [
        ({"iss": ms_issuer(TENANT), "tid": OTHER_TENANT}, "id_token_tenant"),
        ({"iss": ms_issuer(TENANT)}, "id_token_tenant"),
        ({"iss": "https://login.microsoftonline.com/{tenantid}/v2.0"}, "id_token_issuer"),
        ({"iss": "https://login.microsoftonline.com/common/v2.0"}, "id_token_issuer"),
    ]:
        token = sign(rsa_key, id_claims(clock, overrides))
        assert await refused(oauth, http, token, spec=microsoft()) == code


@pytest.mark.anyio
async def test_microsoft_organizations_refuses_personal_accounts(
    oauth: OAuthClient, http: httpx2.AsyncClient, clock: FakeClock, rsa_key: RSAKey
) -> None:
    consumer = MICROSOFT_CONSUMERS_TENANT_ID
    token = sign(rsa_key, id_claims(clock, {"iss": ms_issuer(consumer), "tid": consumer}))
    assert await validate(oauth, http, token, spec=microsoft("common"))
    assert await refused(oauth, http, token, spec=microsoft("organizations")) == "id_token_issuer"


@pytest.mark.anyio
async def test_microsoft_single_tenant_needs_its_own_issuer(
    oauth: OAuthClient, http: httpx2.AsyncClient, clock: FakeClock, rsa_key: RSAKey
) -> None:
    spec = microsoft(TENANT)
    assert await validate(
        oauth, http, sign(rsa_key, id_claims(clock, {"iss": ms_issuer(TENANT)})), spec=spec
    )
    token = sign(rsa_key, id_claims(clock, {"iss": ms_issuer(OTHER_TENANT), "tid": OTHER_TENANT}))
    assert await refused(oauth, http, token, spec=spec) == "id_token_issuer"


# --- algorithms and keys -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_alg_none_is_refused_without_a_key_lookup(
    oauth: OAuthClient, http: httpx2.AsyncClient, clock: FakeClock, server: JwksServer
) -> None:
    token = f"{b64json({'alg': 'none'})}.{b64json(id_claims(clock))}."
    assert await refused(oauth, http, token) == "id_token_algorithm"
    assert server.fetches == 0


@pytest.mark.anyio
async def test_hs256_signed_with_the_public_key_is_refused(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    rsa_key: RSAKey,
    server: JwksServer,
) -> None:
    # The classic confusion: the attacker knows the public key and uses it as an HMAC secret.
    public = json.dumps(rsa_key.as_dict(private=False)).encode()
    token = sign(OctKey.import_key(public), id_claims(clock), alg="HS256", kid="rsa-1")
    assert await refused(oauth, http, token) == "id_token_algorithm"
    assert server.fetches == 0


@pytest.mark.anyio
async def test_symmetric_and_unusable_jwks_entries_are_ignored(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    rsa_key: RSAKey,
    server: JwksServer,
) -> None:
    secret = OctKey.generate_key(256, parameters={"kid": "oct-1"})
    with pytest.warns(SecurityWarning):
        small = RSAKey.generate_key(1024, parameters={"kid": "rsa-small"})
    server.keys = [
        dict(secret.as_dict(private=True)),
        {**dict(rsa_key.as_dict(private=False)), "kid": "rsa-enc", "use": "enc"},
        dict(small.as_dict(private=False)),
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        "not-a-key",
        dict(rsa_key.as_dict(private=False)),
    ]
    assert await validate(oauth, http, sign(rsa_key, id_claims(clock)))
    forged = sign(secret, id_claims(clock), alg="HS256")
    assert await refused(oauth, http, forged) == "id_token_algorithm"
    for kid, key in [("rsa-enc", rsa_key), ("rsa-small", small)]:
        clock.advance(61)
        assert await refused(oauth, http, sign(key, id_claims(clock), kid=kid)) == (
            "id_token_unknown_key"
        )


@pytest.mark.anyio
async def test_unknown_kid_is_refused(
    oauth: OAuthClient, http: httpx2.AsyncClient, clock: FakeClock, attacker_key: RSAKey
) -> None:
    token = sign(attacker_key, id_claims(clock), kid="kid-nobody-has")
    assert await refused(oauth, http, token) == "id_token_unknown_key"


@pytest.mark.anyio
async def test_signature_by_another_key_with_the_same_kid_is_refused(
    oauth: OAuthClient, http: httpx2.AsyncClient, clock: FakeClock, attacker_key: RSAKey
) -> None:
    assert await refused(oauth, http, sign(attacker_key, id_claims(clock))) == "id_token_signature"


@pytest.mark.anyio
async def test_ec_algorithm_with_an_rsa_kid_is_refused(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    ec_keys: dict[str, ECKey],
) -> None:
    token = sign(ec_keys["ES256"], id_claims(clock), alg="ES256", kid="rsa-1")
    assert await refused(oauth, http, token) in {"id_token_malformed", "id_token_signature"}


@pytest.mark.anyio
@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "\u00e9.\u00e9.\u00e9"])
async def test_malformed_tokens_are_refused_without_fetching_keys(
    oauth: OAuthClient, http: httpx2.AsyncClient, server: JwksServer, token: str
) -> None:
    assert await refused(oauth, http, token) == "id_token_malformed"
    assert server.fetches == 0


# --- the JWKS cache: throttled, coalesced, fail-closed ------------------------------------------


@pytest.mark.anyio
async def test_failed_decodes_refetch_the_jwks_at_most_once_per_interval(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    rsa_key: RSAKey,
    attacker_key: RSAKey,
    server: JwksServer,
) -> None:
    assert await validate(oauth, http, sign(rsa_key, id_claims(clock)))
    assert server.fetches == 1
    clock.advance(61)
    for n in range(5):
        await refused(oauth, http, sign(attacker_key, id_claims(clock), kid=f"forged-{n}"))
        await refused(oauth, http, sign(attacker_key, id_claims(clock)))
        clock.advance(5)
    assert server.fetches == 2  # the first use, then one refetch in the 60 s interval
    clock.advance(60)
    await refused(oauth, http, sign(attacker_key, id_claims(clock), kid="forged-late"))
    assert server.fetches == 3


@pytest.mark.anyio
async def test_concurrent_failing_decodes_share_one_fetch(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    rsa_key: RSAKey,
    attacker_key: RSAKey,
    server: JwksServer,
) -> None:
    assert await validate(oauth, http, sign(rsa_key, id_claims(clock)))
    clock.advance(61)
    server.delay = 0.05
    codes: list[str] = []

    async def forged(n: int) -> None:
        codes.append(await refused(oauth, http, sign(attacker_key, id_claims(clock), kid=f"f{n}")))

    async with anyio.create_task_group() as tasks:
        for n in range(10):
            tasks.start_soon(forged, n)
    assert codes == ["id_token_unknown_key"] * 10
    assert server.fetches == 2


@pytest.mark.anyio
async def test_concurrent_first_uses_share_one_fetch(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    rsa_key: RSAKey,
    server: JwksServer,
) -> None:
    server.delay = 0.05
    token = sign(rsa_key, id_claims(clock))
    async with anyio.create_task_group() as tasks:
        for _ in range(10):
            tasks.start_soon(validate, oauth, http, token)
    assert server.fetches == 1


@pytest.mark.anyio
async def test_rotated_key_is_picked_up_by_one_refetch(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    rsa_key: RSAKey,
    rotated_key: RSAKey,
    server: JwksServer,
) -> None:
    assert await validate(oauth, http, sign(rsa_key, id_claims(clock)))
    clock.advance(61)  # a fetch just made is not repeated: see the throttling tests
    server.keys = [dict(rotated_key.as_dict(private=False))]
    assert await validate(oauth, http, sign(rotated_key, id_claims(clock)))
    assert server.fetches == 2
    # The withdrawn key is gone from the cache.
    clock.advance(61)
    assert await refused(oauth, http, sign(rsa_key, id_claims(clock))) == "id_token_unknown_key"


@pytest.mark.anyio
async def test_a_jwks_endpoint_that_is_down_keeps_cached_keys_working(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    rsa_key: RSAKey,
    attacker_key: RSAKey,
    server: JwksServer,
) -> None:
    assert await validate(oauth, http, sign(rsa_key, id_claims(clock)))
    server.status = 503
    clock.advance(61)
    await refused(oauth, http, sign(attacker_key, id_claims(clock), kid="forged"))
    assert server.fetches == 2  # the refetch failed: fail closed
    assert await validate(oauth, http, sign(rsa_key, id_claims(clock)))
    clock.advance(2 * 3600)  # past the keys' maximum age: a refresh is tried, and fails
    assert await validate(oauth, http, sign(rsa_key, id_claims(clock)))
    assert await validate(oauth, http, sign(rsa_key, id_claims(clock)))
    assert server.fetches == 3


@pytest.mark.anyio
async def test_keys_are_refreshed_after_an_hour_so_withdrawn_keys_stop_working(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    rsa_key: RSAKey,
    rotated_key: RSAKey,
    server: JwksServer,
) -> None:
    assert await validate(oauth, http, sign(rsa_key, id_claims(clock)))
    server.keys = [dict(rotated_key.as_dict(private=False))]
    clock.advance(3601)
    assert await refused(oauth, http, sign(rsa_key, id_claims(clock))) == "id_token_unknown_key"
    assert server.fetches == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    "failure", ["status", "not-json", "no-keys", "too-large"], ids=lambda f: str(f)
)
async def test_no_keys_at_first_use_is_unavailable_and_not_retried_at_once(
    oauth: OAuthClient,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    rsa_key: RSAKey,
    server: JwksServer,
    failure: str,
) -> None:
    if failure == "status":
        server.status = 500
    elif failure == "not-json":
        server.body = b"<html>"
    elif failure == "no-keys":
        server.body = b'{"keys": []}'
    else:
        server.body = json.dumps({"keys": server.keys, "pad": "x" * 300_000}).encode()
    token = sign(rsa_key, id_claims(clock))
    for _ in range(3):
        with pytest.raises(ProviderError) as caught:
            await validate(oauth, http, token)
        assert (caught.value.kind, caught.value.code) == ("unavailable", "jwks")
    assert server.fetches == 1
    server.status, server.body = 200, None
    clock.advance(61)
    assert await validate(oauth, http, sign(rsa_key, id_claims(clock)))
    assert server.fetches == 2


@pytest.mark.anyio
async def test_keys_are_cached_per_jwks_uri(
    oauth: OAuthClient, clock: FakeClock, rsa_key: RSAKey, rotated_key: RSAKey
) -> None:
    served = {"a.example.com": rsa_key, "b.example.com": rotated_key}
    hosts: list[str] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        hosts.append(request.url.host)
        key = served[request.url.host]
        return httpx2.Response(200, json={"keys": [dict(key.as_dict(private=False))]})

    specs = {
        host: oidc_spec(issuer=f"https://{host}", jwks_uri=f"https://{host}/jwks")
        for host in served
    }
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handle)) as http:
        for _ in range(2):
            for host, key in served.items():
                claims = id_claims(clock, {"iss": f"https://{host}"})
                assert await validate(oauth, http, sign(key, claims), spec=specs[host])
        # A token for one provider signed by the other's key is refused.
        claims = id_claims(clock, {"iss": "https://a.example.com"})
        token = sign(rotated_key, claims)
        assert await refused(oauth, http, token, spec=specs["a.example.com"]) == (
            "id_token_unknown_key"
        )
    assert sorted(hosts) == ["a.example.com", "b.example.com"]


@pytest.mark.anyio
async def test_a_redirecting_jwks_endpoint_is_not_followed(
    oauth: OAuthClient, clock: FakeClock, rsa_key: RSAKey
) -> None:
    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.url.host == "evil.example.com":
            return httpx2.Response(200, json={"keys": [dict(rsa_key.as_dict(private=False))]})
        return httpx2.Response(302, headers={"location": "https://evil.example.com/jwks"})

    async with httpx2.AsyncClient(
        transport=httpx2.MockTransport(handle), follow_redirects=True
    ) as http:
        with pytest.raises(ProviderError) as caught:
            await validate(oauth, http, sign(rsa_key, id_claims(clock)))
    assert caught.value.code == "jwks"


# --- the fake provider's ID tokens -------------------------------------------------------------


@pytest.mark.anyio
async def test_fake_provider_id_tokens_carry_sub_iat_and_a_matching_at_hash() -> None:
    provider = FakeProvider(issuer="https://provider.test")
    body = provider.issue_token_for("alice@provider", ["openid", "read"])
    spec = oidc_spec(
        client_id=provider.client_id,
        issuer=provider.issuer,
        jwks_uri=f"{provider.issuer}/jwks",
    )
    transport = httpx2.ASGITransport(app=provider.app())
    async with httpx2.AsyncClient(transport=transport) as http:
        claims = await OAuthClient().validate_id_token(
            spec, body["id_token"], nonce=None, http=http, access_token=body["access_token"]
        )
        assert claims["sub"] == "alice@provider"
        assert isinstance(claims["iat"], int)
        assert claims["at_hash"] == access_token_hash(body["access_token"], "RS256")
        with pytest.raises(ProviderError) as caught:
            await OAuthClient().validate_id_token(
                spec, body["id_token"], nonce=None, http=http, access_token="another-token"
            )
        assert caught.value.code == "id_token_at_hash"


# --- through the binder: a refused ID token fails the callback and stores nothing ----------------


@pytest.mark.parametrize(
    ("extra_claims", "reason"),
    [
        ({"sub": ""}, "exchange_id_token_subject"),
        ({"iat": "now"}, "exchange_id_token_iat"),
        ({"aud": [PROVIDER_CLIENT_ID, "another-client"]}, "exchange_id_token_azp"),
        ({"azp": "another-client"}, "exchange_id_token_azp"),
    ],
    ids=["empty-sub", "text-iat", "several-aud-without-azp", "foreign-azp"],
)
def test_callback_with_an_id_token_breaking_oidc_core_stores_nothing(
    binder: Harness,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    extra_claims: dict[str, Any],
    reason: str,
) -> None:
    mint = binder.provider.id_token_for

    def broken(subject: str, **kwargs: Any) -> str:
        kwargs["extra_claims"] = {**(kwargs.get("extra_claims") or {}), **extra_claims}
        return mint(subject, **kwargs)

    monkeypatch.setattr(binder.provider, "id_token_for", broken)
    alice = binder.cognito.token("alice")
    caplog.set_level(logging.INFO, logger="binder.audit")
    refused = binder.connect(alice)
    assert refused.status_code == 400
    assert binder.stored_secret_names() == []
    failures = [
        fields.get("reason")
        for fields in (getattr(r, "fields", {}) for r in caplog.records)
        if fields.get("audit") == "authorization_failed"
    ]
    assert failures == [reason]
