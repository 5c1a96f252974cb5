"""OpenID Connect ID token validation (OIDC Core 1.0, sections 3.1.3.7 and 3.1.3.8).

The ID token proves which account at the provider the user consented with. Its claims are
checked by joserfc's `JWTClaimsRegistry`, extended with the OIDC rules joserfc does not know
(issuer templates and aliases, `azp`, `nonce`, `at_hash`, Microsoft's `tid`), rather than by
hand-written comparisons. A refusal is an `IdTokenError` with a fixed code that is safe to log
and show: never any part of the token.

Provider keys are cached per `jwks_uri`. A token whose `kid` is unknown or whose signature fails
causes one refetch (the provider may have rotated its keys), at most once per
`min_refetch_interval` per endpoint and shared by every validation waiting on it, so forged
tokens cannot make the binder hammer a provider. As in `svc_common.identity`, an endpoint that
is down leaves the cached keys working; a token no fetched key verifies is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import httpx2
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import ECKey, KeySet, RSAKey

from binder.providers.spec import ProviderSpec
from svc_common.fetch import FetchFailed, RefetchThrottle, get_capped

logger = logging.getLogger(__name__)

# Asymmetric signatures only: the key always comes from the provider's JWKS, so HS* (keyed with
# something an attacker can know) and `none` are never right. The *384 and *512 members of the
# RS, PS and ES families are accepted too: OIDC discovery lets a provider choose them, they use
# the same key types, and joserfc checks key type and curve against the algorithm. EdDSA is not
# accepted: no major provider signs ID tokens with it, and its at_hash hash depends on the curve.
ID_TOKEN_ALGORITHMS: Final = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
)
LEEWAY_SECONDS: Final = 60
JWKS_REFETCH_INTERVAL_SECONDS: Final = 60.0
# Keys are refreshed this often even without a failure, so a key the provider has withdrawn
# (after a compromise, say) stops being trusted; a failed refresh keeps the old keys.
JWKS_MAX_AGE_SECONDS: Final = 3600.0
# Microsoft's key set, x5c chains included, is about 20 KiB; this bounds a hostile answer.
MAX_JWKS_BYTES: Final = 256 * 1024
MIN_RSA_BITS: Final = 2048

# Only public members are imported: a JWKS that leaked private parts must not make us hold them.
_PUBLIC_MEMBERS: Final = {
    "RSA": ("kty", "kid", "use", "alg", "n", "e"),
    "EC": ("kty", "kid", "use", "alg", "crv", "x", "y"),
}
# One code per claim, for a missing claim and a wrong one alike.
_CLAIM_CODES: Final = {
    "iss": "id_token_issuer",
    "aud": "id_token_audience",
    "sub": "id_token_subject",
    "exp": "id_token_exp",
    "iat": "id_token_iat",
    "nbf": "id_token_not_yet_valid",
    "nonce": "id_token_nonce",
    "azp": "id_token_azp",
    "at_hash": "id_token_at_hash",
    "tid": "id_token_tenant",
}
REJECTION_CODES: Final = frozenset(
    {
        *_CLAIM_CODES.values(),
        "id_token_expired",
        "id_token_claims",
        "id_token_malformed",
        "id_token_algorithm",
        "id_token_unknown_key",
        "id_token_signature",
        "no_jwks_uri",
    }
)


class IdTokenError(Exception):
    """`kind` is "rejected" (the token is refused) or "unavailable" (no keys could be fetched);
    `code` is a fixed, loggable word, so no part of a token can reach a message."""

    def __init__(self, kind: str, code: str) -> None:
        if code not in REJECTION_CODES and code != "jwks":
            raise ValueError("unknown IdTokenError code")
        super().__init__(f"id token {kind}: {code}")
        self.kind = kind
        self.code = code


def access_token_hash(access_token: str, alg: str) -> str:
    """OIDC Core 3.1.3.6 `at_hash`: base64url of the left-most half of the access token's hash,
    hashed with the hash of the ID token's own `alg` (SHA-256, -384 or -512 after its suffix).

    Written here rather than taken from authlib: its helper lives in `authlib.oidc.core`, whose
    package imports the deprecated `authlib.jose`, and it guesses a hash for any `alg` name.
    """
    if alg not in ID_TOKEN_ALGORITHMS:
        raise ValueError("unsupported algorithm")
    digest = hashlib.new(f"sha{alg[2:]}", access_token.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


class IdTokenClaims(jwt.JWTClaimsRegistry):
    """joserfc's registry with the OIDC Core rules for an ID token from the code flow.

    Essential: `iss` (the provider's, through `ProviderSpec.issuer_matches`), `sub`, `aud`
    (containing our client ID), `exp` and `iat` (numeric; `iat` not in the future beyond the
    leeway), and `nonce` when one was sent. Several audiences need `azp`; an `azp` must be our
    client ID; an `at_hash` must match the access token of the same response when it is given.
    """

    def __init__(
        self,
        spec: ProviderSpec,
        *,
        now: int,
        leeway: int,
        alg: str,
        nonce: str | None,
        access_token: str | None,
    ) -> None:
        super().__init__(
            now=now,
            leeway=leeway,
            iss={"essential": True},
            sub={"essential": True},
            aud={"essential": True, "value": spec.client_id},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": nonce is not None},
        )
        self._spec = spec
        self._alg = alg
        self._nonce = nonce
        self._access_token = access_token

    def validate(self, claims: dict[str, Any]) -> None:
        super().validate(claims)
        audience = claims["aud"]
        if isinstance(audience, list) and len(set(audience)) > 1 and "azp" not in claims:
            raise InvalidClaimError("azp")
        spec = self._spec
        tenant = spec.issuer_tenant(claims["iss"])
        if tenant is not None and claims.get("tid") != tenant:
            # A templated issuer's {tenantid} (Microsoft's common and organizations) must be
            # the tenant that signed the user in, which the token names in `tid` (what
            # Microsoft's own validators compare).
            raise InvalidClaimError("tid")

    def validate_iss(self, value: object) -> None:
        if not isinstance(value, str) or not self._spec.issuer_matches(value):
            raise InvalidClaimError("iss")

    def validate_azp(self, value: object) -> None:
        if value != self._spec.client_id:
            raise InvalidClaimError("azp")

    def validate_nonce(self, value: object) -> None:
        if self._nonce is None:
            return
        # Constant time, on bytes: compare_digest refuses non-ASCII str with a TypeError.
        if not isinstance(value, str) or not hmac.compare_digest(
            value.encode("utf-8"), self._nonce.encode("utf-8")
        ):
            raise InvalidClaimError("nonce")

    def validate_at_hash(self, value: object) -> None:
        if self._access_token is None:
            return
        expected = access_token_hash(self._access_token, self._alg)
        if not isinstance(value, str) or not hmac.compare_digest(
            value.encode("utf-8"), expected.encode("ascii")
        ):
            raise InvalidClaimError("at_hash")


@dataclass
class _KeyCache:
    """The keys of one `jwks_uri`. `generation` grows with each successful fetch, which tells a
    validation whether someone else refetched while it was waiting for the lock."""

    throttle: RefetchThrottle
    keys: KeySet | None = None
    fetched_at: float | None = None
    generation: int = 0
    lock: anyio.Lock = field(default_factory=anyio.Lock)


class IdTokenValidator:
    """Validates ID tokens against their provider's JWKS, with a throttled, fail-closed cache."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        leeway_seconds: int = LEEWAY_SECONDS,
        min_refetch_interval: float = JWKS_REFETCH_INTERVAL_SECONDS,
        max_key_age: float = JWKS_MAX_AGE_SECONDS,
    ) -> None:
        if leeway_seconds < 0 or min_refetch_interval < 0 or max_key_age < 0:
            raise ValueError("leeway, refetch interval and key age must not be negative")
        self._timeout = timeout
        self._clock = clock
        self._leeway = leeway_seconds
        self._min_refetch_interval = min_refetch_interval
        self._max_key_age = max_key_age
        self._caches: dict[str, _KeyCache] = {}

    async def validate(
        self,
        spec: ProviderSpec,
        id_token: str,
        *,
        nonce: str | None,
        access_token: str | None,
        http: httpx2.AsyncClient,
    ) -> dict[str, Any]:
        """The verified claims of `id_token`, or IdTokenError.

        `access_token` is the one from the same token response; when given, an `at_hash` in the
        token must match it. Cheap header checks run before any key is fetched.
        """
        if not spec.jwks_uri:
            raise IdTokenError("rejected", "no_jwks_uri")
        alg = _algorithm(id_token)
        cache = self._caches.get(spec.jwks_uri)
        if cache is None:
            throttle = RefetchThrottle(self._min_refetch_interval, self._clock)
            cache = self._caches[spec.jwks_uri] = _KeyCache(throttle=throttle)
        keys, generation = await self._current_keys(cache, spec.jwks_uri, http)
        try:
            token = _decode(id_token, keys)
        except (InvalidKeyIdError, BadSignatureError):
            # Perhaps rotated keys: one shared, throttled refetch, then fail closed.
            fresh = await self._refetched_keys(cache, spec.jwks_uri, http, generation)
            if fresh is None:
                raise IdTokenError("rejected", _failure_code(id_token, keys)) from None
            try:
                token = _decode(id_token, fresh)
            except (InvalidKeyIdError, BadSignatureError):
                raise IdTokenError("rejected", _failure_code(id_token, fresh)) from None
        registry = IdTokenClaims(
            spec,
            now=int(self._clock()),
            leeway=self._leeway,
            alg=alg,
            nonce=nonce,
            access_token=access_token,
        )
        try:
            registry.validate(token.claims)
        except ExpiredTokenError:
            raise IdTokenError("rejected", "id_token_expired") from None
        except MissingClaimError as exc:
            first = exc.claim.split(",")[0]
            raise IdTokenError("rejected", _CLAIM_CODES.get(first, "id_token_claims")) from None
        except ClaimError as exc:
            raise IdTokenError("rejected", _CLAIM_CODES.get(exc.claim, "id_token_claims")) from None
        return dict(token.claims)

    # -- keys ------------------------------------------------------------------------------

    async def _current_keys(
        self, cache: _KeyCache, url: str, http: httpx2.AsyncClient
    ) -> tuple[KeySet, int]:
        if cache.keys is not None and not self._stale(cache):
            return cache.keys, cache.generation
        async with cache.lock:
            # Another validation may have fetched while this one waited.
            if (cache.keys is None or self._stale(cache)) and cache.throttle.may_fetch():
                await self._fetch(cache, url, http)
            if cache.keys is None:
                raise IdTokenError("unavailable", "jwks")
            return cache.keys, cache.generation

    async def _refetched_keys(
        self, cache: _KeyCache, url: str, http: httpx2.AsyncClient, seen: int
    ) -> KeySet | None:
        """Keys newer than generation `seen`, fetching them if allowed; None if there are none."""
        async with cache.lock:
            if cache.generation == seen and cache.throttle.may_fetch():
                await self._fetch(cache, url, http)
            return cache.keys if cache.generation != seen else None

    def _stale(self, cache: _KeyCache) -> bool:
        if cache.fetched_at is None:
            return True
        age = self._clock() - cache.fetched_at
        return not 0 <= age < self._max_key_age

    async def _fetch(self, cache: _KeyCache, url: str, http: httpx2.AsyncClient) -> None:
        """Replace the cached keys from the JWKS; on any failure keep the old ones."""
        cache.throttle.attempted()
        body: bytes | None = None
        with anyio.move_on_after(self._timeout * 2) as deadline:
            body = await self._download(url, http)
        if deadline.cancelled_caught:
            _warn(url, "timeout")
            return
        if body is None:
            return
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            _warn(url, "invalid_json")
            return
        entries = document.get("keys") if isinstance(document, dict) else None
        keys = _signing_keys(entries) if isinstance(entries, list) else None
        if keys is None:
            _warn(url, "no_usable_keys")
            return
        cache.keys = keys
        cache.fetched_at = self._clock()
        cache.generation += 1

    async def _download(self, url: str, http: httpx2.AsyncClient) -> bytes | None:
        try:
            return await get_capped(http, url, timeout=self._timeout, max_bytes=MAX_JWKS_BYTES)
        except FetchFailed as exc:
            _warn(url, exc.reason)
            return None


def _algorithm(id_token: str) -> str:
    """The header's `alg`, refused unless allowed: `none` and HS* never reach a key lookup."""
    if not isinstance(id_token, str):
        raise IdTokenError("rejected", "id_token_malformed")
    try:
        header = jws.extract_compact(id_token.encode("ascii")).headers()
    except (JoseError, ValueError, TypeError, UnicodeEncodeError):
        raise IdTokenError("rejected", "id_token_malformed") from None
    alg = header.get("alg")
    if alg not in ID_TOKEN_ALGORITHMS:
        raise IdTokenError("rejected", "id_token_algorithm")
    return str(alg)


def _decode(id_token: str, keys: KeySet) -> jwt.Token:
    """Signature check; InvalidKeyIdError and BadSignatureError propagate (they may mean rotated
    keys), every other failure is a malformed token."""
    try:
        return jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS))
    except (InvalidKeyIdError, BadSignatureError):
        raise
    except (JoseError, ValueError, TypeError):
        raise IdTokenError("rejected", "id_token_malformed") from None


def _failure_code(id_token: str, keys: KeySet) -> str:
    """The code for a token no key verifies: an unknown kid, or a bad signature."""
    try:
        kid = jws.extract_compact(id_token.encode("ascii")).headers().get("kid")
    except (JoseError, ValueError, TypeError, UnicodeEncodeError):
        return "id_token_malformed"
    if kid is None:
        # Without a kid, a set of several keys cannot say which one signed.
        return "id_token_unknown_key" if len(keys.keys) > 1 else "id_token_signature"
    return "id_token_signature" if any(k.kid == kid for k in keys) else "id_token_unknown_key"


def _signing_keys(entries: list[Any]) -> KeySet | None:
    """The RSA (at least 2048 bits) and EC signature keys of a JWKS, public members only;
    entries that are not usable for ID token signatures are skipped, not fatal."""
    keys: list[RSAKey | ECKey] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        kty = entry.get("kty")
        members = _PUBLIC_MEMBERS.get(kty) if isinstance(kty, str) else None
        if members is None or entry.get("use", "sig") != "sig":
            continue
        if entry.get("alg", ID_TOKEN_ALGORITHMS[0]) not in ID_TOKEN_ALGORITHMS:
            continue
        public = {name: entry[name] for name in members if name in entry}
        try:
            if kty == "RSA":
                if _rsa_bits(public.get("n")) < MIN_RSA_BITS:
                    continue
                keys.append(RSAKey.import_key(public))
            else:
                keys.append(ECKey.import_key(public))
        except (JoseError, ValueError, TypeError, KeyError):
            continue
    return KeySet(list(keys)) if keys else None


def _rsa_bits(modulus: object) -> int:
    if not isinstance(modulus, str):
        return 0
    try:
        raw = base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))
    except (binascii.Error, ValueError):
        return 0
    return int.from_bytes(raw, "big").bit_length()


def _warn(url: str, status: int | str) -> None:
    logger.warning(
        "ID token JWKS fetch from %s failed: %s",
        url,
        status,
        extra={"fields": {"jwks_url": url, "status": status}},
    )
