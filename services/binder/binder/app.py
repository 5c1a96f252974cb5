"""The binder's ASGI application: two route sets on two ports, one process.

- public port (through the ALB): `/oauth2/*` browser routes and `/healthz`;
- internal port (Service Connect only): `/internal/*` for the agent and `/healthz`.

A request is routed by the local port it arrived on, so no routing rule anywhere can expose
the internal API through the ALB: the ALB's target group only knows the public port.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import boto3
import httpx2
from botocore.config import Config
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from binder import pages
from binder.audit import audit
from binder.broker import Broker, ConsentRequired, FlowError, Unavailable
from binder.oauth import OAuthClient
from binder.providers import ProviderRegistry, ProviderSpec, validate_scopes
from binder.sessions import SessionStore
from binder.settings import Settings
from binder.vault import Vault
from svc_common.health import healthz_route
from svc_common.identity import CognitoVerifier, InvalidToken, VerifiedUser, token_from_headers
from svc_common.jsonbody import BodyError, is_json, parse_object
from svc_common.middleware import RequestGuard, SecurityHeaders

# Three attempts in all (botocore's standard mode, with its backoff), 2 s to connect, 3 s to
# answer: a call gives up after about 10 s, so an overloaded AWS turns into a 503 with
# Retry-After before the agent's own 10 s timeout, instead of 25 s of retries (five attempts
# of 5 s each, as it was) that nobody waits for.
AWS_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3},
    connect_timeout=2,
    read_timeout=3,
    # As many pooled connections as worker threads can make calls at once (anyio's default 40).
    max_pool_connections=48,
    user_agent_extra="secure-agents-binder",
)


@dataclass
class Services:
    """Everything the routes use; built once per process (tests build their own)."""

    settings: Settings
    verifier: CognitoVerifier
    registry: ProviderRegistry
    broker: Broker
    vault: Vault
    sessions: SessionStore
    http: httpx2.AsyncClient


def build_services(
    settings: Settings,
    *,
    session: boto3.Session | None = None,
    provider_transport: httpx2.AsyncBaseTransport | None = None,
) -> Services:
    """Real clients: boto3 with the standard retry mode (AWS_ENDPOINT_URL points it at moto
    locally), one shared HTTP client for JWKS and discovery."""
    session = session or boto3.Session(region_name=settings.aws_region)
    secrets_client = session.client("secretsmanager", config=AWS_CONFIG)
    dynamodb = session.client("dynamodb", config=AWS_CONFIG)
    http = httpx2.AsyncClient(
        timeout=settings.http_timeout_seconds, follow_redirects=False, transport=provider_transport
    )
    registry = ProviderRegistry.from_json(
        settings.providers_json, allow_insecure_loopback=settings.allow_insecure_loopback
    )
    vault = Vault(
        client=secrets_client,
        prefix=settings.vault_prefix,
        kms_key_id=settings.vault_kms_key_id,
        cache_ttl=settings.cache_ttl_seconds,
    )
    sessions = SessionStore(
        client=dynamodb,
        table=settings.session_table,
        ttl_seconds=settings.session_ttl_seconds,
        max_sessions_per_user=settings.max_sessions_per_user,
    )
    broker = Broker(
        registry=registry,
        vault=vault,
        sessions=sessions,
        oauth=OAuthClient(timeout=settings.http_timeout_seconds, transport=provider_transport),
        secrets_client=secrets_client,
        http=http,
        public_base_url=settings.public_base_url,
        allowed_return_origins=settings.allowed_return_origins,
        refresh_skew=settings.refresh_skew_seconds,
        lease_seconds=settings.lease_seconds,
    )
    verifier = CognitoVerifier(
        issuer=settings.cognito_issuer,
        client_ids=settings.cognito_client_ids,
        jwks_url=settings.cognito_jwks_url,
        http=http,
    )
    return Services(
        settings=settings,
        verifier=verifier,
        registry=registry,
        broker=broker,
        vault=vault,
        sessions=sessions,
        http=http,
    )


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


def _unavailable_json(exc: Unavailable) -> JSONResponse:
    error = "too_many_requests" if exc.status == 429 else "temporarily_unavailable"
    return JSONResponse(
        {"error": error, "code": exc.code, "retry_after": exc.retry_after},
        status_code=exc.status,
        headers={"retry-after": str(exc.retry_after)},
    )


def _bad_request(field: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": "invalid_request", "field": field, "message": message}, status_code=400
    )


class BinderApp:
    """The process's ASGI app: lifespan for shared clients, dispatch by local port."""

    def __init__(self, services: Services) -> None:
        self.services = services
        settings = services.settings
        self.internal = Starlette(
            routes=internal_routes(services),
            middleware=[Middleware(RequestGuard, max_bytes=settings.max_body_bytes)],
        )
        self.public = Starlette(
            routes=public_routes(services),
            middleware=[
                Middleware(RequestGuard, max_bytes=settings.max_body_bytes),
                Middleware(SecurityHeaders),
            ],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        server = scope.get("server") or ("", 0)
        target: ASGIApp = (
            self.internal if server[1] == self.services.settings.internal_port else self.public
        )
        await target(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        async with self._resources():
            if (await receive())["type"] != "lifespan.startup":
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})

    @contextlib.asynccontextmanager
    async def _resources(self) -> AsyncIterator[None]:
        await self.services.verifier.preload()
        try:
            yield
        finally:
            await self.services.http.aclose()


def create_app(settings: Settings, *, services: Services | None = None) -> BinderApp:
    return BinderApp(services or build_services(settings))


# -- internal API (agent to binder) ------------------------------------------------------------


async def _user_or_401(request: Request, services: Services) -> VerifiedUser | JSONResponse:
    try:
        return await services.verifier.verify(token_from_headers(request.headers))
    except InvalidToken as exc:
        audit(
            "request_rejected",
            outcome="unauthenticated",
            request_id=_request_id(request),
            reason=exc.reason,
        )
        return JSONResponse(
            {"error": "invalid_token", "reason": exc.reason},
            status_code=401,
            headers={"www-authenticate": _www_authenticate(exc.reason)},
        )


def _www_authenticate(reason: str) -> str:
    return f'Bearer error="invalid_token", error_description="{reason}"'


def internal_routes(services: Services) -> list[Route]:
    broker = services.broker

    async def tokens(request: Request) -> Response:
        user = await _user_or_401(request, services)
        if isinstance(user, JSONResponse):
            return user
        if not is_json(request.headers.get("content-type")):
            return JSONResponse(
                {"error": "unsupported_media_type", "message": "send application/json"},
                status_code=415,
            )
        try:
            body = parse_object(await request.body())
        except ClientDisconnect:
            # Nobody reads this answer; it only must not count as a 500.
            return _bad_request("body", "the body was cut short")
        except BodyError as exc:
            return _bad_request(exc.field, exc.message)
        unknown = set(body) - {"provider", "scopes", "return_url"}
        if unknown:
            name = sorted(unknown)[0]
            # A name is echoed only when it is short printable ASCII: a lone surrogate cannot
            # even be encoded into the answer.
            shown = name if name.isascii() and name.isprintable() and len(name) <= 64 else "body"
            return _bad_request(shown, "unknown field")
        provider = body.get("provider")
        if not isinstance(provider, str) or provider not in services.registry:
            return _bad_request("provider", "unknown provider")
        raw_scopes = body.get("scopes", [])
        if not isinstance(raw_scopes, list) or not all(isinstance(s, str) for s in raw_scopes):
            return _bad_request("scopes", "expected a list of strings")
        return_url = body.get("return_url")
        if return_url is not None:
            try:
                return_url = broker.checked_return_url(return_url)
            except ValueError as exc:
                return _bad_request("return_url", str(exc))
        try:
            spec = await broker.provider(provider)
            scopes = validate_scopes(spec, raw_scopes)
        except ValueError as exc:
            return _bad_request("scopes", str(exc))
        except Unavailable as exc:
            return _unavailable_json(exc)
        try:
            result = await broker.token(
                user, spec, scopes, return_url=return_url, request_id=_request_id(request)
            )
        except Unavailable as exc:
            return _unavailable_json(exc)
        if isinstance(result, ConsentRequired):
            return JSONResponse(
                {
                    "error": "consent_required",
                    "reason": result.reason,
                    "authorization_url": result.authorization_url,
                    "session_id": result.session_id,
                    "expires_at": result.expires_at,
                },
                status_code=403,
            )
        return JSONResponse(
            {
                "access_token": result.access_token,
                "token_type": result.token_type,
                "expires_at": result.expires_at,
                "scopes": list(result.scopes),
            },
            headers={"cache-control": "no-store"},
        )

    async def connections(request: Request) -> Response:
        user = await _user_or_401(request, services)
        if isinstance(user, JSONResponse):
            return user
        try:
            found = await broker.connections(user)
        except Unavailable as exc:
            return _unavailable_json(exc)
        return JSONResponse(
            {
                "connections": [
                    {
                        "provider": c.provider,
                        "scopes": list(c.scopes),
                        "expires_at": c.expires_at,
                        "status": c.status,
                        "connected_at": c.connected_at,
                    }
                    for c in found
                ]
            }
        )

    async def disconnect(request: Request) -> Response:
        user = await _user_or_401(request, services)
        if isinstance(user, JSONResponse):
            return user
        spec = await _spec_or_none(services, request.path_params["provider"])
        if spec is None:
            return JSONResponse({"error": "not_found", "message": "unknown provider"}, 404)
        try:
            deleted = await broker.disconnect(user, spec, request_id=_request_id(request))
        except Unavailable as exc:
            return _unavailable_json(exc)
        if deleted is None:
            return JSONResponse({"error": "not_found", "message": "no such connection"}, 404)
        return Response(status_code=204, headers={"x-revocation": deleted.revocation})

    return [
        healthz_route("binder"),
        Route("/internal/tokens", tokens, methods=["POST"]),
        Route("/internal/connections", connections, methods=["GET"]),
        Route("/internal/tokens/{provider}", disconnect, methods=["DELETE"]),
    ]


async def _spec_or_none(services: Services, name: str) -> ProviderSpec | None:
    if name not in services.registry:
        return None
    try:
        return await services.broker.provider(name)
    except (KeyError, Unavailable):
        return None


# -- browser routes (through the ALB) ------------------------------------------------------------


def public_routes(services: Services) -> list[Route]:
    broker = services.broker
    base = services.settings.public_base_url

    async def browser_user(request: Request) -> VerifiedUser | Response:
        try:
            return await services.verifier.verify(token_from_headers(request.headers))
        except InvalidToken as exc:
            audit(
                "request_rejected",
                outcome="unauthenticated",
                request_id=_request_id(request),
                reason=exc.reason,
            )
            return pages.error_page("unauthenticated", 401)

    async def authorize(request: Request) -> Response:
        user = await browser_user(request)
        if isinstance(user, Response):
            return user
        try:
            url = await broker.start_authorization(
                user, request.path_params["session_id"], request_id=_request_id(request)
            )
        except FlowError as exc:
            return pages.error_page(exc.code, exc.status)
        except Unavailable as exc:
            response = pages.error_page("unavailable_flow", exc.status)
            response.headers["retry-after"] = str(exc.retry_after)
            return response
        return RedirectResponse(url, status_code=302)

    async def callback(request: Request) -> Response:
        user = await browser_user(request)
        if isinstance(user, Response):
            return user
        provider = request.path_params["provider"]
        if provider not in services.registry:
            return pages.error_page("unknown_provider", 404)
        params = {k: v for k, v in request.query_params.items() if len(v) <= 4096}
        try:
            return_url = await broker.complete_authorization(
                user, provider, params, request_id=_request_id(request)
            )
        except FlowError as exc:
            return pages.error_page(exc.code, exc.status)
        except Unavailable as exc:
            response = pages.error_page("unavailable_flow", exc.status)
            response.headers["retry-after"] = str(exc.retry_after)
            return response
        if return_url:
            return RedirectResponse(return_url, status_code=303)
        return pages.success_page(provider)

    async def connections(request: Request) -> Response:
        user = await browser_user(request)
        if isinstance(user, Response):
            return user
        try:
            found = await broker.connections(user)
        except Unavailable:
            return pages.error_page("unavailable", 503)
        notice = request.query_params.get("disconnected")
        note = None
        if notice in services.registry:
            note = f"{notice} was disconnected. Its tokens are deleted from the vault."
            if request.query_params.get("revoked") != "yes":
                note += (
                    f" {notice} did not confirm that it revoked them; you can also remove "
                    "this app's access in your account settings there."
                )
        return pages.connections_page(found, note)

    async def disconnect(request: Request) -> Response:
        user = await browser_user(request)
        if isinstance(user, Response):
            return user
        if not _same_origin(request, base):
            audit(
                "request_rejected",
                outcome="refused",
                request_id=_request_id(request),
                user_hash=user.user_hash,
                reason="cross_site_form",
            )
            return pages.error_page("cross_site", 403)
        spec = await _spec_or_none(services, request.path_params["provider"])
        if spec is None:
            return pages.error_page("unknown_provider", 404)
        try:
            done = await broker.disconnect(user, spec, request_id=_request_id(request))
        except Unavailable:
            return pages.error_page("unavailable", 503)
        revoked = "yes" if done is not None and done.revocation == "revoked_upstream" else "no"
        return RedirectResponse(
            f"/oauth2/connections?disconnected={spec.name}&revoked={revoked}", status_code=303
        )

    return [
        healthz_route("binder"),
        Route("/oauth2/authorize/{session_id}", authorize, methods=["GET"]),
        Route("/oauth2/callback/{provider}", callback, methods=["GET"]),
        Route("/oauth2/connections", connections, methods=["GET"]),
        Route("/oauth2/connections/{provider}/disconnect", disconnect, methods=["POST"]),
    ]


def _same_origin(request: Request, base: str) -> bool:
    """CSRF defence without a secret: browsers send Origin and Sec-Fetch-Site on POST.

    The binder's pages use `Referrer-Policy: no-referrer` (callback URLs hold codes), which
    makes browsers post `Origin: null`; `Sec-Fetch-Site: same-origin`, which page script
    cannot set, then decides."""
    origin = request.headers.get("origin")
    if origin == base:
        return True
    return request.headers.get("sec-fetch-site") == "same-origin" and origin in (None, "null")
