"""Verify Cognito access tokens: the only source of user identity in both services.

Identity headers are never trusted on their own: every token's RS256 signature is checked
against the user pool's JWKS, then its issuer, lifetime, `token_use` and `client_id`. The user
key is `iss|sub`. Refusals carry a short reason code and never any part of the token, so they
are safe to log and to return in a 401 body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import anyio
import httpx2
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import RSAKey

from svc_common.fetch import FetchFailed, RefetchThrottle, get_capped

logger = logging.getLogger(__name__)

MAX_TOKEN_CHARS = 8192
ALGORITHM = "RS256"
ALB_TOKEN_HEADER = "x-amzn-oidc-accesstoken"  # noqa: S105 -- a header name
JWKS_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 64 * 1024
MIN_RSA_BITS = 2048

REASONS = frozenset(
    {
        "missing",
        "malformed",
        "too_large",
        "unsupported_algorithm",
        "unknown_key",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_client",
        "not_an_access_token",
        "missing_claim",
        "ambiguous",
        "jwks_unavailable",
    }
)

_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class InvalidToken(Exception):
    """Raised for any token that must be refused.

    `reason` is a short, safe code for logs and 401 bodies (never contains the token). Only the
    codes in REASONS are accepted, so a token cannot reach a message by mistake.
    """

    reason: str

    def __init__(self, reason: str) -> None:
        if reason not in REASONS:
            raise ValueError("unknown InvalidToken reason")
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class VerifiedUser:
    """The caller, as proven by a verified access token."""

    issuer: str
    subject: str
    client_id: str
    username: str | None
    scopes: tuple[str, ...]
    expires_at: int

    @property
    def user_key(self) -> str:
        """`iss` + `sub`: `sub` is only unique within one user pool."""
        return f"{self.issuer}|{self.subject}"

    @cached_property
    def user_hash(self) -> str:
        """SHA-256 of the user key, for logs and resource names (no identifiers in them)."""
        return hashlib.sha256(self.user_key.encode("utf-8")).hexdigest()


def token_from_headers(headers: Mapping[str, str]) -> str:
    """Bearer token from `Authorization: Bearer <t>` or, behind the ALB, `x-amzn-oidc-accesstoken`.

    Raises InvalidToken("missing") if neither is present, ("ambiguous") if both are present with
    different values (or one is repeated with different values), ("malformed") for a scheme
    other than Bearer. Names are matched case-insensitively, whatever the mapping type.
    """
    found: dict[str, set[str]] = {"authorization": set(), ALB_TOKEN_HEADER: set()}
    for name, value in headers.items():
        key = name.lower()
        if key in found and value.strip():
            found[key].add(value.strip())

    tokens: set[str] = set(found[ALB_TOKEN_HEADER])
    for value in found["authorization"]:
        parts = value.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise InvalidToken("malformed")
        tokens.add(parts[1])

    if not tokens:
        raise InvalidToken("missing")
    if len(tokens) > 1:
        raise InvalidToken("ambiguous")
    return tokens.pop()


class CognitoVerifier:
    """Checks Cognito access tokens against the user pool's JWKS, with a fail-closed key cache.

    Keys are fetched once and kept. A token with an unknown `kid` triggers a refetch (key
    rotation), at most once per `min_refetch_interval` seconds, so forged `kid`s cannot make us
    hammer the JWKS endpoint. When the endpoint is down, cached keys keep working.
    """

    def __init__(
        self,
        *,
        issuer: str,
        client_ids: Collection[str],
        http: httpx2.AsyncClient,
        jwks_url: str | None = None,
        leeway_seconds: int = 30,
        min_refetch_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        verified_cache_size: int = 4096,
    ) -> None:
        if not issuer:
            raise ValueError("issuer is required")
        # Empty strings are dropped: a token without a client id must never match one.
        allowed = frozenset(c for c in client_ids if c) if not isinstance(client_ids, str) else None
        if not allowed:
            raise ValueError("client_ids must be a non-empty collection of client ids")
        if leeway_seconds < 0 or min_refetch_interval < 0:
            raise ValueError("leeway_seconds and min_refetch_interval must not be negative")
        self._issuer = issuer
        self._client_ids = allowed
        self._http = http
        self._jwks_url = jwks_url or f"{issuer}/.well-known/jwks.json"
        self._leeway = leeway_seconds
        self._clock = clock
        self._keys: dict[str, RSAKey] = {}
        # Tokens already verified, until they expire: an agent forwards the same user token
        # on every tool call, and the signature check is most of a hot request's cost.
        self._verified: OrderedDict[str, VerifiedUser] = OrderedDict()
        self._verified_max = verified_cache_size
        self._fetched_once = False
        self._throttle = RefetchThrottle(min_refetch_interval, clock)
        self._lock = anyio.Lock()

    async def preload(self) -> None:
        """Fetch the JWKS once at start. Failures are logged, not raised: tokens then fail with
        "jwks_unavailable" until a fetch succeeds (retried once the refetch interval passes)."""
        async with self._lock:
            await self._fetch()

    async def verify(self, token: str) -> VerifiedUser:
        """The verified caller, or InvalidToken. Cheap checks run before any key lookup."""
        if not isinstance(token, str):
            raise InvalidToken("malformed")
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("too_large")
        cached = self._verified.get(token)
        if cached is not None:
            if self._clock() <= cached.expires_at + self._leeway:
                self._verified.move_to_end(token)
                return cached
            del self._verified[token]
        user = await self._verify_uncached(token)
        if self._verified_max > 0:
            self._verified[token] = user
            while len(self._verified) > self._verified_max:
                self._verified.popitem(last=False)
        return user

    async def _verify_uncached(self, token: str) -> VerifiedUser:
        parts = token.split(".")
        if len(parts) != 3 or not all(_B64URL.fullmatch(p) for p in parts[:2]):
            raise InvalidToken("malformed")
        header = _json_object(_b64decode(parts[0]))
        # Allow-list of one: rejects `none`, HMAC with the public key as secret, and the rest.
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unsupported_algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or "crit" in header:
            raise InvalidToken("malformed")
        if not _B64URL.fullmatch(parts[2]):
            raise InvalidToken("malformed")

        key = await self._key_for(kid)
        try:
            signed = jws.deserialize_compact(token, key, algorithms=[ALGORITHM])
        except BadSignatureError:
            raise InvalidToken("bad_signature") from None
        except (JoseError, ValueError, TypeError):
            raise InvalidToken("malformed") from None
        return self._check_claims(_json_object(signed.payload))

    def _check_claims(self, claims: dict[str, Any]) -> VerifiedUser:
        if claims.get("iss") != self._issuer:
            raise InvalidToken("wrong_issuer")
        if claims.get("token_use") != "access":
            raise InvalidToken("not_an_access_token")
        client_id = claims.get("client_id")
        if not isinstance(client_id, str) or client_id not in self._client_ids:
            raise InvalidToken("wrong_client")

        now = self._clock()
        exp = _time_claim(claims, "exp")
        if exp is None:
            raise InvalidToken("missing_claim")
        if now > exp + self._leeway:
            raise InvalidToken("expired")
        nbf = _time_claim(claims, "nbf")
        if nbf is not None and now < nbf - self._leeway:
            raise InvalidToken("not_yet_valid")
        iat = _time_claim(claims, "iat")
        if iat is not None and iat > now + self._leeway:
            raise InvalidToken("not_yet_valid")

        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise InvalidToken("missing_claim")
        username = claims.get("username", claims.get("cognito:username"))
        scope = claims.get("scope")
        return VerifiedUser(
            issuer=self._issuer,
            subject=subject,
            client_id=client_id,
            username=username if isinstance(username, str) else None,
            scopes=tuple(scope.split()) if isinstance(scope, str) else (),
            expires_at=int(exp),
        )

    async def _key_for(self, kid: str) -> RSAKey:
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            # Another task may have fetched while this one waited: one fetch serves them all.
            key = self._keys.get(kid)
            if key is None and self._throttle.may_fetch():
                await self._fetch()
                key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown_key" if self._fetched_once else "jwks_unavailable")
        return key

    async def _fetch(self) -> None:
        """Replace the key cache from the JWKS; on any failure keep the old keys."""
        self._throttle.attempted()
        body: bytes | None = None
        with anyio.move_on_after(JWKS_TIMEOUT_SECONDS * 2) as deadline:
            body = await self._download()
        if deadline.cancelled_caught:
            self._warn("timeout")
            return
        if body is None:
            return
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            self._warn("invalid_json")
            return
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            self._warn("invalid_jwks")
            return
        self._keys = _signing_keys(document["keys"])
        self._fetched_once = True

    async def _download(self) -> bytes | None:
        try:
            return await get_capped(
                self._http, self._jwks_url, timeout=JWKS_TIMEOUT_SECONDS, max_bytes=MAX_JWKS_BYTES
            )
        except FetchFailed as exc:
            self._warn(exc.reason)
            return None

    def _warn(self, status: int | str) -> None:
        logger.warning(
            "JWKS fetch from %s failed: %s",
            self._jwks_url,
            status,
            extra={"fields": {"jwks_url": self._jwks_url, "status": status}},
        )


def _b64decode(segment: str) -> bytes:
    if len(segment) % 4 == 1:
        raise InvalidToken("malformed")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed") from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError("non-finite number")


def _json_object(data: bytes) -> dict[str, Any]:
    """Strict JSON: duplicate names or NaN/Infinity would let two parsers read different claims."""
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidToken("malformed") from None
    if not isinstance(value, dict):
        raise InvalidToken("malformed")
    return value


def _time_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken("malformed")
    return float(value)


def _signing_keys(entries: list[Any]) -> dict[str, RSAKey]:
    """RSA signature keys of at least 2048 bits; a kid listed twice is dropped, not guessed."""
    keys: dict[str, RSAKey] = {}
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        if kid in seen:
            keys.pop(kid, None)
            continue
        seen.add(kid)
        key = _rsa_signing_key(entry)
        if key is not None:
            keys[kid] = key
    return keys


def _rsa_signing_key(entry: dict[str, Any]) -> RSAKey | None:
    if entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
        return None
    if entry.get("alg", ALGORITHM) != ALGORITHM:
        return None
    ops = entry.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    n, e = entry.get("n"), entry.get("e")
    if not isinstance(n, str) or not isinstance(e, str):
        return None
    if not _B64URL.fullmatch(n) or not _B64URL.fullmatch(e):
        return None
    try:
        if int.from_bytes(_b64decode(n), "big").bit_length() < MIN_RSA_BITS:
            return None
        # Only the public members: a JWKS that leaked private parts must not make us hold them.
        return RSAKey.import_key({"kty": "RSA", "n": n, "e": e})
    except (InvalidToken, JoseError, ValueError, TypeError):
        return None
