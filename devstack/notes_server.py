"""A small notes API, the local stack's resource server: the third-party API a write tool calls.

It plays a real API protected by an OAuth authorization server, here the local OIDC provider
(devstack.oidc_provider), whose access tokens are RFC 9068 JWTs. Every request to /notes needs
`Authorization: Bearer <access token>`, checked offline as resource servers do: RS256 only
(allow-list), `typ: at+jwt` (an ID token is not an access token), signature against the
provider's JWKS (found through its discovery document, whose `issuer` must match), `iss`
exact, `exp`/`nbf`/`iat`, `aud` naming this server, `client_id` in the allowed set, and the
`notes` scope. Refusals are 401 (403 for a missing scope) with `WWW-Authenticate: Bearer`
(RFC 6750) and a short reason; no token, note text or title is ever logged.

Notes are kept in memory per user, keyed by the token's `iss` and `sub`:

    GET  /notes   -> 200 {"notes": [{"id", "title", "body", "created_at"}, ...]}  (oldest first)
    POST /notes   {"title": str (1-200 chars), "body": str (0-10,000 chars)}
                  -> 201 {"id", "title", "body", "created_at"}
                  -> 400 {"error": "invalid_request", "field": ..., "message": ...}
    GET  /healthz -> 200 {"status": "ok", "service": "notes"}

LOCAL ONLY, for tests: `GET /_test/writes` -> 200 {"writes": N, "write_attempts": M}, with no
authentication: N counts notes created (201s), M every POST /notes that reached the server,
whatever its outcome. Black-box tests read it before and after a story to assert how many
writes reached the resource server ("exactly one", "none"). It reveals only two counters, it
answers only clients on 127.0.0.1, and the server binds 127.0.0.1 only: no real API has it.

Run: python -m devstack.notes_server --port P --issuer URL --client-id ID [--audience URL]
(127.0.0.1 only; the audience defaults to http://127.0.0.1:P)
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx2
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack import serving
from devstack.edge import read_body
from devstack.jwks import IssuerKeys

LOOPBACK = "127.0.0.1"
SCOPE = "notes"
MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 10_000
# A 10,000-character body in JSON: up to 12 bytes a character when every one is an escaped
# astral code point (a surrogate pair of \uXXXX), plus the title and the punctuation.
MAX_REQUEST_BYTES = 256 * 1024
MAX_NOTES_PER_USER = 1000
MAX_TOKEN_CHARS = 8192
LEEWAY_SECONDS = 30
ALGORITHMS = ("RS256",)
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
NO_STORE = {"cache-control": "no-store"}

log = logging.getLogger("devstack.notes")


class Refused(Exception):
    """A request's token is refused; `reason` is a short code, safe to log and to return."""

    def __init__(self, reason: str, *, status: int = 401, error: str = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.error = error


@dataclass(frozen=True)
class NotesConfig:
    issuer: str  # the local OIDC provider, exactly as its tokens' `iss`
    audience: str  # this server's resource identifier, in the tokens' `aud`
    client_ids: frozenset[str]  # the OAuth clients whose tokens this API accepts
    scope: str = SCOPE


@dataclass(frozen=True)
class Caller:
    issuer: str
    subject: str

    @property
    def key(self) -> str:
        return f"{self.issuer}|{self.subject}"

    @property
    def log_id(self) -> str:
        """A short hash of the user key for log lines (no identifier in logs)."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:12]


@dataclass
class Store:
    """Notes by user key, in memory; the write counters behind /_test/writes."""

    notes: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    writes: int = 0
    write_attempts: int = 0


class TokenVerifier:
    """RFC 9068 access tokens of one issuer (its keys: devstack.jwks)."""

    def __init__(self, config: NotesConfig, http: httpx2.AsyncClient) -> None:
        self._config = config
        self._keys = IssuerKeys(config.issuer, ".well-known/openid-configuration", http)

    async def _key(self, kid: str) -> RSAKey:
        key = await self._keys.key(kid)
        if key is None:
            raise Refused("unknown_key")
        return key

    async def verify(self, authorization: list[str]) -> Caller:
        if not authorization:
            raise Refused("missing", error="")
        if len(authorization) > 1:
            raise Refused("malformed", status=400, error="invalid_request")
        scheme, _, token = authorization[0].strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise Refused("malformed", status=400, error="invalid_request")
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise Refused("malformed")
        try:
            header = json.loads(_b64decode(token.split(".", 1)[0]))
        except ValueError:
            raise Refused("malformed") from None
        if not isinstance(header, dict):
            raise Refused("malformed")
        if header.get("alg") not in ALGORITHMS:
            raise Refused("unsupported_algorithm")
        if str(header.get("typ", "")).lower() not in ACCESS_TOKEN_TYPES:
            raise Refused("not_an_access_token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Refused("unknown_key")
        key = await self._key(kid)
        try:
            claims = jwt.decode(token, key, algorithms=list(ALGORITHMS)).claims
        except JoseError:
            raise Refused("bad_signature") from None
        except ValueError:
            raise Refused("malformed") from None
        return self._check_claims(claims)

    def _check_claims(self, claims: dict[str, Any]) -> Caller:
        now = time.time()
        if claims.get("iss") != self._config.issuer:
            raise Refused("wrong_issuer")
        exp, iat, nbf = (_time_claim(claims, name) for name in ("exp", "iat", "nbf"))
        if exp <= now:
            raise Refused("expired")
        if iat > now + LEEWAY_SECONDS or nbf > now + LEEWAY_SECONDS:
            raise Refused("not_yet_valid")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or self._config.audience not in audiences:
            raise Refused("wrong_audience")
        if claims.get("client_id") not in self._config.client_ids:
            raise Refused("wrong_client")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 255:
            raise Refused("missing_claim")
        scope = claims.get("scope")
        if not isinstance(scope, str) or self._config.scope not in scope.split():
            raise Refused("insufficient_scope", status=403, error="insufficient_scope")
        return Caller(issuer=self._config.issuer, subject=sub)


def _time_claim(claims: dict[str, Any], name: str) -> float:
    """A NumericDate claim; `nbf` is optional, `exp` and `iat` are required (RFC 9068)."""
    value = claims.get(name, 0 if name == "nbf" else None)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise Refused("missing_claim")
    return float(value)


def _b64decode(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def _refusal(exc: Refused, scope: str) -> Response:
    params = ['realm="notes"']
    if exc.error:
        params.append(f'error="{exc.error}"')
        params.append(f'error_description="{exc.reason}"')
    if exc.error == "insufficient_scope":
        params.append(f'scope="{scope}"')
    body = {"error": exc.error or "unauthorized", "reason": exc.reason}
    headers = {**NO_STORE, "www-authenticate": "Bearer " + ", ".join(params)}
    return JSONResponse(body, exc.status, headers=headers)


def _invalid(field_name: str | None, message: str, status: int = 400) -> Response:
    body: dict[str, str] = {"error": "invalid_request", "message": message}
    if field_name is not None:
        body["field"] = field_name
    return JSONResponse(body, status, headers=NO_STORE)


def _text_problem(value: object, name: str, *, low: int, high: int) -> str | None:
    if not isinstance(value, str):
        return f"{name} must be a string"
    if not low <= len(value) <= high:
        if low and not value:
            return f"{name} must not be empty"
        return f"{name} must be at most {high:,} characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{name} must be valid Unicode (no lone surrogates)"
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_app(
    config: NotesConfig, *, transport: httpx2.AsyncBaseTransport | None = None
) -> Starlette:
    store = Store()
    verifier: TokenVerifier | None = None

    async def caller(request: Request) -> Caller:
        if verifier is None:
            raise RuntimeError("the notes server's verifier starts with the app's lifespan")
        return await verifier.verify(request.headers.getlist("authorization"))

    async def list_notes(request: Request) -> Response:
        try:
            user = await caller(request)
        except Refused as exc:
            log.info("GET /notes refused: %s", exc.reason)
            return _refusal(exc, config.scope)
        notes = store.notes.get(user.key, [])
        log.info("GET /notes user=%s count=%d", user.log_id, len(notes))
        return JSONResponse({"notes": notes}, headers=NO_STORE)

    async def create_note(request: Request) -> Response:
        store.write_attempts += 1
        try:
            user = await caller(request)
        except Refused as exc:
            log.info("POST /notes refused: %s", exc.reason)
            return _refusal(exc, config.scope)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return _invalid(None, "send a JSON object (content-type: application/json)", 415)
        raw = await read_body(request, MAX_REQUEST_BYTES)
        if raw is None:
            return _invalid(None, f"the request body is over {MAX_REQUEST_BYTES} bytes", 413)
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _invalid(None, "the request body is not JSON")
        if not isinstance(data, dict):
            return _invalid(None, "the request body must be a JSON object")
        for name in data:
            if name not in ("title", "body"):
                return _invalid(str(name)[:64], f"unknown field {str(name)[:64]!r}")
        for name, low, high in (("title", 1, MAX_TITLE_CHARS), ("body", 0, MAX_BODY_CHARS)):
            if name not in data:
                return _invalid(name, f"{name} is required")
            problem = _text_problem(data[name], name, low=low, high=high)
            if problem is not None:
                return _invalid(name, problem)
        notes = store.notes.setdefault(user.key, [])
        if len(notes) >= MAX_NOTES_PER_USER:
            return JSONResponse(
                {"error": "too_many_notes", "message": f"at most {MAX_NOTES_PER_USER} notes"},
                507,
                headers=NO_STORE,
            )
        note = {
            "id": str(uuid.uuid4()),
            "title": data["title"],
            "body": data["body"],
            "created_at": _now(),
        }
        notes.append(note)
        store.writes += 1
        log.info(
            "POST /notes created id=%s user=%s title_chars=%d body_chars=%d",
            note["id"],
            user.log_id,
            len(note["title"]),
            len(note["body"]),
        )
        return JSONResponse(note, 201, headers=NO_STORE)

    async def writes(request: Request) -> Response:
        if request.client is None or request.client.host != LOOPBACK:
            return JSONResponse({"error": "not_found"}, 404)
        return JSONResponse(
            {"writes": store.writes, "write_attempts": store.write_attempts}, headers=NO_STORE
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": "notes"}, headers=NO_STORE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal verifier
        async with httpx2.AsyncClient(
            timeout=5.0, follow_redirects=False, transport=transport, trust_env=False
        ) as http:
            verifier = TokenVerifier(config, http)
            try:
                yield
            finally:
                verifier = None

    app = Starlette(
        routes=[
            Route("/notes", list_notes, methods=["GET"]),
            Route("/notes", create_note, methods=["POST"]),
            Route("/_test/writes", writes, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.store = store
    return app


def config_from_args(argv: list[str] | None = None) -> tuple[NotesConfig, int]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--issuer", type=serving.loopback_url, required=True)
    parser.add_argument("--client-id", dest="client_ids", action="append", required=True)
    parser.add_argument("--audience", default=None, help="default: http://127.0.0.1:PORT")
    parser.add_argument("--scope", default=SCOPE)
    args = parser.parse_args(argv)
    audience = (args.audience or f"http://{LOOPBACK}:{args.port}").rstrip("/")
    return (
        NotesConfig(
            issuer=args.issuer,
            audience=audience,
            client_ids=frozenset(args.client_ids),
            scope=args.scope,
        ),
        args.port,
    )


def main(argv: list[str] | None = None) -> None:
    config, port = config_from_args(argv)
    serving.serve(create_app(config), port)


if __name__ == "__main__":
    main()
