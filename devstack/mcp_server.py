"""The local MCP server: a remote MCP tool server protected by OAuth, as the agent meets them.

Built with the official MCP Python SDK (`MCPServer`, Streamable HTTP at `/mcp`), using the SDK's
resource-server hooks (`mcp.server.auth`): `AuthSettings` (issuer, resource URL, required scope,
`validate_token_resource=True`), a `TokenVerifier` of ours (below), which the SDK wires into its
`BearerAuthBackend` + `RequireAuthMiddleware`, and its Protected Resource Metadata route.
So, as the MCP authorization specification (2025-11-25) asks of a server:

- a request without a valid token gets 401 with
  `WWW-Authenticate: Bearer error="invalid_token", ..., resource_metadata="<PRM URL>"`;
- Protected Resource Metadata (RFC 9728) at `/.well-known/oauth-protected-resource/mcp` (and the
  same document at the root form `/.well-known/oauth-protected-resource`): `resource` (this
  server's canonical URL, `http://127.0.0.1:<port>/mcp`), `authorization_servers` [the issuer],
  `scopes_supported`, `bearer_methods_supported: ["header"]`;
- an access token is accepted only if it is an RFC 9068 JWT (RS256, `typ: at+jwt`) signed by a
  key of the issuer's JWKS (found through its RFC 8414 metadata, whose `issuer` must match), with
  `iss` exact, `exp` in the future, and this server's URL in `aud`: a token issued for another
  resource (another MCP server, the notes API) is refused, so a client cannot pass one through.

Tools, per user (the token's `iss` + `sub`), in memory: `list_notes` (readOnlyHint: true) and
`add_note(title, body)` (readOnlyHint: false, destructiveHint: false). No token, title or body
is ever logged.

LOCAL ONLY, for tests (127.0.0.1 clients only, no authentication): `GET /_test/writes` ->
{"writes": N, "write_attempts": M}, as devstack.notes_server's; `GET /_test/requests` ->
{"challenges": 401 answers on /mcp, "prm_fetches", "accepted": requests with a valid token,
"tool_calls", "refused":
{reason: count}, "token_hashes": SHA-256 prefixes of the distinct bearer tokens received (the last
MAX_SEEN_TOKENS; never a token)}, so a test can see discovery happen and which tokens reached
which server; `GET /healthz`.

Run: python -m devstack.mcp_server --port P --issuer URL [--scope S]   (127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import time
import urllib.parse
import uuid
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard

import httpx2
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jws import extract_compact
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devstack import serving
from devstack.jwks import IssuerKeys

LOOPBACK = "127.0.0.1"
PATH = "/mcp"
SCOPE = "notes"
PROVIDER_NAME = "mcpnotes"  # its name in the binder's PROVIDERS and the agent
DISPLAY_NAME = "MCP notes (local)"
MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 10_000
MAX_NOTES_PER_USER = 1000
MAX_TOKEN_CHARS = 8192
MAX_SEEN_TOKENS = 1000
LEEWAY_SECONDS = 30
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
NO_STORE = {"cache-control": "no-store"}

log = logging.getLogger("devstack.mcp")


@dataclass(frozen=True)
class McpConfig:
    issuer: str  # the authorization server, exactly as its tokens' `iss`
    resource: str  # this server's canonical URL, in the tokens' `aud`
    scope: str = SCOPE


@dataclass
class Store:
    notes: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    writes: int = 0
    write_attempts: int = 0


@dataclass
class Seen:
    """What reached this server, for the tests (GET /_test/requests)."""

    challenges: int = 0
    prm_fetches: int = 0
    accepted: int = 0  # HTTP requests with a valid token (an MCP session makes several)
    tool_calls: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    token_hashes: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def token(self, token: str) -> None:
        self.token_hashes[hashlib.sha256(token.encode()).hexdigest()[:16]] = None
        while len(self.token_hashes) > MAX_SEEN_TOKENS:
            self.token_hashes.popitem(last=False)


class JwtTokenVerifier:
    """The SDK's TokenVerifier protocol for RFC 9068 access tokens of one issuer.

    Returns None (the SDK then answers 401 invalid_token) for anything not issued by the issuer
    for this resource; the reason is logged as a short code. Keys: devstack.jwks.
    """

    def __init__(self, config: McpConfig, seen: Seen | None = None) -> None:
        self._config = config
        self._seen = seen or Seen()
        # Its HTTP client is set by the app's lifespan.
        self.keys = IssuerKeys(config.issuer, ".well-known/oauth-authorization-server")

    async def verify_token(self, token: str) -> AccessToken | None:
        self._seen.token(token)
        try:
            claims = await self._verify(token)
        except _Refused as exc:
            log.info("token refused: %s", exc)
            self._seen.refused[str(exc)] += 1
            return None
        self._seen.accepted += 1
        scope = claims.get("scope")
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=scope.split() if isinstance(scope, str) else [],
            expires_at=int(claims["exp"]),
            resource=self._config.resource,
            subject=str(claims["sub"]),
            claims={"iss": claims["iss"]},
        )

    async def _verify(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise _Refused("malformed")
        try:
            # The header only, not trusted until the signature is verified.
            header = extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeEncodeError):
            raise _Refused("malformed") from None
        if header.get("alg") != "RS256":
            raise _Refused("unsupported_algorithm")
        if str(header.get("typ", "")).lower() not in ACCESS_TOKEN_TYPES:
            raise _Refused("not_an_access_token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _Refused("unknown_key")
        key = await self.keys.key(kid)
        if key is None:
            raise _Refused("unknown_key")
        try:
            claims: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256"]).claims
        except (JoseError, ValueError):
            raise _Refused("bad_signature") from None
        now = time.time()
        if claims.get("iss") != self._config.issuer:
            raise _Refused("wrong_issuer")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not _number(exp) or not _number(iat):
            raise _Refused("missing_claim")
        if exp <= now:
            raise _Refused("expired")
        if iat > now + LEEWAY_SECONDS:
            raise _Refused("not_yet_valid")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or self._config.resource not in audiences:
            raise _Refused("wrong_audience")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 255:
            raise _Refused("missing_claim")
        return claims


class _Refused(Exception):
    """A token is refused; the message is a short code, safe to log."""


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _user_key(ctx: Context[Any, Any]) -> str:
    """The caller, from the token the SDK's middleware verified for this very HTTP request."""
    request = ctx.request_context.request
    user = request.scope.get("user") if isinstance(request, Request) else None
    token = user.access_token if isinstance(user, AuthenticatedUser) else get_access_token()
    if token is None or not token.subject:
        raise ToolError("not authenticated")
    issuer = (token.claims or {}).get("iss", "")
    return f"{issuer}|{token.subject}"


def _log_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _text_problem(value: str, name: str, *, low: int, high: int) -> str | None:
    if not low <= len(value) <= high:
        return f"{name} must not be empty" if low and not value else f"{name} is too long"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{name} must be valid Unicode"
    return None


def prm_url(resource: str) -> str:
    """RFC 9728 section 3.1: the well-known segment inserted between host and path."""
    parts = urllib.parse.urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}/.well-known/oauth-protected-resource{parts.path}"


def create_app(config: McpConfig) -> Starlette:
    """The MCP server's ASGI app: the SDK's Streamable HTTP app with its auth, plus test routes."""
    store = Store()
    seen = Seen()
    verifier = JwtTokenVerifier(config, seen)
    server: MCPServer[Any] = MCPServer(
        "mcp-notes",
        title=DISPLAY_NAME,
        instructions="Per-user notes on the local MCP server.",
        token_verifier=verifier,
        auth=AuthSettings(
            issuer_url=AnyHttpUrl(config.issuer),
            resource_server_url=AnyHttpUrl(config.resource),
            required_scopes=[config.scope],
            validate_token_resource=True,
        ),
    )

    @server.tool(
        name="list_notes",
        title="List my MCP notes",
        description="List the caller's notes on the MCP notes server, oldest first.",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    def list_notes(ctx: Context[Any, Any]) -> dict[str, Any]:
        seen.tool_calls += 1
        key = _user_key(ctx)
        notes = store.notes.get(key, [])
        log.info("list_notes user=%s count=%d", _log_id(key), len(notes))
        return {"notes": notes}

    @server.tool(
        name="add_note",
        title="Add an MCP note",
        description="Add a note (title 1-200 characters, body up to 10,000) for the caller.",
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=False,
        ),
    )
    def add_note(title: str, body: str, ctx: Context[Any, Any]) -> dict[str, str]:
        seen.tool_calls += 1
        store.write_attempts += 1
        key = _user_key(ctx)
        for name, value, low, high in (
            ("title", title, 1, MAX_TITLE_CHARS),
            ("body", body, 0, MAX_BODY_CHARS),
        ):
            problem = _text_problem(value, name, low=low, high=high)
            if problem is not None:
                raise ToolError(problem)
        notes = store.notes.setdefault(key, [])
        if len(notes) >= MAX_NOTES_PER_USER:
            raise ToolError(f"at most {MAX_NOTES_PER_USER} notes")
        note = {"id": str(uuid.uuid4()), "title": title, "body": body, "created_at": _now()}
        notes.append(note)
        store.writes += 1
        log.info("add_note id=%s user=%s", note["id"], _log_id(key))
        return note

    prm = {
        "resource": config.resource,
        "authorization_servers": [config.issuer],
        "scopes_supported": [config.scope],
        "bearer_methods_supported": ["header"],
        "resource_name": DISPLAY_NAME,
    }

    async def protected_resource_metadata(request: Request) -> Response:
        seen.prm_fetches += 1
        return JSONResponse(prm)

    async def writes(request: Request) -> Response:
        if request.client is None or request.client.host != LOOPBACK:
            return JSONResponse({"error": "not_found"}, 404)
        return JSONResponse(
            {"writes": store.writes, "write_attempts": store.write_attempts}, headers=NO_STORE
        )

    async def requests(request: Request) -> Response:
        if request.client is None or request.client.host != LOOPBACK:
            return JSONResponse({"error": "not_found"}, 404)
        return JSONResponse(
            {
                "challenges": seen.challenges,
                "prm_fetches": seen.prm_fetches,
                "accepted": seen.accepted,
                "tool_calls": seen.tool_calls,
                "refused": dict(seen.refused),
                "token_hashes": list(seen.token_hashes),
            },
            headers=NO_STORE,
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": "mcp"})

    app = server.streamable_http_app(streamable_http_path=PATH, host=LOOPBACK)
    # Our own PRM route in place of the SDK's: its model (pydantic AnyHttpUrl) writes the issuer
    # as "http://127.0.0.1:P/", which is not the issuer's exact string (RFC 8414 section 3.3
    # compares issuers as strings), so a strict client would refuse the pair. Served at the
    # path-inserted URL and at the root form (RFC 9728 section 3.1), for clients that try both.
    well_known = urllib.parse.urlsplit(prm_url(config.resource)).path
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != well_known]
    app.router.routes.extend(
        [
            Route(well_known, protected_resource_metadata, methods=["GET"]),
            Route(
                "/.well-known/oauth-protected-resource",
                protected_resource_metadata,
                methods=["GET"],
            ),
            Route("/_test/writes", writes, methods=["GET"]),
            Route("/_test/requests", requests, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    sdk_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx2.AsyncClient(timeout=5.0, follow_redirects=False, trust_env=False) as http:
            verifier.keys.http = http
            try:
                async with sdk_lifespan(app):
                    yield
            finally:
                verifier.keys.http = None

    app.router.lifespan_context = lifespan
    app.state.store = store
    app.state.seen = seen
    app.add_middleware(_CountChallenges, seen=seen)
    return app


class _CountChallenges:
    """Counts the 401 challenges the SDK's auth middleware answers on the MCP endpoint (what a
    client's discovery starts from)."""

    def __init__(self, app: ASGIApp, seen: Seen) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != PATH:
            await self.app(scope, receive, send)
            return

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.seen.challenges += 1
            await send(message)

        await self.app(scope, receive, counting)


def mcp_provider_entry(
    url: str,
    *,
    client_id: str | None = None,
    secret_arn: str | None = None,
    authorization_server: str | None = None,
) -> dict[str, object]:
    """The binder's PROVIDERS entry for this server. Without `client_id` the binder registers by
    client metadata document or dynamic registration; with it (and the secret's ARN for a
    confidential client), it uses that pre-registered client, which belongs to the
    `authorization_server` the entry then names (the binder requires it)."""
    entry: dict[str, object] = {
        "name": PROVIDER_NAME,
        "kind": "mcp",
        "url": url,
        "display_name": DISPLAY_NAME,
    }
    if client_id is not None:
        if authorization_server is None:
            raise ValueError("client_id without authorization_server")
        entry["client_id"] = client_id
        entry["authorization_server"] = authorization_server
        if secret_arn is not None:
            entry["secret_arn"] = secret_arn
    elif secret_arn is not None:
        raise ValueError("secret_arn without client_id")
    return entry


def config_from_args(argv: list[str] | None = None) -> tuple[McpConfig, int]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--issuer", type=serving.loopback_url, required=True)
    parser.add_argument("--scope", default=SCOPE)
    args = parser.parse_args(argv)
    resource = f"http://{LOOPBACK}:{args.port}{PATH}"
    return McpConfig(issuer=args.issuer, resource=resource, scope=args.scope), args.port


def main(argv: list[str] | None = None) -> None:
    config, port = config_from_args(argv)
    # The SDK logs each session at INFO with its id; a session id is a bearer-like handle.
    logging.getLogger("mcp").setLevel(logging.WARNING)
    serving.serve(create_app(config), port)


if __name__ == "__main__":
    main()
