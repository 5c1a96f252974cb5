"""The local MCP server's OAuth authorization server: what an MCP client (the binder) must handle.

A small authorization server written for the MCP authorization specification (2025-11-25),
because the local OIDC provider (oidc-provider-mock) cannot register clients by metadata
document, bind tokens to a `resource`, send RFC 9207 `iss` or rotate refresh tokens without
patching its internals. It is strict where a real server may be lenient, so a client bug shows:

- Metadata (RFC 8414) at `/.well-known/oauth-authorization-server`, the same document at
  `/.well-known/openid-configuration` for clients that try OIDC discovery first: `issuer`,
  `authorization_endpoint`, `token_endpoint`, `registration_endpoint`, `revocation_endpoint`,
  `jwks_uri`, `code_challenge_methods_supported: ["S256"]`,
  `client_id_metadata_document_supported`, `authorization_response_iss_parameter_supported`.
- Authorization code + PKCE S256 only (RFC 7636; `plain` and a missing challenge are refused);
  `resource` (RFC 8707) required on the authorization request, repeated or omitted on the token
  request, and put in the access token's `aud`; `iss` in every authorization response (RFC 9207).
- Access tokens are RFC 9068 JWTs (RS256, `typ: at+jwt`): `iss`, `sub`, `aud`, `client_id`,
  `scope`, `iat`, `exp`, `jti`. Refresh tokens rotate: each is good once; a replayed one is
  refused, counted, and revokes its whole family (OAuth 2.1 refresh token reuse detection).
- Clients: pre-registered (`--client JSON`), Dynamic Client Registration (RFC 7591,
  `POST /register`), or a Client ID Metadata Document (a `client_id` that is an https URL, or
  http on 127.0.0.1 for the local stack): fetched on each authorization request, its `client_id`
  must equal the URL and its `redirect_uris` must hold the request's; such clients are public
  (`token_endpoint_auth_method: none`).
- Sign-in: a form asking which user (a `sub`) approves; `--user SUB` limits the choice.

Test switches break it on purpose: `--no-s256` (metadata without code_challenge_methods_supported),
`--metadata-issuer URL` (metadata naming another issuer), `--no-dcr`, `--no-cimd`.

LOCAL ONLY, for tests, answering clients on 127.0.0.1 only: `GET /_test/requests` -> what the
authorization and token endpoints received (parameter names and public values: client_id,
redirect_uri, resource, scope, code_challenge_method, grant_type; never a code, verifier, secret
or token) and counters (`refreshes`, `refresh_replays`, `code_replays`, `registrations`,
`metadata_document_fetches`, `revocations`, `tokens_issued`); `DELETE /_test/requests` clears them.

Run: python -m devstack.mcp_auth_server --port P [--resource URL ...] [--user SUB ...]
[--client JSON ...] [--access-token-ttl S] [switches]   (127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import html
import json
import logging
import secrets
import time
import urllib.parse
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from devstack import serving
from devstack.edge import read_body

LOOPBACK = "127.0.0.1"
DEFAULT_SCOPE = "notes"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JOSE header value (RFC 9068)
CODE_TTL_SECONDS = 300
PENDING_TTL_SECONDS = 600
MAX_PENDING = 1000  # sign-in forms waiting for an answer; the oldest is dropped beyond this
MAX_CODES = 1000
MAX_CLIENTS = 1000  # dynamically registered clients
MAX_REFRESH_TOKENS = 10_000
MAX_RECORDED = 200  # requests kept for /_test/requests
MAX_FORM_BYTES = 16 * 1024
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_REDIRECT_URIS = 10
MAX_SUB_CHARS = 255
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")

log = logging.getLogger("devstack.mcp_auth")


class OAuthError(Exception):
    """An OAuth error response (RFC 6749 section 5.2); the description is safe to show."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class Client:
    client_id: str
    redirect_uris: tuple[str, ...]
    auth_method: str = "none"
    secret_hash: str | None = None  # SHA-256 of the secret; the secret itself is not kept
    name: str = ""
    kind: str = "pre-registered"  # or "dynamic", "metadata-document"


@dataclass(frozen=True)
class AuthConfig:
    issuer: str  # this server's URL, as its tokens' `iss` and RFC 9207 `iss`
    resources: frozenset[str] = frozenset()  # accepted `resource` values; empty accepts any URL
    scopes: tuple[str, ...] = (DEFAULT_SCOPE,)
    users: tuple[str, ...] = ()  # subs that may sign in; empty allows any
    clients: tuple[Client, ...] = ()
    access_token_ttl: int = 3600
    # Test switches: each makes the server wrong in one way a client must refuse or survive.
    advertise_s256: bool = True
    metadata_issuer: str | None = None
    dcr: bool = True
    cimd: bool = True


@dataclass
class Pending:
    """An authorization request validated and waiting for the user's answer on the form."""

    client_id: str
    redirect_uri: str
    state: str | None
    code_challenge: str
    resource: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class Grant:
    """What an authorization code or a refresh token stands for."""

    client_id: str
    subject: str
    resource: str
    scopes: tuple[str, ...]
    family: str  # refresh tokens descending from one authorization
    redirect_uri: str = ""
    code_challenge: str = ""
    expires_at: float = 0.0


@dataclass
class Counters:
    refreshes: int = 0
    refresh_replays: int = 0
    code_replays: int = 0
    registrations: int = 0
    metadata_document_fetches: int = 0
    revocations: int = 0
    tokens_issued: int = 0


@dataclass
class State:
    key: RSAKey
    clients: OrderedDict[str, Client] = field(default_factory=OrderedDict)
    pending: OrderedDict[str, Pending] = field(default_factory=OrderedDict)
    codes: OrderedDict[str, Grant] = field(default_factory=OrderedDict)
    used_codes: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_CODES))
    refresh: OrderedDict[str, Grant] = field(default_factory=OrderedDict)  # hash -> grant
    used_refresh: OrderedDict[str, str] = field(default_factory=OrderedDict)  # hash -> family
    authorization_requests: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MAX_RECORDED)
    )
    token_requests: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MAX_RECORDED)
    )
    counters: Counters = field(default_factory=Counters)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _put(store: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    store[key] = value
    while len(store) > limit:
        store.popitem(last=False)


def _is_url(value: str, *, https_or_loopback: bool = False) -> bool:
    parts = urllib.parse.urlsplit(value)
    if not parts.netloc or parts.fragment:
        return False
    if https_or_loopback:
        return parts.scheme == "https" or (
            parts.scheme == "http" and parts.hostname in (LOOPBACK, "localhost")
        )
    return parts.scheme in ("http", "https")


def is_metadata_document_id(client_id: str) -> bool:
    """A client_id that names a Client ID Metadata Document: an https URL with a path (or http
    on loopback, for the local stack)."""
    parts = urllib.parse.urlsplit(client_id)
    return _is_url(client_id, https_or_loopback=True) and parts.path not in ("", "/")


def metadata(config: AuthConfig) -> dict[str, Any]:
    """RFC 8414 authorization server metadata, with the test switches applied."""
    issuer = config.issuer
    document: dict[str, Any] = {
        "issuer": config.metadata_issuer or issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "revocation_endpoint": f"{issuer}/revoke",
        "jwks_uri": f"{issuer}/jwks",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "scopes_supported": list(config.scopes),
        "client_id_metadata_document_supported": config.cimd,
        "authorization_response_iss_parameter_supported": True,
    }
    if config.advertise_s256:
        document["code_challenge_methods_supported"] = ["S256"]
    if config.dcr:
        document["registration_endpoint"] = f"{issuer}/register"
    return document


def _error_page(message: str, status: int = 400) -> HTMLResponse:
    """Shown instead of redirecting when the client or its redirect_uri cannot be trusted."""
    body = (
        "<!doctype html><title>Authorization error</title>"
        f"<h1>Authorization error</h1><p>{html.escape(message)}</p>"
    )
    return HTMLResponse(body, status, headers=NO_STORE)


def _oauth_json(exc: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    if exc.status == 401:
        headers["www-authenticate"] = 'Basic realm="mcp-auth"'
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description}, exc.status, headers=headers
    )


def _redirect(redirect_uri: str, params: Mapping[str, str | None]) -> RedirectResponse:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    separator = "&" if urllib.parse.urlsplit(redirect_uri).query else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{query}", 302, headers=NO_STORE)


async def _form(request: Request) -> dict[str, str]:
    """A form-encoded body as single values; a repeated parameter is an error (RFC 6749 3.1)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send application/x-www-form-urlencoded")
    raw = await read_body(request, MAX_FORM_BYTES)
    if raw is None:
        raise OAuthError("invalid_request", "the request body is too large")
    try:
        pairs = urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the request body is not a form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"{name} is repeated")
        form[name] = value
    return form


def _single(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name, [])
    if len(values) > 1:
        raise OAuthError("invalid_request", f"{name} is repeated")
    return values[0] if values else None


def create_app(
    config: AuthConfig, *, transport: httpx2.AsyncBaseTransport | None = None
) -> Starlette:
    state = State(
        key=RSAKey.generate_key(
            2048, parameters={"use": "sig", "alg": "RS256", "kid": secrets.token_urlsafe(8)}
        )
    )
    for client in config.clients:
        state.clients[client.client_id] = client
    http: httpx2.AsyncClient | None = None

    def loopback(request: Request) -> bool:
        return request.client is not None and request.client.host == LOOPBACK

    async def fetch_metadata_document(client_id: str) -> Client:
        """Fetch and validate a Client ID Metadata Document (no redirects, size-capped)."""
        if http is None:
            raise RuntimeError("the HTTP client starts with the app's lifespan")
        state.counters.metadata_document_fetches += 1
        try:
            async with http.stream(
                "GET", client_id, headers={"accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise ValueError(f"the document answered HTTP {response.status_code}")
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise ValueError("the document is too large")
            document = json.loads(body)
        except (httpx2.HTTPError, ValueError) as exc:
            detail = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
            raise OAuthError("invalid_client", f"client metadata document: {detail}") from None
        if not isinstance(document, dict):
            raise OAuthError("invalid_client", "client metadata document is not a JSON object")
        if document.get("client_id") != client_id:
            raise OAuthError("invalid_client", "client metadata document names another client_id")
        uris = document.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
            raise OAuthError("invalid_client", "client metadata document has no redirect_uris")
        method = document.get("token_endpoint_auth_method", "none")
        if method != "none":
            raise OAuthError(
                "invalid_client", "this server accepts metadata-document clients as public only"
            )
        return Client(
            client_id=client_id,
            redirect_uris=tuple(uris[:MAX_REDIRECT_URIS]),
            name=str(document.get("client_name", ""))[:100],
            kind="metadata-document",
        )

    async def find_client(client_id: str) -> Client:
        known = state.clients.get(client_id)
        if known is not None:
            return known
        if is_metadata_document_id(client_id):
            if not config.cimd:
                raise OAuthError("invalid_client", "client ID metadata documents are not supported")
            return await fetch_metadata_document(client_id)
        raise OAuthError("invalid_client", "unknown client_id")

    # ---- metadata and keys -------------------------------------------------------------

    async def server_metadata(request: Request) -> Response:
        return JSONResponse(metadata(config))

    async def jwks(request: Request) -> Response:
        return JSONResponse({"keys": [state.key.as_dict(private=False)]})

    # ---- authorization endpoint ----------------------------------------------------------

    async def authorize(request: Request) -> Response:
        params: dict[str, list[str]] = {}
        for name, value in request.query_params.multi_items():
            params.setdefault(name, []).append(value)
        try:
            client_id = _single(params, "client_id")
            redirect_uri = _single(params, "redirect_uri")
        except OAuthError as exc:
            return _error_page(exc.description)
        resources = params.get("resource", [])
        state.authorization_requests.append(
            {
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "response_type": request.query_params.get("response_type"),
                "resource": resources[0] if len(resources) == 1 else resources or None,
                "scope": request.query_params.get("scope"),
                "code_challenge_method": request.query_params.get("code_challenge_method"),
                "has_code_challenge": "code_challenge" in params,
                "has_state": "state" in params,
            }
        )
        if not client_id or not redirect_uri:
            return _error_page("client_id and redirect_uri are required")
        try:
            client = await find_client(client_id)
        except OAuthError as exc:
            log.info("authorize refused: %s", exc.error)
            return _error_page(exc.description)
        if redirect_uri not in client.redirect_uris:
            log.info("authorize refused: unregistered redirect_uri")
            return _error_page("redirect_uri is not registered for this client")
        # From here on, errors go back to the client (RFC 6749 4.1.2.1), with `iss` (RFC 9207).
        state_param = request.query_params.get("state")

        def back(error: str, description: str) -> Response:
            log.info("authorize refused: %s (%s)", error, description)
            return _redirect(
                redirect_uri,
                {
                    "error": error,
                    "error_description": description,
                    "state": state_param,
                    "iss": config.issuer,
                },
            )

        try:
            if _single(params, "response_type") != "code":
                return back("unsupported_response_type", "response_type must be code")
            challenge = _single(params, "code_challenge")
            method = _single(params, "code_challenge_method")
            scope = _single(params, "scope")
            _single(params, "state")
        except OAuthError as exc:
            return back(exc.error, exc.description)
        if not challenge or method != "S256":
            return back("invalid_request", "PKCE with code_challenge_method S256 is required")
        if not 43 <= len(challenge) <= 128:
            return back("invalid_request", "code_challenge is malformed")
        if len(resources) != 1:
            return back("invalid_target", "exactly one resource (RFC 8707) is required")
        resource = resources[0]
        if not _is_url(resource) or (config.resources and resource not in config.resources):
            return back("invalid_target", "unknown resource")
        scopes = tuple(scope.split()) if scope else config.scopes
        if not set(scopes) <= set(config.scopes):
            return back("invalid_scope", "unknown scope")
        request_id = secrets.token_urlsafe(24)
        _put(
            state.pending,
            request_id,
            Pending(
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                state=state_param,
                code_challenge=challenge,
                resource=resource,
                scopes=scopes,
                expires_at=time.time() + PENDING_TTL_SECONDS,
            ),
            MAX_PENDING,
        )
        return HTMLResponse(_sign_in_page(request_id, client, resource, scopes, config.users))

    async def decide(request: Request) -> Response:
        try:
            form = await _form(request)
        except OAuthError as exc:
            return _error_page(exc.description)
        pending = state.pending.pop(form.get("request_id", ""), None)
        if pending is None or pending.expires_at < time.time():
            return _error_page("this sign-in form has expired or was already used; start again")
        if form.get("decision") != "approve":
            return _redirect(
                pending.redirect_uri,
                {"error": "access_denied", "state": pending.state, "iss": config.issuer},
            )
        subject = form.get("sub", "").strip()
        if not subject or len(subject) > MAX_SUB_CHARS:
            return _error_page("choose a user")
        if config.users and subject not in config.users:
            return _error_page("unknown user")
        code = secrets.token_urlsafe(32)
        _put(
            state.codes,
            _sha256(code),
            Grant(
                client_id=pending.client_id,
                subject=subject,
                resource=pending.resource,
                scopes=pending.scopes,
                family=secrets.token_urlsafe(12),
                redirect_uri=pending.redirect_uri,
                code_challenge=pending.code_challenge,
                expires_at=time.time() + CODE_TTL_SECONDS,
            ),
            MAX_CODES,
        )
        log.info("authorization code issued")
        return _redirect(
            pending.redirect_uri, {"code": code, "state": pending.state, "iss": config.issuer}
        )

    # ---- token endpoint ------------------------------------------------------------------

    async def authenticate_client(request: Request, form: dict[str, str]) -> tuple[Client, str]:
        """The client, by its registered method; returns it and the method the request used."""
        header = request.headers.get("authorization", "")
        secret: str | None = None
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "basic":
                raise OAuthError("invalid_client", "unsupported client authentication", 401)
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise OAuthError("invalid_client", "malformed basic credentials", 401) from None
            raw_id, sep, raw_secret = decoded.partition(":")
            if not sep:
                raise OAuthError("invalid_client", "malformed basic credentials", 401)
            client_id = urllib.parse.unquote_plus(raw_id)
            secret = urllib.parse.unquote_plus(raw_secret)
            if form.get("client_id") not in (None, client_id):
                raise OAuthError("invalid_client", "two different client ids", 401)
            used = "client_secret_basic"
        elif "client_secret" in form:
            client_id, secret, used = (
                form.get("client_id", ""),
                form["client_secret"],
                "client_secret_post",
            )
        else:
            client_id, used = form.get("client_id", ""), "none"
        if not client_id:
            raise OAuthError("invalid_client", "client_id is required", 401)
        client = state.clients.get(client_id)
        if client is None and is_metadata_document_id(client_id) and config.cimd:
            # A metadata-document client is public: its id is all it presents.
            client = Client(client_id=client_id, redirect_uris=(), kind="metadata-document")
        if client is None:
            raise OAuthError("invalid_client", "unknown client", 401)
        if used != client.auth_method:
            raise OAuthError(
                "invalid_client", f"this client authenticates with {client.auth_method}", 401
            )
        if client.secret_hash is not None and (
            secret is None or not secrets.compare_digest(_sha256(secret), client.secret_hash)
        ):
            raise OAuthError("invalid_client", "client authentication failed", 401)
        return client, used

    def issue(grant: Grant, client: Client) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": config.issuer,
            "sub": grant.subject,
            "aud": grant.resource,
            "client_id": client.client_id,
            "scope": " ".join(grant.scopes),
            "iat": now,
            "exp": now + config.access_token_ttl,
            "jti": secrets.token_urlsafe(16),
        }
        header = {"alg": "RS256", "typ": ACCESS_TOKEN_TYPE, "kid": state.key.kid}
        refresh_token = secrets.token_urlsafe(32)
        _put(
            state.refresh,
            _sha256(refresh_token),
            Grant(
                client_id=client.client_id,
                subject=grant.subject,
                resource=grant.resource,
                scopes=grant.scopes,
                family=grant.family,
            ),
            MAX_REFRESH_TOKENS,
        )
        state.counters.tokens_issued += 1
        return {
            "access_token": jwt.encode(header, claims, state.key),
            "token_type": "Bearer",
            "expires_in": config.access_token_ttl,
            "refresh_token": refresh_token,
            "scope": " ".join(grant.scopes),
        }

    def check_resource(form: dict[str, str], grant: Grant) -> None:
        resource = form.get("resource")
        if resource is not None and resource != grant.resource:
            raise OAuthError("invalid_target", "resource differs from the one authorized")

    async def token(request: Request) -> Response:
        try:
            form = await _form(request)
        except OAuthError as exc:
            return _oauth_json(exc)
        grant_type = form.get("grant_type")
        record: dict[str, Any] = {
            "grant_type": grant_type,
            "client_id": form.get("client_id"),
            "resource": form.get("resource"),
            "scope": form.get("scope"),
            "redirect_uri": form.get("redirect_uri"),
            "has_code_verifier": "code_verifier" in form,
            "client_auth": None,
        }
        state.token_requests.append(record)
        try:
            client, used = await authenticate_client(request, form)
            record["client_id"], record["client_auth"] = client.client_id, used
            if grant_type == "authorization_code":
                body = exchange_code(form, client)
            elif grant_type == "refresh_token":
                body = refresh(form, client)
            else:
                raise OAuthError("unsupported_grant_type", "authorization_code or refresh_token")
        except OAuthError as exc:
            record["error"] = exc.error
            log.info("token refused: %s (%s)", exc.error, exc.description)
            return _oauth_json(exc)
        log.info("token issued: grant_type=%s", grant_type)
        return JSONResponse(body, headers=NO_STORE)

    def exchange_code(form: dict[str, str], client: Client) -> dict[str, Any]:
        code_hash = _sha256(form.get("code", ""))
        grant = state.codes.pop(code_hash, None)
        if grant is None:
            if code_hash in state.used_codes:
                state.counters.code_replays += 1
            raise OAuthError("invalid_grant", "unknown, expired or used code")
        state.used_codes.append(code_hash)
        if grant.expires_at < time.time():
            raise OAuthError("invalid_grant", "unknown, expired or used code")
        if grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "the code was issued to another client")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier", "")
        if not 43 <= len(verifier) <= 128 or not secrets.compare_digest(
            _s256(verifier), grant.code_challenge
        ):
            raise OAuthError("invalid_grant", "PKCE verification failed")
        check_resource(form, grant)
        return issue(grant, client)

    def revoke_family(family: str) -> None:
        for key in [k for k, g in state.refresh.items() if g.family == family]:
            del state.refresh[key]

    def refresh(form: dict[str, str], client: Client) -> dict[str, Any]:
        token_hash = _sha256(form.get("refresh_token", ""))
        grant = state.refresh.pop(token_hash, None)
        if grant is None:
            family = state.used_refresh.get(token_hash)
            if family is not None:
                state.counters.refresh_replays += 1
                revoke_family(family)
                log.warning("refresh token replayed: its family is revoked")
            raise OAuthError("invalid_grant", "unknown, used or revoked refresh token")
        if grant.client_id != client.client_id:
            state.refresh[token_hash] = grant
            raise OAuthError("invalid_grant", "the refresh token was issued to another client")
        _put(state.used_refresh, token_hash, grant.family, MAX_REFRESH_TOKENS)
        check_resource(form, grant)
        scope = form.get("scope")
        if scope is not None:
            narrowed = tuple(scope.split())
            if not set(narrowed) <= set(grant.scopes):
                raise OAuthError("invalid_scope", "scope exceeds the original grant")
            grant = Grant(**{**grant.__dict__, "scopes": narrowed})
        state.counters.refreshes += 1
        return issue(grant, client)

    async def revoke(request: Request) -> Response:
        try:
            form = await _form(request)
            client, _ = await authenticate_client(request, form)
        except OAuthError as exc:
            return _oauth_json(exc)
        token_hash = _sha256(form.get("token", ""))
        grant = state.refresh.get(token_hash)
        if grant is not None and grant.client_id == client.client_id:
            revoke_family(grant.family)
            state.counters.revocations += 1
        return Response(status_code=200, headers=NO_STORE)  # RFC 7009: 200 whatever the token

    # ---- dynamic client registration -------------------------------------------------------

    async def register(request: Request) -> Response:
        if not config.dcr:
            return JSONResponse({"error": "not_found"}, 404)
        raw = await read_body(request, MAX_DOCUMENT_BYTES)
        try:
            data = json.loads(raw or b"")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _registration_error("the request body must be a JSON object")
        uris = data.get("redirect_uris")
        if (
            not isinstance(uris, list)
            or not 1 <= len(uris) <= MAX_REDIRECT_URIS
            or not all(isinstance(u, str) and _is_url(u) for u in uris)
        ):
            return _registration_error(
                "redirect_uris: 1 to 10 http(s) URLs", "invalid_redirect_uri"
            )
        method = data.get("token_endpoint_auth_method", "client_secret_basic")
        if method not in AUTH_METHODS:
            return _registration_error("unsupported token_endpoint_auth_method")
        grant_types = data.get("grant_types", ["authorization_code"])
        if not isinstance(grant_types, list) or not set(grant_types) <= {
            "authorization_code",
            "refresh_token",
        }:
            return _registration_error("grant_types: authorization_code and refresh_token only")
        name = data.get("client_name", "")
        client_id = f"dyn-{secrets.token_urlsafe(12)}"
        secret = None if method == "none" else secrets.token_urlsafe(32)
        client = Client(
            client_id=client_id,
            redirect_uris=tuple(uris),
            auth_method=method,
            secret_hash=_sha256(secret) if secret else None,
            name=str(name)[:100],
            kind="dynamic",
        )
        # Pre-registered clients are never evicted; only dynamic ones count against the cap.
        state.clients[client_id] = client
        dynamic = [k for k, c in state.clients.items() if c.kind == "dynamic"]
        for key in dynamic[: max(0, len(dynamic) - MAX_CLIENTS)]:
            del state.clients[key]
        state.counters.registrations += 1
        log.info("client registered: method=%s", method)
        body: dict[str, Any] = {
            "client_id": client_id,
            "client_id_issued_at": int(time.time()),
            "redirect_uris": list(uris),
            "token_endpoint_auth_method": method,
            "grant_types": grant_types,
            "response_types": ["code"],
            "client_name": client.name,
        }
        if secret is not None:
            body["client_secret"] = secret
            body["client_secret_expires_at"] = 0
        return JSONResponse(body, 201, headers=NO_STORE)

    # ---- test endpoints ----------------------------------------------------------------

    async def test_requests(request: Request) -> Response:
        if not loopback(request):
            return JSONResponse({"error": "not_found"}, 404)
        if request.method == "DELETE":
            state.authorization_requests.clear()
            state.token_requests.clear()
            state.counters = Counters()
            return Response(status_code=204)
        return JSONResponse(
            {
                "authorization_requests": list(state.authorization_requests),
                "token_requests": list(state.token_requests),
                **state.counters.__dict__,
            },
            headers=NO_STORE,
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": "mcp-auth"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal http
        async with httpx2.AsyncClient(
            timeout=5.0, follow_redirects=False, transport=transport, trust_env=False
        ) as client:
            http = client
            try:
                yield
            finally:
                http = None

    app = Starlette(
        routes=[
            Route("/.well-known/oauth-authorization-server", server_metadata, methods=["GET"]),
            Route("/.well-known/openid-configuration", server_metadata, methods=["GET"]),
            Route("/jwks", jwks, methods=["GET"]),
            Route("/authorize", authorize, methods=["GET"]),
            Route("/authorize/decide", decide, methods=["POST"]),
            Route("/token", token, methods=["POST"]),
            Route("/revoke", revoke, methods=["POST"]),
            Route("/register", register, methods=["POST"]),
            Route("/_test/requests", test_requests, methods=["GET", "DELETE"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.auth = state
    return app


def _registration_error(message: str, error: str = "invalid_client_metadata") -> Response:
    return JSONResponse({"error": error, "error_description": message}, 400, headers=NO_STORE)


def _sign_in_page(
    request_id: str, client: Client, resource: str, scopes: tuple[str, ...], users: tuple[str, ...]
) -> str:
    """The consent form: which user approves, for which client, resource and scopes."""
    esc = html.escape
    options = "".join(f'<option value="{esc(u)}">' for u in users)
    return (
        "<!doctype html><meta charset=utf-8><title>MCP notes: sign in</title>"
        "<h1>MCP notes authorization server (local)</h1>"
        f"<p>Client <code>{esc(client.name or client.client_id)}</code> ({esc(client.kind)}) "
        f"asks for <code>{esc(' '.join(scopes))}</code> on <code>{esc(resource)}</code>.</p>"
        '<form method="post" action="/authorize/decide">'
        f'<input type="hidden" name="request_id" value="{esc(request_id)}">'
        '<label>User (sub) <input name="sub" list="users" required autofocus'
        f' value="{esc(users[0]) if users else ""}"></label>'
        f'<datalist id="users">{options}</datalist> '
        '<button type="submit" name="decision" value="approve">Approve</button> '
        '<button type="submit" name="decision" value="deny" formnovalidate>Deny</button>'
        "</form>"
    )


def _client(value: str) -> Client:
    """--client JSON: {"client_id", "redirect_uris", optional "client_secret"}."""
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--client is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("client_id"), str):
        raise argparse.ArgumentTypeError('--client needs a JSON object with "client_id"')
    uris = data.get("redirect_uris")
    if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
        raise argparse.ArgumentTypeError('--client needs "redirect_uris", a list of URLs')
    secret = data.get("client_secret")
    if secret is not None and not isinstance(secret, str):
        raise argparse.ArgumentTypeError("--client: client_secret must be a string")
    return Client(
        client_id=data["client_id"],
        redirect_uris=tuple(uris),
        auth_method="client_secret_basic" if secret else "none",
        secret_hash=_sha256(secret) if secret else None,
        name=str(data.get("client_name", "")),
    )


def _url(value: str) -> str:
    if not _is_url(value):
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {value}")
    return value.rstrip("/")


def config_from_args(argv: list[str] | None = None) -> tuple[AuthConfig, int]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--issuer", type=_url, default=None, help="default http://127.0.0.1:PORT")
    parser.add_argument("--resource", dest="resources", type=_url, action="append", default=[])
    parser.add_argument("--scope", dest="scopes", action="append", default=[])
    parser.add_argument("--user", dest="users", action="append", default=[])
    parser.add_argument("--client", dest="clients", type=_client, action="append", default=[])
    parser.add_argument("--access-token-ttl", type=int, default=3600)
    parser.add_argument("--no-s256", action="store_true", help="TEST: advertise no S256")
    parser.add_argument("--metadata-issuer", type=_url, default=None, help="TEST: wrong issuer")
    parser.add_argument("--no-dcr", action="store_true", help="TEST: no registration endpoint")
    parser.add_argument("--no-cimd", action="store_true", help="TEST: no metadata documents")
    args = parser.parse_args(argv)
    if not 1 <= args.access_token_ttl <= 86_400:
        parser.error("--access-token-ttl: 1 to 86400 seconds")
    config = AuthConfig(
        issuer=args.issuer or f"http://{LOOPBACK}:{args.port}",
        resources=frozenset(args.resources),
        scopes=tuple(args.scopes) or (DEFAULT_SCOPE,),
        users=tuple(args.users),
        clients=tuple(args.clients),
        access_token_ttl=args.access_token_ttl,
        advertise_s256=not args.no_s256,
        metadata_issuer=args.metadata_issuer,
        dcr=not args.no_dcr,
        cimd=not args.no_cimd,
    )
    return config, args.port


def main(argv: list[str] | None = None) -> None:
    config, port = config_from_args(argv)
    serving.serve(create_app(config), port)


if __name__ == "__main__":
    main()
