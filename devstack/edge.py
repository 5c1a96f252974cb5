"""The dev edge: plays the ALB's part in the local stack, on 127.0.0.1 only.

Routing, in the order of the ALB's listener rules:

- `/_edge/login` (GET form, POST sign-in), `/_edge/logout` (POST), `/_edge/healthz`: the edge's
  own pages. The sign-in form stands in for the Cognito hosted UI; it signs in against the
  (moto) user pool with USER_PASSWORD_AUTH and keeps the tokens in a server-side session.
- `/oauth2/*` -> binder (public port) and `/`, `/app/*` -> agent: browser routes. Their identity
  comes from the edge's session cookie only, as `authenticate-cognito` takes it from the ALB's:
  a request without a live session is redirected (302) to the sign-in page, whatever its method
  and whatever else it carries (an `Authorization: Bearer` header is no session), and never
  reaches an upstream; with one, it carries the session user's Cognito access token in
  `x-amzn-oidc-accesstoken`. Other request headers pass unchanged, as the ALB passes them:
  `Origin` and `Sec-Fetch-*` (the binder's same-origin checks on its POSTs), and a client's
  `Authorization` too, which the binder's browser routes must therefore ignore.
- `GET /oauth2/client-metadata/{name}.json` -> binder, no sign-in: the binder's OAuth Client ID
  Metadata Document of mcp provider `name` (1-32 of a-z, 0-9 and inner `-`), fetched by MCP
  authorization servers (a server, not a browser). GET and that shape only, stricter than the
  ALB's pattern (`*` there matches any characters, `/` included; the binder refuses the rest):
  every other /oauth2/ request, HEAD included, keeps the session rule.
- `/api/*` -> agent, no sign-in at the edge: callers send their own `Authorization: Bearer`.
- everything else, `/internal/*` included, is a fixed 404.

Client-sent `x-amzn-oidc-*` headers are always removed, as the ALB does. Tokens, passwords and
URLs (a callback's carries the authorization code and state) are never logged: devstack.logs
holds httpx2 and the other URL-logging libraries at WARNING.

Run: python -m devstack.edge --port P --binder-public URL --agent URL --cognito-endpoint URL
--client-id ID
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import html
import logging
import re
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy
from typing import Any

import anyio.to_thread
import boto3
import httpx2
from botocore.exceptions import BotoCoreError, ClientError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from devstack import serving

LOOPBACK = "127.0.0.1"
COOKIE = "edge_session"
REFRESH_MARGIN_SECONDS = 60
MAX_FORM_BYTES = 16 * 1024
MAX_PROXY_BODY_BYTES = 10 * 1024 * 1024
UPSTREAM_TIMEOUT_SECONDS = 60.0
PROXY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "content-security-policy": PAGE_CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}

# Request headers never forwarded: hop-by-hop ones, the ones httpx sets itself, and
# accept-encoding (the edge's client negotiates compression and decodes the body itself).
_DROP_REQUEST = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
        "x-forwarded-proto",
        "x-forwarded-host",
    }
)
_DROP_RESPONSE = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "content-encoding",
    }
)
_ALB_IDENTITY_PREFIX = "x-amzn-oidc-"

log = logging.getLogger("devstack.edge")


@dataclass(frozen=True)
class EdgeConfig:
    binder_public: str  # the binder's PUBLIC port (/oauth2/*), e.g. http://127.0.0.1:8101
    agent: str  # e.g. http://127.0.0.1:8102
    cognito_endpoint: str  # the moto server URL
    user_pool_client_id: str
    region: str = "us-east-1"
    session_seconds: int = 8 * 3600


@dataclass
class Session:
    """One signed-in browser. `expires_at` is the access token's expiry, `ends_at` the session's."""

    access_token: str
    refresh_token: str
    expires_at: float
    username: str
    ends_at: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)

    def __repr__(self) -> str:  # never show tokens in tracebacks or logs
        return f"Session(username={self.username!r}, expires_at={self.expires_at:.0f})"


class SessionStore:
    """Server-side sessions, keyed by a hash of the cookie value (the cookie is the secret)."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def create(self, session: Session) -> str:
        self._prune()
        session_id = secrets.token_urlsafe(32)
        self._sessions[self._key(session_id)] = session
        return session_id

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        key = self._key(session_id)
        session = self._sessions.get(key)
        if session is not None and session.ends_at <= time.time():
            del self._sessions[key]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(self._key(session_id), None)

    def values(self) -> list[Session]:
        return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)

    def _prune(self) -> None:
        now = time.time()
        for key in [k for k, s in self._sessions.items() if s.ends_at <= now]:
            del self._sessions[key]


class _NoCookies(DefaultCookiePolicy):
    """The shared upstream client keeps no cookies: they travel per request, in the header."""

    def set_ok(self, cookie: Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Cookie, request: Any) -> bool:
        return False


class SignInError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def make_cognito_client(config: EdgeConfig) -> Any:
    return boto3.client(
        "cognito-idp",
        region_name=config.region,
        endpoint_url=config.cognito_endpoint,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto's placeholder credentials
    )


def safe_next(value: str | None) -> str:
    """A local path to return to after sign-in, or "/" (never another site)."""
    if (
        not value
        or len(value) > 2048
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    ):
        return "/"
    return value


def _own_origin(request: Request) -> str | None:
    host = request.headers.get("host", "").strip().lower()
    if not host:
        return None
    host = host.removesuffix(":80")
    return f"http://{host}"


def _same_origin(request: Request) -> bool:
    """The form was posted by a page of this origin.

    Pages sent with `Referrer-Policy: no-referrer` make browsers post `Origin: null`, so a
    `Sec-Fetch-Site: same-origin` (set by the browser, not by page script) also counts."""
    origin = request.headers.get("origin")
    expected = _own_origin(request)
    if origin is not None and expected is not None and origin.lower() == expected:
        return True
    return request.headers.get("sec-fetch-site") == "same-origin" and origin in (None, "null")


def _page(body: str, status: int = 200) -> Response:
    return Response(body, status, headers=PAGE_HEADERS, media_type="text/html")


def login_page(next_path: str, *, error: str | None = None, username: str = "") -> str:
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in (local)</title>
<style>
body {{ font: 16px/1.4 system-ui, sans-serif; background: #f4f5f7; margin: 0; }}
main {{ max-width: 22rem; margin: 4rem auto; background: #fff; padding: 2rem;
  border-radius: 8px; box-shadow: 0 1px 4px rgba(0, 0, 0, .15); }}
h1 {{ font-size: 1.3rem; margin-top: 0; }}
label {{ display: block; margin: 1rem 0 .25rem; }}
input[type=text], input[type=password] {{ width: 100%; box-sizing: border-box; padding: .5rem; }}
button {{ margin-top: 1.25rem; width: 100%; padding: .6rem; }}
.error {{ color: #a40000; }}
.note {{ color: #555; font-size: .85rem; margin-top: 1.5rem; }}
</style>
</head>
<body>
<main>
<h1>Sign in</h1>
{message}
<form method="post" action="/_edge/login">
<input type="hidden" name="next" value="{html.escape(next_path)}">
<label for="username">Username</label>
<input id="username" name="username" type="text" autocomplete="username" required
  value="{html.escape(username)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<p class="note">Local development: this page stands in for the Cognito hosted UI
(in AWS the load balancer signs you in with Amazon Cognito).</p>
</main>
</body>
</html>
"""


def _strip_edge_cookie(value: str) -> str:
    kept = [
        part.strip()
        for part in value.split(";")
        if part.strip() and part.split("=", 1)[0].strip() != COOKIE
    ]
    return "; ".join(kept)


def forward_headers(request: Request, *, access_token: str | None) -> list[tuple[str, str]]:
    """The request headers sent upstream (see the module docstring)."""
    raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    named_by_connection = {
        token.strip().lower()
        for name, value in raw
        if name.lower() == "connection"
        for token in value.split(",")
    }
    headers: list[tuple[str, str]] = []
    forwarded_for: list[str] = []
    for name, value in raw:
        lower = name.lower()
        if (
            lower in _DROP_REQUEST
            or lower in named_by_connection
            or lower.startswith("proxy-")
            or lower.startswith(_ALB_IDENTITY_PREFIX)
        ):
            continue
        if lower == "x-forwarded-for":
            forwarded_for.append(value)
            continue
        if lower == "cookie":
            value = _strip_edge_cookie(value)
            if not value:
                continue
        headers.append((lower, value))
    if request.client is not None:
        forwarded_for.append(request.client.host)
    if forwarded_for:
        headers.append(("x-forwarded-for", ", ".join(forwarded_for)))
    headers.append(("x-forwarded-proto", "http"))
    host = request.headers.get("host")
    if host:
        headers.append(("x-forwarded-host", host))
    if access_token is not None:
        headers.append(("x-amzn-oidc-accesstoken", access_token))
    return headers


def _response_headers(upstream: httpx2.Response, *, head: bool) -> Iterable[tuple[bytes, bytes]]:
    for name, value in upstream.headers.multi_items():
        lower = name.lower()
        if lower in _DROP_RESPONSE and not (head and lower == "content-length"):
            continue
        if lower == "set-cookie" and value.split("=", 1)[0].strip() == COOKIE:
            continue  # an upstream never sets (or clears) the edge's own session
        yield lower.encode("latin-1"), value.encode("latin-1")


def _not_found() -> Response:
    return PlainTextResponse("Not found", 404)


def _to_sign_in(request: Request) -> Response:
    """What `authenticate-cognito` (on_unauthenticated_request=authenticate) answers a request
    without a session, whatever its method: a 302 to sign-in. A GET comes back to where it was
    going; the body of a POST cannot be replayed, so sign-in leads to the home page instead (a
    page's script sees the redirect, e.g. fetch's `redirect: "manual"`, and asks to reload)."""
    next_path = "/"
    if request.method in ("GET", "HEAD"):
        target = request.scope.get("raw_path", request.url.path.encode())
        next_path = bytes(target).decode("latin-1")
        if request.url.query:
            next_path += "?" + request.url.query
    query = urllib.parse.urlencode({"next": next_path})
    response = RedirectResponse(f"/_edge/login?{query}", status_code=302)
    response.headers["cache-control"] = "no-store"
    return response


# The binder's documents (binder.providers.mcp.CLIENT_METADATA_PREFIX + name + ".json"): the
# name grammar of provider names, anchored at both ends (fullmatch: no trailing newline).
CLIENT_METADATA_PREFIX = "/oauth2/client-metadata/"
CLIENT_METADATA_DOCUMENT = re.compile(
    re.escape(CLIENT_METADATA_PREFIX) + r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?\.json"
)


def _route(path: str, method: str = "GET") -> tuple[str, bool] | None:
    """(upstream name, browser route?) for a request, as the ALB's listener rules."""
    segments = path.split("/")
    if "." in segments or ".." in segments:
        return None
    if method == "GET" and CLIENT_METADATA_DOCUMENT.fullmatch(path):
        return "binder", False
    if path.startswith("/oauth2/"):
        return "binder", True
    if path == "/" or path.startswith("/app/"):
        return "agent", True
    if path.startswith("/api/"):
        return "agent", False
    return None


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None past `limit` bytes (declared or streamed): never read whole first."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_edge(
    config: EdgeConfig,
    *,
    cognito_client: Any | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> Starlette:
    cognito = cognito_client if cognito_client is not None else make_cognito_client(config)
    sessions = SessionStore()
    upstreams = {"binder": config.binder_public.rstrip("/"), "agent": config.agent.rstrip("/")}
    client: httpx2.AsyncClient | None = None

    async def initiate_auth(flow: str, parameters: dict[str, str]) -> dict[str, Any]:
        call = functools.partial(
            cognito.initiate_auth,
            AuthFlow=flow,
            ClientId=config.user_pool_client_id,
            AuthParameters=parameters,
        )
        try:
            response: dict[str, Any] = await anyio.to_thread.run_sync(call)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "unknown"))
            log.info("cognito %s refused: %s", flow, code)
            if code in ("NotAuthorizedException", "UserNotFoundException"):
                raise SignInError(401, "Wrong username or password") from None
            if code == "PasswordResetRequiredException":
                raise SignInError(401, "This user must reset their password") from None
            raise SignInError(503, "Sign-in is unavailable, try again") from None
        except BotoCoreError as exc:
            log.warning("cognito %s failed: %s", flow, type(exc).__name__)
            raise SignInError(503, "Sign-in is unavailable, try again") from None
        result = response.get("AuthenticationResult")
        if not isinstance(result, dict) or "AccessToken" not in result:
            challenge = str(response.get("ChallengeName", "unknown"))
            log.info("cognito %s answered with challenge %s", flow, challenge)
            raise SignInError(401, "This user cannot sign in here (a challenge is pending)")
        return result

    async def refreshed(session_id: str | None) -> Session | None:
        """The request's session with a fresh access token, or None (sign in again)."""
        session = sessions.get(session_id)
        if session is None:
            return None
        async with session.lock:
            if sessions.get(session_id) is not session:
                return None  # dropped by a concurrent refresh that failed
            if session.expires_at - REFRESH_MARGIN_SECONDS > time.time():
                return session
            try:
                result = await initiate_auth(
                    "REFRESH_TOKEN_AUTH", {"REFRESH_TOKEN": session.refresh_token}
                )
            except SignInError:
                sessions.drop(session_id)
                return None
            session.access_token = str(result["AccessToken"])
            session.expires_at = time.time() + int(result.get("ExpiresIn", 3600))
            if result.get("RefreshToken"):
                session.refresh_token = str(result["RefreshToken"])
            return session

    async def login_form(request: Request) -> Response:
        return _page(login_page(safe_next(request.query_params.get("next"))))

    async def login(request: Request) -> Response:
        if not _same_origin(request):
            return PlainTextResponse("Forbidden: cross-site request", 403)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return PlainTextResponse("Send the sign-in form", 415)
        body = await read_body(request, MAX_FORM_BYTES)
        if body is None:
            return PlainTextResponse("Request body too large", 413)
        try:
            form = urllib.parse.parse_qs(
                body.decode("utf-8"), keep_blank_values=True, max_num_fields=10
            )
        except (UnicodeDecodeError, ValueError):
            return PlainTextResponse("Malformed form", 400)
        username = (form.get("username") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        next_path = safe_next((form.get("next") or ["/"])[0])
        if not username or not password or len(username) > 128 or len(password) > 256:
            page = login_page(next_path, error="Enter a username and password", username="")
            return _page(page, 400)
        try:
            result = await initiate_auth(
                "USER_PASSWORD_AUTH", {"USERNAME": username, "PASSWORD": password}
            )
        except SignInError as exc:
            return _page(login_page(next_path, error=exc.message, username=username), exc.status)
        now = time.time()
        session_id = sessions.create(
            Session(
                access_token=str(result["AccessToken"]),
                refresh_token=str(result.get("RefreshToken", "")),
                expires_at=now + int(result.get("ExpiresIn", 3600)),
                username=username,
                ends_at=now + config.session_seconds,
            )
        )
        log.info("signed in: %s", username)
        response = RedirectResponse(next_path, status_code=303)
        response.headers["cache-control"] = "no-store"
        response.set_cookie(
            COOKIE,
            session_id,
            max_age=config.session_seconds,
            path="/",
            httponly=True,
            samesite="lax",
            secure=False,  # local http on loopback; the ALB's cookie is Secure
        )
        return response

    async def logout(request: Request) -> Response:
        if not _same_origin(request):
            return PlainTextResponse("Forbidden: cross-site request", 403)
        sessions.drop(request.cookies.get(COOKIE))
        response = RedirectResponse("/_edge/login", status_code=303)
        response.headers["cache-control"] = "no-store"
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")
        return response

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "service": "edge"}, headers={"cache-control": "no-store"}
        )

    async def dispatch(request: Request) -> Response:
        # The decoded path the upstream will route on: `request.url.path` goes through urlsplit,
        # which drops tabs and newlines (`a.json%0A` would pass as `a.json`).
        route = _route(request.scope["path"], request.method)
        if route is None:
            return _not_found()
        name, browser = route
        access_token: str | None = None
        if browser:
            session = await refreshed(request.cookies.get(COOKIE))
            if session is None:
                return _to_sign_in(request)
            access_token = session.access_token
        return await proxy(request, name, access_token)

    async def proxy(request: Request, name: str, access_token: str | None) -> Response:
        if client is None:
            raise RuntimeError("the edge's upstream client starts with the app's lifespan")
        body = await read_body(request, MAX_PROXY_BODY_BYTES)
        if body is None:
            return PlainTextResponse("Request body too large", 413)
        raw_path = bytes(request.scope.get("raw_path") or request.url.path.encode())
        url = upstreams[name] + raw_path.decode("latin-1")
        query = request.scope.get("query_string", b"")
        if query:
            url += "?" + bytes(query).decode("latin-1")
        try:
            outgoing = client.build_request(
                request.method,
                url,
                content=body,
                headers=forward_headers(request, access_token=access_token),
            )
            upstream = await client.send(outgoing)
        except (httpx2.RequestError, httpx2.InvalidURL) as exc:
            log.warning("upstream %s unavailable: %s", name, type(exc).__name__)
            return PlainTextResponse(f"Upstream {name} unavailable", 502)
        head = request.method == "HEAD"
        response = Response(upstream.content, status_code=upstream.status_code)
        if head:
            response.raw_headers = []
        response.raw_headers.extend(_response_headers(upstream, head=head))
        return response

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal client
        started = client = httpx2.AsyncClient(
            timeout=UPSTREAM_TIMEOUT_SECONDS,
            follow_redirects=False,
            cookies=CookieJar(policy=_NoCookies()),
            transport=transport,
            trust_env=False,  # loopback only: no proxies from the environment
        )
        try:
            yield
        finally:
            client = None
            await started.aclose()

    app = Starlette(
        routes=[
            Route("/_edge/healthz", healthz, methods=["GET"]),
            Route("/_edge/login", login_form, methods=["GET"]),
            Route("/_edge/login", login, methods=["POST"]),
            Route("/_edge/logout", logout, methods=["POST"]),
            Route("/{path:path}", dispatch, methods=PROXY_METHODS),
        ],
        lifespan=lifespan,
    )
    app.state.sessions = sessions
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="The local stack's dev edge (ALB stand-in).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--binder-public", type=serving.loopback_url, required=True)
    parser.add_argument("--agent", type=serving.loopback_url, required=True)
    parser.add_argument("--cognito-endpoint", type=serving.loopback_url, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args()
    config = EdgeConfig(
        binder_public=args.binder_public,
        agent=args.agent,
        cognito_endpoint=args.cognito_endpoint,
        user_pool_client_id=args.client_id,
        region=args.region,
    )
    # Quiet logging (serving.serve): httpx2 would log every URL, and callbacks hold codes.
    serving.serve(create_edge(config), args.port)


if __name__ == "__main__":
    main()
