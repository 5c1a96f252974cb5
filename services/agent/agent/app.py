"""The agent's ASGI application: the chat page, the chat API (browser and bearer), healthz.

No request body a signed-in user can send makes it answer 5xx (the target 5xx alarms must
mean "broken", not "someone sent odd JSON"): the body is parsed by the shared
`svc_common.jsonbody` parser (depth-bounded, UTF-8 only), text that UTF-8 cannot encode is
refused, and responses are encoded so that no model or provider text can break them.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agent.binder_client import ACTION_ID, BinderClient, BinderRefused, BinderUnavailable
from agent.chat import ChatService
from agent.mcp_client import McpClient
from agent.mcp_toolbox import McpToolbox
from agent.model import BedrockModel, ModelError, ModelUnavailable
from agent.planner import OfflinePlanner
from agent.settings import Settings
from agent.text import has_lone_surrogate, replace_lone_surrogates
from agent.tools.base import Model, Turn
from agent.tools.registry import ToolRegistry, default_tools
from svc_common.health import healthz_route
from svc_common.identity import CognitoVerifier, InvalidToken, VerifiedUser, token_from_headers
from svc_common.jsonbody import BodyError, is_json, parse_object
from svc_common.middleware import RequestGuard, SecurityHeaders

STATIC = Path(__file__).resolve().parent / "static"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


# How long the binder's display names are kept (they change only when the binder is redeployed).
DISPLAY_NAMES_TTL_SECONDS = 300


class ProviderNames:
    """The providers this agent offers, with the binder's display names for the chat page.

    The names are this agent's (AGENT_PROVIDERS in order, else the providers of its tools);
    display names come from the binder and are kept ``ttl`` seconds per process. If the binder
    fails, each name is its own display name and nothing is kept, so the next request asks
    again: the page's labels degrade, the answer never does.
    """

    def __init__(
        self,
        names: Sequence[str],
        binder: BinderClient,
        *,
        ttl: float = DISPLAY_NAMES_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.names = tuple(dict.fromkeys(names))
        self._binder = binder
        self._ttl = ttl
        self._clock = clock
        self._cached: tuple[float, dict[str, str]] | None = None

    async def listing(
        self, user_token: str, *, request_id: str | None = None
    ) -> list[dict[str, str]]:
        display = await self._display_names(user_token, request_id)
        return [{"name": name, "display_name": display.get(name, name)} for name in self.names]

    async def _display_names(self, user_token: str, request_id: str | None) -> dict[str, str]:
        now = self._clock()
        if self._cached is not None and now - self._cached[0] < self._ttl:
            return self._cached[1]
        try:
            names = await self._binder.display_names(user_token, request_id=request_id)
        except (BinderUnavailable, BinderRefused):
            return {}
        self._cached = (now, names)
        return names


@dataclass
class Services:
    settings: Settings
    verifier: CognitoVerifier
    chat: ChatService
    model: Model
    http: httpx2.AsyncClient
    providers: ProviderNames
    # The transport the MCP client opened itself (None: it shares the one passed in, whose
    # client closes it).
    mcp_transport: httpx2.AsyncBaseTransport | None = None
    mcp: McpToolbox | None = None


def build_model(settings: Settings) -> Model:
    if settings.model_mode == "offline":
        return OfflinePlanner()
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "bedrock-runtime",
        region_name=settings.aws_region,
        config=Config(retries={"mode": "standard", "max_attempts": 3}, read_timeout=60),
    )
    return BedrockModel(
        client=client,
        model_id=str(settings.bedrock_model_id),
        max_tool_rounds=settings.max_tool_rounds,
        guardrail_id=settings.guardrail_id,
        guardrail_version=settings.guardrail_version,
    )


def build_services(
    settings: Settings,
    *,
    model: Model | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> Services:
    http = httpx2.AsyncClient(
        timeout=settings.http_timeout_seconds, follow_redirects=False, transport=transport
    )
    tools = default_tools(
        oidc_userinfo=settings.oidc_userinfo,
        github_api=settings.github_api_url,
        google_api=settings.google_api_url,
        graph_api=settings.graph_api_url,
        # The notes tools serve the local stack's notes server: only when it is configured
        # and its provider is explicitly one of this deployment's.
        notes_api=settings.notes_api_url if "notes" in settings.providers else None,
    )
    registry = ToolRegistry(tools)
    if settings.providers:
        registry = registry.for_providers(settings.providers)
    model = model or build_model(settings)
    binder = BinderClient(
        base_url=settings.binder_internal_url, http=http, timeout=settings.http_timeout_seconds
    )
    mcp = None
    mcp_transport = None
    if settings.mcp_servers:
        mcp_base: httpx2.AsyncBaseTransport
        if transport is None:
            mcp_base = mcp_transport = httpx2.AsyncHTTPTransport()
        else:
            mcp_base = transport
        mcp = McpToolbox(
            servers=settings.mcp_servers,
            binder=binder,
            client=McpClient(
                transport=mcp_base,
                timeout=settings.http_timeout_seconds,
            ),
            reserved=[spec.name for spec in registry.specs()],
        )
    chat = ChatService(registry=registry, binder=binder, model=model, http=http, mcp=mcp)
    offered = [
        *(settings.providers or [spec.provider for spec in registry.specs()]),
        *(server.name for server in settings.mcp_servers),
    ]
    verifier = CognitoVerifier(
        issuer=settings.cognito_issuer,
        client_ids=settings.cognito_client_ids,
        jwks_url=settings.cognito_jwks_url,
        http=http,
    )
    return Services(
        settings=settings,
        verifier=verifier,
        chat=chat,
        model=model,
        http=http,
        providers=ProviderNames(offered, binder),
        mcp_transport=mcp_transport,
        mcp=mcp,
    )


# Characters of a client-chosen field name quoted back in a 400.
_FIELD_CHARS = 64


class _JSONResponse(JSONResponse):
    """A JSON response whose body is always valid UTF-8.

    Starlette's encoder raises (a 500) on a lone surrogate, which a model's reply or a
    provider's JSON can hold: it is sent as U+FFFD instead, like a browser's TextEncoder does.
    """

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return replace_lone_surrogates(text).encode("utf-8")


def _error(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"www-authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
    return _JSONResponse({"error": error, "message": message, **extra}, status, headers=headers)


def _lone_surrogate_at(body: dict[str, Any]) -> str | None:
    """The field holding a string UTF-8 cannot encode (a key's container for a bad key).

    Walked without recursion; the parser has already bounded the depth.
    """
    stack: list[tuple[str, Any]] = [("body", body)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if has_lone_surrogate(value):
                return where
        elif isinstance(value, dict):
            for key, item in value.items():
                if has_lone_surrogate(key):
                    return where
                stack.append((key if where == "body" else f"{where}.{key}", item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


@dataclass(frozen=True)
class _ChatRequest:
    message: str
    history: list[Turn]
    confirm_action: str | None


def _parse(body: dict[str, Any], settings: Settings) -> _ChatRequest | JSONResponse:
    bad_text = _lone_surrogate_at(body)
    if bad_text is not None:
        return _error(
            400,
            "invalid_request",
            "text must be valid Unicode: no unpaired surrogate escapes such as \\ud800",
            field=bad_text,
        )
    unknown = set(body) - {"message", "history", "confirm_action"}
    if unknown:
        field = sorted(unknown)[0][:_FIELD_CHARS]
        return _error(400, "invalid_request", f"unknown field {field}", field=field)
    confirm_action = body.get("confirm_action")
    if confirm_action is not None and (
        not isinstance(confirm_action, str) or ACTION_ID.fullmatch(confirm_action) is None
    ):
        return _error(
            400,
            "invalid_request",
            "confirm_action must be an action id (1-128 letters, digits, _ or -)",
            field="confirm_action",
        )
    message = body.get("message", "" if confirm_action is not None else None)
    if not isinstance(message, str) or (confirm_action is None and not message.strip()):
        return _error(400, "invalid_request", "message must be a non-empty string", field="message")
    if len(message) > settings.max_message_chars:
        return _error(
            400,
            "invalid_request",
            f"message is longer than {settings.max_message_chars} characters",
            field="message",
        )
    raw_history = body.get("history", [])
    if not isinstance(raw_history, list):
        return _error(400, "invalid_request", "history must be a list", field="history")
    if len(raw_history) > settings.max_history_turns:
        return _error(
            400,
            "invalid_request",
            f"history has more than {settings.max_history_turns} turns",
            field="history",
        )
    history: list[Turn] = []
    for i, turn in enumerate(raw_history):
        where = f"history[{i}]"
        if not isinstance(turn, dict) or set(turn) != {"role", "text"}:
            return _error(
                400,
                "invalid_request",
                "each turn is {role, text}: user or assistant text only",
                field=where,
            )
        role, text = turn["role"], turn["text"]
        if role not in ("user", "assistant"):
            return _error(
                400, "invalid_request", "role must be user or assistant", field=f"{where}.role"
            )
        if not isinstance(text, str) or len(text) > settings.max_turn_chars:
            return _error(
                400,
                "invalid_request",
                f"text must be a string of at most {settings.max_turn_chars} characters",
                field=f"{where}.text",
            )
        history.append(Turn(role=role, text=text))
    return _ChatRequest(message.strip(), history, confirm_action)


def create_app(settings: Settings, *, services: Services | None = None) -> Starlette:
    svc = services or build_services(settings)

    async def authenticate(request: Request) -> tuple[VerifiedUser, str] | JSONResponse:
        try:
            token = token_from_headers(request.headers)
            return await svc.verifier.verify(token), token
        except InvalidToken as exc:
            return _error(
                401,
                "invalid_token",
                "sign in again: the access token was refused",
                reason=exc.reason,
            )

    async def chat(request: Request) -> Response:
        auth = await authenticate(request)
        if isinstance(auth, JSONResponse):
            return auth
        user, token = auth
        if not is_json(request.headers.get("content-type")):
            # Also the CSRF defence of /app/chat: a cross-site form cannot send JSON.
            return _error(415, "unsupported_media_type", "send application/json")
        try:
            body = parse_object(await request.body())
        except ClientDisconnect:
            # Nobody will read this answer; it only must not be logged and counted as a 500.
            return _error(400, "invalid_request", "the body was cut short", field="body")
        except BodyError as exc:
            return _error(400, "invalid_request", exc.message, field=exc.field)
        parsed = _parse(body, settings)
        if isinstance(parsed, JSONResponse):
            return parsed
        request_id = str(request.scope.get("state", {}).get("request_id", "-"))
        try:
            result = await svc.chat.turn(
                user=user,
                user_token=token,
                message=parsed.message,
                history=parsed.history,
                request_id=request_id,
                confirm_action=parsed.confirm_action,
            )
        except ModelUnavailable:
            return _JSONResponse(
                {
                    "error": "model_unavailable",
                    "message": "The model is temporarily unavailable. Try again in a moment.",
                },
                503,
                headers={"retry-after": "5"},
            )
        except ModelError:
            return _error(502, "model_error", "The model refused the request.")
        return _JSONResponse(result.as_json(), headers={"cache-control": "no-store"})

    async def providers(request: Request) -> Response:
        auth = await authenticate(request)
        if isinstance(auth, JSONResponse):
            return auth
        _, token = auth
        request_id = str(request.scope.get("state", {}).get("request_id", "-"))
        listing = await svc.providers.listing(token, request_id=request_id)
        return _JSONResponse({"providers": listing}, headers={"cache-control": "no-store"})

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "chat.html", media_type="text/html")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await svc.verifier.preload()
        if svc.mcp is not None:
            svc.mcp.start_loading()
        try:
            yield
        finally:
            await svc.http.aclose()
            if svc.mcp_transport is not None:
                await svc.mcp_transport.aclose()

    return Starlette(
        routes=[
            healthz_route("agent"),
            Route("/", page, methods=["GET"]),
            Route("/app/chat", chat, methods=["POST"]),
            Route("/api/chat", chat, methods=["POST"]),
            Route("/app/providers", providers, methods=["GET"]),
            Route("/api/providers", providers, methods=["GET"]),
            Mount("/app/static", app=StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[
            Middleware(RequestGuard, max_bytes=settings.max_body_bytes),
            Middleware(SecurityHeaders, csp=PAGE_CSP),
        ],
        lifespan=lifespan,
    )
