"""A fault-injecting fake OAuth 2.0 / OpenID Connect provider for the project's tests.

The fake implements the parts of RFC 6749 (authorization code grant, refresh token grant),
RFC 7636 (PKCE, S256 only), RFC 7009 (revocation), RFC 9207 (``iss`` in the authorization
response) and OpenID Connect Core (ID tokens signed RS256, discovery, JWKS, userinfo) that the
binder uses, strictly enough to catch client bugs, and lets a test inject faults at run time
(``FakeProvider.faults``) and read what happened (``FakeProvider.counters``).

Use it in-process through ``httpx2.ASGITransport(app=provider.app())``, as a real server on
loopback with ``serve_in_thread(provider)``, or in its own process with
``python -m tests.fakes.provider --port N``; the ``/_control`` API drives it from outside.

Counter semantics:

- ``authorize``: ``/authorize`` requests answered with a redirect to the client (consent given or
  denied, or a redirected error);
- ``token_code``: successful authorization code exchanges;
- ``refreshes`` / ``refreshes_by_subject``: successful refresh token grants;
- ``replayed_refresh_tokens``: refresh attempts with a refresh token that was valid once but has
  been rotated out;
- ``revocations``: client-authenticated ``/revoke`` requests (known token or not);
- ``userinfo``: successful ``/userinfo`` answers;
- ``token_requests_total``: every ``POST /token``, including refused and faulted ones.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import anyio
import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

__all__ = [
    "AUTHORIZATION_CODE_TTL_SECONDS",
    "DEFAULT_SUBJECT",
    "Counters",
    "FakeProvider",
    "Faults",
    "main",
    "serve_in_thread",
]

LOOPBACK = "127.0.0.1"
DEFAULT_SUBJECT = "user-1"
AUTHORIZATION_CODE_TTL_SECONDS = 60
SCOPES_SUPPORTED = ("openid", "offline_access", "profile", "email", "read", "write")
_SERVER_START_TIMEOUT_SECONDS = 10.0
_SERVER_STOP_TIMEOUT_SECONDS = 5.0
_GRACEFUL_SHUTDOWN_SECONDS = 1
# RFC 6749 appendix A.4 (scope-token) and RFC 7636 section 4.1 (code_verifier).
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
_CODE_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass
class Faults:
    """Behaviour switches; every field may be changed while the provider runs."""

    token_delay_seconds: float = 0.0
    """Sleep this long before answering ``/token`` (simulates a slow or hanging provider)."""
    token_status: int | None = None
    """Answer ``/token`` with this HTTP status and an RFC 6749 JSON error."""
    refresh_invalid_grant: bool = False
    """The refresh token grant answers 400 ``invalid_grant`` (the token is left untouched)."""
    omit_refresh_token: bool = False
    """Token responses carry no ``refresh_token`` (a refresh then keeps the old one valid)."""
    omit_expires_in: bool = False
    """Token responses carry no ``expires_in`` (tokens still expire after ``expires_in``)."""
    expires_in: int = 3600
    """Lifetime in seconds of newly issued access tokens (0 or less: already expired)."""
    rotate_refresh_tokens: bool = True
    """Each refresh returns a new refresh token and invalidates the old one."""
    send_iss: bool = True
    """Send RFC 9207 ``iss`` in authorization responses."""
    iss_override: str | None = None
    """Send this (wrong) ``iss`` instead of the issuer (mix-up tests)."""
    deny: bool = False
    """``/authorize`` redirects back with ``error=access_denied``."""
    verify_pkce: bool = True
    """Require PKCE S256 at ``/authorize`` and check the verifier at ``/token``."""


@dataclass
class Counters:
    """What the provider has seen since it started (or since the last reset)."""

    authorize: int = 0
    token_code: int = 0
    refreshes: int = 0
    refreshes_by_subject: dict[str, int] = field(default_factory=dict)
    replayed_refresh_tokens: int = 0
    revocations: int = 0
    userinfo: int = 0
    token_requests_total: int = 0


_FAULT_TYPES: dict[str, tuple[type, ...]] = {
    "token_delay_seconds": (int, float),
    "token_status": (int, type(None)),
    "refresh_invalid_grant": (bool,),
    "omit_refresh_token": (bool,),
    "omit_expires_in": (bool,),
    "expires_in": (int,),
    "rotate_refresh_tokens": (bool,),
    "send_iss": (bool,),
    "iss_override": (str, type(None)),
    "deny": (bool,),
    "verify_pkce": (bool,),
}


class _OAuthError(Exception):
    """An RFC 6749 error response of the token or revocation endpoint."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> JSONResponse:
        headers = dict(_NO_STORE)
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="fake-provider"'
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=self.status, headers=headers)


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    subject: str
    scopes: tuple[str, ...]
    code_challenge: str | None
    nonce: str | None
    expires_at: float
    used: bool = False
    grant_id: str | None = None


@dataclass
class _Grant:
    subject: str
    scopes: tuple[str, ...]
    auth_time: int
    active: bool = True


@dataclass
class _RefreshToken:
    grant_id: str
    status: str = "active"  # "active", "rotated" or "revoked"


@dataclass
class _AccessToken:
    grant_id: str
    subject: str
    scopes: tuple[str, ...]
    expires_at: float
    revoked: bool = False


def _token_status_error(status: int) -> str:
    if status == 503:
        return "temporarily_unavailable"
    if status == 401:
        return "invalid_client"
    if status == 400:
        return "invalid_request"
    return "server_error"


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.fragment


def _with_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = urlencode(params)
    if parts.query:
        query = f"{parts.query}&{query}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _parse_scope(value: str) -> tuple[str, ...] | None:
    """Split a space-separated scope string; None when it is malformed or empty."""
    scopes = tuple(dict.fromkeys(value.split(" "))) if value else ()
    if not scopes or not all(_SCOPE_TOKEN.match(s) for s in scopes):
        return None
    return scopes


class FakeProvider:
    """An in-memory OAuth 2.0 / OIDC provider with one confidential client."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str = "fake-client",
        client_secret: str = "fake-secret",  # noqa: S107 - a test fixture's credential
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.faults = Faults()
        self.counters = Counters()
        self.clock: Callable[[], float] = time.time
        """Wall clock used for every expiry; tests may replace it to move time forward."""
        self._lock = threading.Lock()
        self._signing_key = RSAKey.generate_key(2048, auto_kid=True)
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, _Grant] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._access_tokens: dict[str, _AccessToken] = {}

    # ----------------------------------------------------------------------------- public helpers

    def app(self) -> Starlette:
        """The provider as an ASGI application (state lives in this object, not in the app)."""
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery, methods=["GET"]),
                Route("/jwks", self._jwks, methods=["GET"]),
                Route("/authorize", self._authorize, methods=["GET"]),
                Route("/token", self._token, methods=["POST"]),
                Route("/revoke", self._revoke, methods=["POST"]),
                Route("/userinfo", self._userinfo, methods=["GET", "POST"]),
                Route("/_control/counters", self._control_counters, methods=["GET"]),
                Route("/_control/faults", self._control_faults, methods=["GET", "POST"]),
                Route("/_control/reset", self._control_reset, methods=["POST"]),
                Route("/_control/issue", self._control_issue, methods=["POST"]),
            ]
        )

    def set_issuer(self, issuer: str) -> None:
        """Change the issuer (e.g. once the real port is known); endpoints follow it."""
        with self._lock:
            self.issuer = issuer.rstrip("/")

    def discovery_document(self) -> dict[str, Any]:
        issuer = self.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "jwks_uri": f"{issuer}/jwks",
            "revocation_endpoint": f"{issuer}/revoke",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "scopes_supported": list(SCOPES_SUPPORTED),
            "claims_supported": ["sub", "name", "email", "preferred_username"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self) -> dict[str, Any]:
        """The public signing keys as a JWK Set."""
        return {"keys": [self._signing_key.as_dict(private=False, use="sig", alg="RS256")]}

    def issue_token_for(self, subject: str, scopes: Sequence[str]) -> dict[str, Any]:
        """Register a new grant for ``subject`` and return its token response.

        As if the user had consented and the client exchanged the code; the response obeys the
        same faults as ``/token`` (``expires_in``, ``omit_*``). No counter changes.
        """
        scope_tuple = tuple(dict.fromkeys(scopes))
        with self._lock:
            grant_id = self._new_grant(subject, scope_tuple)
            return self._token_response(grant_id, scope_tuple, nonce=None, new_refresh=True)

    def id_token_for(
        self,
        subject: str,
        *,
        nonce: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        access_token: str | None = None,
    ) -> str:
        """An ID token signed with the provider's key; ``extra_claims`` override the defaults.

        With ``access_token`` the token carries its ``at_hash`` (OIDC Core 3.1.3.6), as the ID
        token of a real token response does.
        """
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            digest = hashlib.sha256(access_token.encode("ascii")).digest()
            claims["at_hash"] = base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
        claims.update(extra_claims or {})
        header = {"alg": "RS256", "kid": self._signing_key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self._signing_key, algorithms=["RS256"])

    def is_token_active(self, token: str) -> bool:
        """Whether ``token`` is a currently usable access or refresh token."""
        with self._lock:
            access = self._access_tokens.get(token)
            if access is not None:
                return self._access_usable(access)
            refresh = self._refresh_tokens.get(token)
            return (
                refresh is not None
                and refresh.status == "active"
                and self._grants[refresh.grant_id].active
            )

    def reset(self) -> None:
        """Clear counters and faults in place (issued tokens stay valid)."""
        with self._lock:
            vars(self.faults).update(vars(Faults()))
            vars(self.counters).update(vars(Counters()))

    def update_faults(self, changes: Mapping[str, Any]) -> Faults:
        """Merge ``changes`` into the faults after checking names and types; returns them."""
        for name, value in changes.items():
            types = _FAULT_TYPES.get(name)
            if types is None:
                raise ValueError(f"unknown fault {name!r}")
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise ValueError(f"wrong type for fault {name!r}")
        with self._lock:
            for name, value in changes.items():
                setattr(self.faults, name, value)
            return self.faults

    def counters_snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dataclasses.asdict(self.counters)

    # ------------------------------------------------------------------------------ state (locked)

    def _new_grant(self, subject: str, scopes: tuple[str, ...]) -> str:
        grant_id = secrets.token_hex(8)
        self._grants[grant_id] = _Grant(subject, scopes, auth_time=int(self.clock()))
        return grant_id

    def _access_usable(self, access: _AccessToken) -> bool:
        return (
            not access.revoked
            and self._grants[access.grant_id].active
            and access.expires_at > self.clock()
        )

    def _revoke_grant(self, grant_id: str) -> None:
        self._grants[grant_id].active = False
        for refresh in self._refresh_tokens.values():
            if refresh.grant_id == grant_id and refresh.status == "active":
                refresh.status = "revoked"
        for access in self._access_tokens.values():
            if access.grant_id == grant_id:
                access.revoked = True

    def _token_response(
        self,
        grant_id: str,
        scopes: tuple[str, ...],
        *,
        nonce: str | None,
        new_refresh: bool,
        current_refresh: str | None = None,
    ) -> dict[str, Any]:
        """Mint an access token (and refresh token / ID token) for a grant; caller holds the lock.

        ``new_refresh``: mint a new refresh token (``current_refresh`` is then rotated out);
        otherwise ``current_refresh`` is returned again.
        """
        grant = self._grants[grant_id]
        faults = self.faults
        now = self.clock()
        access_token = secrets.token_urlsafe(32)
        self._access_tokens[access_token] = _AccessToken(
            grant_id, grant.subject, scopes, expires_at=now + faults.expires_in
        )
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "scope": " ".join(scopes),
        }
        if not faults.omit_expires_in:
            body["expires_in"] = faults.expires_in
        if not faults.omit_refresh_token:
            if new_refresh:
                refresh_token = secrets.token_urlsafe(32)
                self._refresh_tokens[refresh_token] = _RefreshToken(grant_id)
                if current_refresh is not None:
                    self._refresh_tokens[current_refresh].status = "rotated"
                body["refresh_token"] = refresh_token
            elif current_refresh is not None:
                body["refresh_token"] = current_refresh
        if "openid" in grant.scopes:
            body["id_token"] = self.id_token_for(
                grant.subject,
                nonce=nonce,
                extra_claims={"auth_time": grant.auth_time},
                access_token=access_token,
            )
        return body

    # ---------------------------------------------------------------------------------- endpoints

    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(self.discovery_document())

    async def _jwks(self, request: Request) -> Response:
        return JSONResponse(self.jwks())

    async def _authorize(self, request: Request) -> Response:
        params = request.query_params
        if any(len(params.getlist(name)) > 1 for name in params):
            return _authorize_page_error("repeated parameter")
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        # Errors about the client or the redirect URI must not redirect (RFC 6749 4.1.2.1).
        if not hmac.compare_digest(client_id.encode(), self.client_id.encode()):
            return _authorize_page_error("unknown client_id")
        if not _is_http_url(redirect_uri):
            return _authorize_page_error("redirect_uri must be an absolute http(s) URL")

        faults = self.faults
        back: dict[str, str] = {}
        state = params.get("state", "")
        if state:
            back["state"] = state
        if faults.send_iss:
            back["iss"] = faults.iss_override if faults.iss_override is not None else self.issuer

        def redirect(values: dict[str, str]) -> Response:
            with self._lock:
                self.counters.authorize += 1
            # "error" and "code" first, then state and iss, like most providers.
            return RedirectResponse(_with_query(redirect_uri, {**values, **back}), status_code=302)

        def error(code: str, description: str) -> Response:
            return redirect({"error": code, "error_description": description})

        if params.get("response_type") != "code":
            return error("unsupported_response_type", "only response_type=code is supported")
        if not state:
            return error("invalid_request", "state is required")
        scopes = _parse_scope(params.get("scope", ""))
        if scopes is None:
            return error("invalid_scope", "scope is missing or malformed")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if faults.verify_pkce:
            if not challenge:
                return error("invalid_request", "code_challenge is required")
            if method != "S256":
                return error("invalid_request", "code_challenge_method must be S256")
        if challenge is not None and not re.fullmatch(r"[A-Za-z0-9\-_]{43}", challenge):
            return error("invalid_request", "malformed code_challenge")
        if faults.deny:
            return error("access_denied", "the user denied the request")

        subject = params.get("login_hint") or DEFAULT_SUBJECT
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = _Code(
                client_id=client_id,
                redirect_uri=redirect_uri,
                subject=subject,
                scopes=scopes,
                code_challenge=challenge,
                nonce=params.get("nonce"),
                expires_at=self.clock() + AUTHORIZATION_CODE_TTL_SECONDS,
            )
        return redirect({"code": code})

    async def _token(self, request: Request) -> Response:
        with self._lock:
            self.counters.token_requests_total += 1
            faults = self.faults
        if faults.token_delay_seconds > 0:
            await anyio.sleep(faults.token_delay_seconds)
        if faults.token_status is not None:
            status = faults.token_status
            error = _token_status_error(status)
            return _OAuthError(error, f"injected fault: HTTP {status}", status).response()
        try:
            form = await _read_form(request)
            self._authenticate_client(request, form)
            grant_type = form.get("grant_type")
            if grant_type == "authorization_code":
                body = self._exchange_code(form)
            elif grant_type == "refresh_token":
                body = self._refresh(form)
            elif not grant_type:
                raise _OAuthError("invalid_request", "grant_type is required")
            else:
                raise _OAuthError("unsupported_grant_type", f"unsupported grant {grant_type!r}")
        except _OAuthError as exc:
            return exc.response()
        return JSONResponse(body, headers=_NO_STORE)

    def _authenticate_client(self, request: Request, form: Mapping[str, str]) -> None:
        """client_secret_basic or client_secret_post (exactly one of them)."""
        authorization = request.headers.get("authorization", "")
        form_secret = form.get("client_secret")
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "basic":
                raise _OAuthError("invalid_client", "unsupported authentication scheme", 401)
            if form_secret is not None:
                raise _OAuthError("invalid_request", "more than one client authentication method")
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except ValueError:
                raise _OAuthError("invalid_client", "malformed Basic credentials", 401) from None
            raw_id, sep, raw_secret = decoded.partition(":")
            if not sep:
                raise _OAuthError("invalid_client", "malformed Basic credentials", 401)
            # RFC 6749 2.3.1: both parts are form-urlencoded before base64.
            client_id, client_secret = unquote_plus(raw_id), unquote_plus(raw_secret)
            if "client_id" in form and form["client_id"] != client_id:
                raise _OAuthError("invalid_request", "client_id differs from the Basic credentials")
        elif form_secret is not None:
            client_id, client_secret = form.get("client_id", ""), form_secret
        else:
            raise _OAuthError("invalid_client", "client authentication is required", 401)
        id_ok = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        secret_ok = hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        if not (id_ok and secret_ok):
            raise _OAuthError("invalid_client", "client authentication failed", 401)

    def _exchange_code(self, form: Mapping[str, str]) -> dict[str, Any]:
        code_value = form.get("code")
        if not code_value:
            raise _OAuthError("invalid_request", "code is required")
        redirect_uri = form.get("redirect_uri")
        verifier = form.get("code_verifier")
        with self._lock:
            code = self._codes.get(code_value)
            if code is None:
                raise _OAuthError("invalid_grant", "unknown authorization code")
            if code.used:
                # RFC 6749 4.1.2: a reused code revokes what was issued from it.
                if code.grant_id is not None:
                    self._revoke_grant(code.grant_id)
                raise _OAuthError("invalid_grant", "authorization code already used")
            code.used = True  # one attempt per code, whatever the outcome
            if code.expires_at <= self.clock():
                raise _OAuthError("invalid_grant", "authorization code expired")
            if code.client_id != self.client_id:
                raise _OAuthError("invalid_grant", "code was issued to another client")
            if redirect_uri != code.redirect_uri:
                raise _OAuthError("invalid_grant", "redirect_uri does not match")
            if self.faults.verify_pkce:
                if code.code_challenge is None:
                    raise _OAuthError("invalid_grant", "no code_challenge was sent")
                if verifier is None:
                    raise _OAuthError("invalid_grant", "code_verifier is required")
                if not _CODE_VERIFIER.match(verifier):
                    raise _OAuthError("invalid_grant", "malformed code_verifier")
                if not hmac.compare_digest(_s256(verifier), code.code_challenge):
                    raise _OAuthError("invalid_grant", "PKCE verification failed")
            grant_id = self._new_grant(code.subject, code.scopes)
            code.grant_id = grant_id
            self.counters.token_code += 1
            return self._token_response(grant_id, code.scopes, nonce=code.nonce, new_refresh=True)

    def _refresh(self, form: Mapping[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise _OAuthError("invalid_request", "refresh_token is required")
        requested = form.get("scope")
        with self._lock:
            faults = self.faults
            if faults.refresh_invalid_grant:
                raise _OAuthError("invalid_grant", "injected fault: refresh token rejected")
            refresh = self._refresh_tokens.get(token)
            if refresh is None:
                raise _OAuthError("invalid_grant", "unknown refresh token")
            if refresh.status == "rotated":
                self.counters.replayed_refresh_tokens += 1
                raise _OAuthError("invalid_grant", "refresh token was rotated out")
            grant = self._grants[refresh.grant_id]
            if refresh.status != "active" or not grant.active:
                raise _OAuthError("invalid_grant", "refresh token was revoked")
            scopes = grant.scopes
            if requested is not None:
                narrowed = _parse_scope(requested)
                if narrowed is None or not set(narrowed) <= set(grant.scopes):
                    raise _OAuthError("invalid_scope", "scope exceeds the original grant")
                scopes = narrowed
            self.counters.refreshes += 1
            by_subject = self.counters.refreshes_by_subject
            by_subject[grant.subject] = by_subject.get(grant.subject, 0) + 1
            return self._token_response(
                refresh.grant_id,
                scopes,
                nonce=None,
                new_refresh=faults.rotate_refresh_tokens,
                current_refresh=token,
            )

    async def _revoke(self, request: Request) -> Response:
        try:
            form = await _read_form(request)
            self._authenticate_client(request, form)
            token = form.get("token")
            if not token:
                raise _OAuthError("invalid_request", "token is required")
        except _OAuthError as exc:
            return exc.response()
        # token_type_hint is only a hint (RFC 7009 2.1): both kinds are looked up anyway.
        with self._lock:
            self.counters.revocations += 1
            access = self._access_tokens.get(token)
            refresh = self._refresh_tokens.get(token)
            if access is not None:
                access.revoked = True
            elif refresh is not None and refresh.status == "active":
                # RFC 7009 2.1: revoking a refresh token also invalidates the access tokens
                # of the same grant.
                self._revoke_grant(refresh.grant_id)
        return Response(status_code=200, headers=_NO_STORE)

    async def _userinfo(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _bearer_error(None, "missing Bearer access token")
        with self._lock:
            access = self._access_tokens.get(token.strip())
            if access is None or not self._access_usable(access):
                return _bearer_error("invalid_token", "the access token is invalid or expired")
            self.counters.userinfo += 1
            subject = access.subject
        return JSONResponse(
            {
                "sub": subject,
                "name": f"Test User {subject}",
                "email": f"{subject}@example.test",
                "preferred_username": subject,
            },
            headers=_NO_STORE,
        )

    # -------------------------------------------------------------------------------- control API

    async def _control_counters(self, request: Request) -> Response:
        return JSONResponse(self.counters_snapshot())

    async def _control_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = json.loads(await request.body())
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object")
                faults = self.update_faults(changes)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        else:
            faults = self.faults
        return JSONResponse(dataclasses.asdict(faults))

    async def _control_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})

    async def _control_issue(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            subject = body["subject"]
            scopes = body["scopes"]
            if not isinstance(subject, str) or not isinstance(scopes, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"error": 'expected {"subject": str, "scopes": [str, ...]}'}, status_code=400
            )
        return JSONResponse(self.issue_token_for(subject, [str(s) for s in scopes]))


async def _read_form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (no python-multipart needed)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise _OAuthError("invalid_request", "expected application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(
            (await request.body()).decode("utf-8"), keep_blank_values=True, strict_parsing=False
        )
    except (UnicodeDecodeError, ValueError):
        raise _OAuthError("invalid_request", "malformed form body") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise _OAuthError("invalid_request", f"parameter {name!r} repeated")
        form[name] = value
    return form


def _authorize_page_error(description: str) -> Response:
    return JSONResponse(
        {"error": "invalid_request", "error_description": description}, status_code=400
    )


def _bearer_error(error: str | None, description: str) -> Response:
    challenge = 'Bearer realm="fake-provider"'
    if error is not None:
        challenge += f', error="{error}", error_description="{description}"'
    return JSONResponse(
        {"error": error or "invalid_request", "error_description": description},
        status_code=401,
        headers={"WWW-Authenticate": challenge},
    )


# ------------------------------------------------------------------------------ running for real


def _bind_loopback(host: str, port: int) -> socket.socket:
    if host != LOOPBACK:
        raise ValueError(f"the fake provider only listens on {LOOPBACK}, not {host!r}")
    # IPPROTO_TCP: asyncio then sets TCP_NODELAY on accepted connections (svc_common/serve.py
    # says why); without it every answer waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Listen now, not when uvicorn starts: the CLI prints its URL before serving, and a
        # client that connects in between must wait in the backlog, not be refused.
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _uvicorn_config(provider: FakeProvider) -> uvicorn.Config:
    return uvicorn.Config(
        provider.app(),
        lifespan="off",
        log_level="warning",
        access_log=False,
        loop="asyncio",
        # Requests still in flight at shutdown (e.g. a delayed /token) are cancelled after this.
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
    )


@contextlib.contextmanager
def serve_in_thread(provider: FakeProvider, host: str = LOOPBACK, port: int = 0) -> Iterator[str]:
    """Serve ``provider`` over HTTP on 127.0.0.1 in a background thread; yields the base URL.

    The socket is bound before the server starts, so the port (0 picks a free one) and the
    provider's issuer are known up front. On exit the server is asked to stop and the thread is
    joined with a bounded wait.
    """
    sock = _bind_loopback(host, port)
    bound_port = sock.getsockname()[1]
    url = f"http://{LOOPBACK}:{bound_port}"
    provider.set_issuer(url)
    server = uvicorn.Server(_uvicorn_config(provider))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"fake-provider-{bound_port}"
    )
    thread.daemon = True
    try:
        thread.start()
        deadline = time.monotonic() + _SERVER_START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the fake provider's server thread exited during startup")
            if time.monotonic() > deadline:
                raise TimeoutError("the fake provider did not start in time")
            time.sleep(0.01)
        yield url
    finally:
        server.should_exit = True
        thread.join(_SERVER_STOP_TIMEOUT_SECONDS)
        if thread.is_alive():
            server.force_exit = True
            thread.join(_SERVER_STOP_TIMEOUT_SECONDS)
        sock.close()


class _CliServer(uvicorn.Server):
    """Stops on SIGTERM/SIGINT and exits normally (uvicorn would re-raise the signal)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        def stop(signum: int, frame: FrameType | None) -> None:
            if self.should_exit:
                self.force_exit = True
            self.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.fakes.provider --port N``: print the base URL, serve until signalled."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--client-id", default="fake-client")
    parser.add_argument("--client-secret", default="fake-secret")
    args = parser.parse_args(argv)
    sock = _bind_loopback(LOOPBACK, args.port)
    url = f"http://{LOOPBACK}:{sock.getsockname()[1]}"
    provider = FakeProvider(issuer=url, client_id=args.client_id, client_secret=args.client_secret)
    print(url, flush=True)
    try:
        _CliServer(_uvicorn_config(provider)).run(sockets=[sock])
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
