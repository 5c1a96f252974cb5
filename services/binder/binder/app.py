"""The binder's ASGI application: two route sets on two ports, one process.

- public port (through the ALB): `/oauth2/*` browser routes and `/healthz`;
- internal port (Service Connect only): `/internal/*` for the agent and `/healthz`.

The approval routes (`/oauth2/actions/*`) take the user's identity only from the header the
ALB sets from its session cookie, and refuse any request that carries `Authorization`: a
process holding the user's bearer token (the agent) can propose an action, never approve it.

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
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from binder import pages
from binder.actions import (
    ACTION_ID,
    DONE,
    EXPIRED,
    MAX_PROPOSAL_BODY_BYTES,
    SHA256_HEX,
    TOOL_NAME,
    Action,
    ActionNotFound,
    ActionRefused,
    Actions,
    ActionStore,
    ArgumentsError,
    ForeignAction,
    canonical_arguments,
    checked_outcome,
    checked_turn_id,
)
from binder.audit import audit
from binder.broker import Broker, ConsentRequired, FlowError, IssuedToken, Unavailable
from binder.oauth import OAuthClient
from binder.providers import mcp
from binder.providers.registry import ProviderRegistry
from binder.providers.spec import ProviderSpec, validate_scopes
from binder.registrations import ClientRegistrations
from binder.sessions import SessionStore
from binder.settings import Settings
from binder.vault import Vault
from svc_common.health import healthz_route
from svc_common.identity import (
    ALB_TOKEN_HEADER,
    CognitoVerifier,
    InvalidToken,
    VerifiedUser,
    token_from_headers,
)
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
    actions: Actions
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
    vault = Vault(
        client=secrets_client,
        prefix=settings.vault_prefix,
        kms_key_id=settings.vault_kms_key_id,
        cache_ttl=settings.cache_ttl_seconds,
    )
    registry = ProviderRegistry.from_json(
        settings.providers_json,
        allow_insecure_loopback=settings.allow_insecure_loopback,
        public_base_url=settings.public_base_url,
        registrations=ClientRegistrations(vault=vault),
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
    actions = Actions(
        store=ActionStore(
            sessions=sessions,
            table=settings.session_table,
            ttl_seconds=settings.action_ttl_seconds,
            max_per_user=settings.max_actions_per_user,
        ),
        broker=broker,
        public_base_url=settings.public_base_url,
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
        actions=actions,
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
            routes=[*internal_routes(services), *action_routes(services)],
            middleware=[Middleware(RequestGuard, max_bytes=settings.max_body_bytes)],
        )
        # A proposal carries a tool call's arguments (up to 64 KiB canonical): its own limit.
        self.proposals = Starlette(
            routes=action_routes(services),
            middleware=[
                Middleware(
                    RequestGuard,
                    max_bytes=max(settings.max_body_bytes, MAX_PROPOSAL_BODY_BYTES),
                )
            ],
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
        target: ASGIApp = self.public
        if server[1] == self.services.settings.internal_port:
            proposal = scope.get("path") == "/internal/actions"
            target = self.proposals if proposal else self.internal
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


async def _json_body(request: Request, fields: set[str]) -> dict[str, object] | JSONResponse:
    """The request's JSON object with only `fields` in it, or the 415/400 answer."""
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
    unknown = set(body) - fields
    if unknown:
        name = sorted(unknown)[0]
        # A name is echoed only when it is short printable ASCII: a lone surrogate cannot
        # even be encoded into the answer.
        shown = name if name.isascii() and name.isprintable() and len(name) <= 64 else "body"
        return _bad_request(shown, "unknown field")
    return body


async def _token_request(
    services: Services, body: dict[str, object], spec: ProviderSpec | None = None
) -> tuple[ProviderSpec, tuple[str, ...], str | None] | JSONResponse:
    """The provider (unless given), scopes and return URL of a token request, checked."""
    broker = services.broker
    if spec is None:
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
        if spec is None:
            spec = await broker.provider(str(body["provider"]))
        scopes = validate_scopes(spec, raw_scopes)
    except ValueError as exc:
        return _bad_request("scopes", str(exc))
    except Unavailable as exc:
        return _unavailable_json(exc)
    return spec, scopes, return_url


def _token_answer(result: IssuedToken | ConsentRequired) -> JSONResponse:
    """The answer to a token request: the token, or consent_required (403)."""
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


def internal_routes(services: Services) -> list[Route]:
    broker = services.broker

    async def tokens(request: Request) -> Response:
        user = await _user_or_401(request, services)
        if isinstance(user, JSONResponse):
            return user
        body = await _json_body(request, {"provider", "scopes", "return_url"})
        if isinstance(body, JSONResponse):
            return body
        checked = await _token_request(services, body)
        if isinstance(checked, JSONResponse):
            return checked
        spec, scopes, return_url = checked
        try:
            result = await broker.token(
                user, spec, scopes, return_url=return_url, request_id=_request_id(request)
            )
        except Unavailable as exc:
            return _unavailable_json(exc)
        return _token_answer(result)

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

    async def providers(request: Request) -> Response:
        """The configured providers for the agent's pages: names only, never a client id,
        secret ARN or URL; signed-in users only, like the rest of the internal API."""
        user = await _user_or_401(request, services)
        if isinstance(user, JSONResponse):
            return user
        return JSONResponse(
            {
                "providers": [
                    {"name": p.name, "kind": p.kind, "display_name": p.display_name}
                    for p in services.registry.listings()
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
        Route("/internal/providers", providers, methods=["GET"]),
        Route("/internal/tokens/{provider}", disconnect, methods=["DELETE"]),
    ]


async def _spec_or_none(services: Services, name: str) -> ProviderSpec | None:
    if name not in services.registry:
        return None
    try:
        return await services.broker.provider(name)
    except (KeyError, Unavailable):
        return None


# -- actions: internal API (agent to binder) ------------------------------------------------------

_NO_ACTION = {"error": "not_found", "message": "no such action"}


def _action_json(action: Action, now: float) -> dict[str, object]:
    answer: dict[str, object] = {
        "action_id": action.action_id,
        "status": action.status_at(now),
        "provider": action.provider,
        "tool": action.tool,
        "arguments": action.arguments,
        "arguments_sha256": action.arguments_sha256,
        "turn_id": action.turn_id,
        "expires_at": action.deadline,
    }
    if action.outcome is not None:
        answer["result"] = action.outcome.as_json()
    return answer


def _refused_json(exc: ActionRefused) -> JSONResponse:
    answer: dict[str, object] = {"error": "action_refused", "reason": exc.reason}
    if exc.reason in ("already_executed", "already_recorded"):
        answer["status"] = exc.action.status
        if exc.action.status == DONE and exc.action.outcome is not None:
            answer["result"] = exc.action.outcome.as_json()
    return JSONResponse(answer, status_code=409)


def action_routes(services: Services) -> list[Route]:
    """`/internal/actions*` (internal port); `POST /internal/actions` itself is served with a
    larger body limit than the rest of the internal API."""
    actions = services.actions

    async def propose(request: Request) -> Response:
        user = await _user_or_401(request, services)
        if isinstance(user, JSONResponse):
            return user
        body = await _json_body(request, {"provider", "tool", "arguments", "turn_id"})
        if isinstance(body, JSONResponse):
            return body
        provider = body.get("provider")
        if not isinstance(provider, str):
            return _bad_request("provider", "expected a string")
        if provider not in services.registry:
            return JSONResponse(
                {"error": "unknown_provider", "message": "no such provider"}, status_code=404
            )
        tool = body.get("tool")
        if not isinstance(tool, str) or not TOOL_NAME.fullmatch(tool):
            return _bad_request("tool", "expected 1 to 64 of a-z, 0-9 and _")
        try:
            turn_id = checked_turn_id(body.get("turn_id"))
        except ValueError as exc:
            return _bad_request("turn_id", str(exc))
        try:
            canonical = canonical_arguments(body.get("arguments"))
        except ArgumentsError as exc:
            if exc.status == 413:
                return JSONResponse(
                    {"error": "payload_too_large", "field": "arguments", "message": exc.message},
                    status_code=413,
                )
            return _bad_request("arguments", exc.message)
        try:
            action = await actions.propose(
                user,
                provider=provider,
                tool=tool,
                canonical=canonical,
                turn_id=turn_id,
                request_id=_request_id(request),
            )
        except Unavailable as exc:
            return _unavailable_json(exc)  # 429 too_many_actions, or 503
        return JSONResponse(
            {
                "action_id": action.action_id,
                "approval_url": actions.approval_url(action.action_id),
                "arguments_sha256": action.arguments_sha256,
                "expires_at": action.deadline,
            },
            status_code=201,
        )

    async def read(request: Request) -> Response:
        user = await _user_or_401(request, services)
        if isinstance(user, JSONResponse):
            return user
        try:
            action = await actions.for_user(user, request.path_params["action_id"])
        except ActionNotFound:
            return JSONResponse(_NO_ACTION, status_code=404)
        except Unavailable as exc:
            return _unavailable_json(exc)
        return JSONResponse(_action_json(action, actions.now()))

    async def token(request: Request) -> Response:
        user = await _user_or_401(request, services)
        if isinstance(user, JSONResponse):
            return user
        body = await _json_body(request, {"arguments_sha256", "scopes", "return_url"})
        if isinstance(body, JSONResponse):
            return body
        sha256 = body.get("arguments_sha256")
        if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256):
            return _bad_request("arguments_sha256", "expected 64 lowercase hex digits")
        action_id = request.path_params["action_id"]
        try:
            action = await actions.for_user(user, action_id)
        except ActionNotFound:
            return JSONResponse(_NO_ACTION, status_code=404)
        except Unavailable as exc:
            return _unavailable_json(exc)
        spec = await _spec_or_none(services, action.provider)
        if spec is None:
            return _unavailable_json(Unavailable("provider_discovery", status=502))
        checked = await _token_request(services, body, spec)
        if isinstance(checked, JSONResponse):
            return checked
        _, scopes, return_url = checked
        try:
            result = await actions.execute(
                user,
                action_id,
                sha256=sha256,
                spec_for=services.broker.provider,
                scopes=scopes,
                return_url=return_url,
                request_id=_request_id(request),
            )
        except ActionNotFound:
            return JSONResponse(_NO_ACTION, status_code=404)
        except ActionRefused as exc:
            return _refused_json(exc)
        except Unavailable as exc:
            return _unavailable_json(exc)
        return _token_answer(result)

    async def result(request: Request) -> Response:
        user = await _user_or_401(request, services)
        if isinstance(user, JSONResponse):
            return user
        body = await _json_body(request, {"status", "upstream_status", "summary"})
        if isinstance(body, JSONResponse):
            return body
        try:
            outcome = checked_outcome(body)
        except ValueError as exc:
            return _bad_request(str(exc).split(" ", 1)[0], str(exc))
        action_id = request.path_params["action_id"]
        try:
            stored = await actions.record(user, action_id, outcome, request_id=_request_id(request))
        except ActionNotFound:
            return JSONResponse(_NO_ACTION, status_code=404)
        except ActionRefused as exc:
            return _refused_json(exc)
        except Unavailable as exc:
            return _unavailable_json(exc)
        return JSONResponse({"action_id": action_id, "status": DONE, "result": stored.as_json()})

    return [
        Route("/internal/actions", propose, methods=["POST"]),
        Route("/internal/actions/{action_id}", read, methods=["GET"]),
        Route("/internal/actions/{action_id}/token", token, methods=["POST"]),
        Route("/internal/actions/{action_id}/result", result, methods=["POST"]),
    ]


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
        return pages.success_page(services.registry.display_name(provider))

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
        if notice is not None and notice in services.registry:
            shown = services.registry.display_name(notice)
            note = f"{shown} was disconnected. Its tokens are deleted from the vault."
            if request.query_params.get("revoked") != "yes":
                note += (
                    f" {shown} did not confirm that it revoked them; you can also remove "
                    "this app's access in your account settings there."
                )
        return pages.connections_page(found, note, names=services.registry.display_name)

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

    async def client_metadata(request: Request) -> Response:
        """An mcp provider's OAuth Client ID Metadata Document, for its authorization server:
        static, public, no identity read (the edge passes these paths without a sign-in).

        Served only for a configured mcp provider whose discovery chose this document as its
        client_id; the same 404 for every other case, so no one learns why. A request may
        start the discovery of a configured provider (bounded by the registry's lock and its
        memory of failures), never of anything else."""
        name = request.path_params["name"]
        if services.registry.kind_of(name) != mcp.KIND.name:
            return _no_document()
        try:
            spec = await services.registry.get(name, services.http)
        except Exception:  # the same 404 for all; not logged here (anyone may ask)
            return _no_document()
        if spec.client_id != mcp.client_metadata_url(base, name):
            return _no_document()
        return JSONResponse(
            mcp.client_metadata_document(base, name, services.registry.display_name(name)),
            headers={"cache-control": "public, max-age=300"},
        )

    async def approval_user(request: Request) -> VerifiedUser | Response:
        """The signed-in browser user, from the ALB's header only; any Authorization header,
        even next to it, refuses the request (whoever holds a bearer token must not approve)."""
        if "authorization" in request.headers:
            audit(
                "request_rejected",
                outcome="refused",
                request_id=_request_id(request),
                reason="bearer_on_approval_route",
            )
            return pages.error_page("bearer_on_approval_route", 401)
        alb_only = Headers(
            raw=[(k, v) for k, v in request.headers.raw if k.lower() == ALB_HEADER_BYTES]
        )
        try:
            return await services.verifier.verify(token_from_headers(alb_only))
        except InvalidToken as exc:
            audit(
                "request_rejected",
                outcome="unauthenticated",
                request_id=_request_id(request),
                reason=exc.reason,
            )
            return pages.error_page("unauthenticated", 401)

    def action_refused_page(exc: ActionRefused) -> Response:
        if exc.reason == EXPIRED:
            return pages.error_page("action_expired", 410)
        return pages.error_page(f"action_{exc.reason}", 409)

    async def action_step(request: Request, step: str) -> Response:
        user = await approval_user(request)
        if isinstance(user, Response):
            return user
        action_id = request.path_params["action_id"]
        if step != "open" and not _same_origin(request, base):
            audit(
                "request_rejected",
                outcome="refused",
                request_id=_request_id(request),
                user_hash=user.user_hash,
                action_id=action_id if ACTION_ID.fullmatch(action_id) else None,
                reason="cross_site_form",
            )
            return pages.error_page("cross_site_action", 403)
        do = {
            "open": services.actions.open,
            "approve": services.actions.approve,
            "deny": services.actions.deny,
        }[step]
        try:
            action = await do(user, action_id, request_id=_request_id(request))
        except ActionNotFound:
            return pages.error_page("unknown_action", 404)
        except ForeignAction:
            return pages.error_page("foreign_action", 403)
        except ActionRefused as exc:
            return action_refused_page(exc)
        except Unavailable as exc:
            response = pages.error_page("unavailable", 503)
            response.headers["retry-after"] = str(exc.retry_after)
            return response
        if step != "open":
            return RedirectResponse(f"/oauth2/actions/{action.action_id}", status_code=303)
        status = action.status_at(services.actions.now())
        return pages.action_page(
            action,
            status,
            http_status=410 if status == EXPIRED else 200,
            provider_name=services.registry.display_name(action.provider),
        )

    async def action_page(request: Request) -> Response:
        return await action_step(request, "open")

    async def approve(request: Request) -> Response:
        return await action_step(request, "approve")

    async def deny(request: Request) -> Response:
        return await action_step(request, "deny")

    return [
        healthz_route("binder"),
        Route("/oauth2/actions/{action_id}", action_page, methods=["GET"]),
        Route("/oauth2/actions/{action_id}/approve", approve, methods=["POST"]),
        Route("/oauth2/actions/{action_id}/deny", deny, methods=["POST"]),
        Route("/oauth2/authorize/{session_id}", authorize, methods=["GET"]),
        Route(f"{mcp.CLIENT_METADATA_PREFIX}{{name}}.json", client_metadata, methods=["GET"]),
        # Everything else under the prefix (the edge passes it without a sign-in): the same 404.
        Route(f"{mcp.CLIENT_METADATA_PREFIX}{{rest:path}}", no_document, methods=["GET"]),
        Route("/oauth2/callback/{provider}", callback, methods=["GET"]),
        Route("/oauth2/connections", connections, methods=["GET"]),
        Route("/oauth2/connections/{provider}/disconnect", disconnect, methods=["POST"]),
    ]


ALB_HEADER_BYTES = ALB_TOKEN_HEADER.encode("latin-1")


def _no_document() -> Response:
    return JSONResponse({"error": "not_found"}, status_code=404)


async def no_document(request: Request) -> Response:
    return _no_document()


def _same_origin(request: Request, base: str) -> bool:
    """CSRF defence without a secret: browsers send Origin and Sec-Fetch-Site on POST.

    The binder's pages use `Referrer-Policy: no-referrer` (callback URLs hold codes), which
    makes browsers post `Origin: null`; `Sec-Fetch-Site: same-origin`, which page script
    cannot set, then decides."""
    origin = request.headers.get("origin")
    if origin == base:
        return True
    return request.headers.get("sec-fetch-site") == "same-origin" and origin in (None, "null")
