"""One chat turn: the model plans, this module runs the tools with per-call delegated tokens.

Rules enforced here, whatever the model says:

- a tool gets a token for the current user only, fetched from the binder for that one call;
  `consent_required` becomes an `authorization_required` item for the user, not an error;
- tools that change data never run in the turn that proposes them: the reply carries a
  pending-action marker, and only the user's next message, if it is an explicit
  confirmation, runs exactly that action (the model cannot write a user turn, so a prompt
  injection cannot confirm for the user);
- what the model sees of a tool call is its result or error description, never a token.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2

from agent.binder_client import BinderClient, BinderRefused, BinderUnavailable, ConsentNeeded
from agent.tooling import Model, Tool, ToolError, ToolOutcome, ToolSpec, Turn
from svc_common.identity import VerifiedUser
from svc_common.jsonbody import parse_object

_audit = logging.getLogger("agent.audit")

_MARKER = re.compile(r"\[\[pending-action:([A-Za-z0-9_-]{1,4000})\]\]")
_TRAILING_MARKER = re.compile(r"\[\[pending-action:([A-Za-z0-9_-]{1,4000})\]\]\s*\Z")
CONFIRM_WORDS = frozenset({"confirm", "yes", "yes, go ahead", "go ahead", "do it"})
CANCEL_WORDS = frozenset({"cancel", "no", "stop"})


@dataclass
class ChatResult:
    reply: str
    model: str
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    authorization_required: list[dict[str, Any]] = field(default_factory=list)
    pending_confirmation: dict[str, str] | None = None


def _encode_action(tool: str, arguments: Mapping[str, Any]) -> str:
    raw = json.dumps({"tool": tool, "arguments": arguments}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_action(token: str) -> tuple[str, dict[str, Any]] | None:
    """The tool and arguments a marker names, or None if it is malformed.

    Markers come back in the client's history, so they are parsed like a request body (depth
    bounded, UTF-8 only, no NaN): a bare `json.loads` raised RecursionError, a 500.
    """
    try:
        data = parse_object(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:  # binascii.Error and BodyError are both ValueErrors
        return None
    if not isinstance(data.get("tool"), str):
        return None
    arguments = data.get("arguments")
    return (data["tool"], arguments) if isinstance(arguments, dict) else None


def strip_markers(text: str) -> str:
    """Remove marker-like text the model produced: only this module may write markers.

    Repeated until nothing changes (a nested `[[pending-[[pending-action:x]]action:y]]` must
    not leave a marker behind), then any leftover fragment is defused."""
    previous = None
    while previous != text:
        previous, text = text, _MARKER.sub("", text)
    return text.replace("[[pending-action", "[[pending action").strip()


@dataclass
class _Context:
    """One chat turn's caller and its growing result, shared by every tool call of it."""

    user: VerifiedUser
    user_token: str
    request_id: str
    result: ChatResult
    proposals: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class ChatService:
    def __init__(
        self,
        *,
        registry: Any,
        binder: BinderClient,
        model: Model,
        http: httpx2.AsyncClient,
    ) -> None:
        self._registry = registry
        self._binder = binder
        self._model = model
        self._http = http

    async def turn(
        self,
        *,
        user: VerifiedUser,
        user_token: str,
        message: str,
        history: Sequence[Turn],
        request_id: str,
    ) -> ChatResult:
        ctx = _Context(
            user=user,
            user_token=user_token,
            request_id=request_id,
            result=ChatResult(reply="", model=self._model.name),
        )
        result = ctx.result
        pending = _last_pending(history)
        normalized = message.strip().lower().rstrip(".!")
        if pending is not None and normalized in CONFIRM_WORDS:
            return await self._confirmed(pending, ctx)
        if pending is not None and normalized in CANCEL_WORDS:
            result.reply = "Cancelled: nothing was changed."
            return result

        async def execute(name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
            return await self._execute(name, arguments, ctx)

        # The model needs no markers: they are this module's bookkeeping, not conversation.
        model_history = [Turn(role=t.role, text=strip_markers(t.text)) for t in history]
        reply = await self._model.respond(
            history=model_history,
            message=message,
            tools=self._registry.specs(),
            execute=execute,
        )
        result.reply = strip_markers(reply.text)
        if ctx.proposals:
            tool_name, arguments = ctx.proposals[0]
            description = self._registry.get(tool_name).describe(arguments)
            result.pending_confirmation = {"description": description, "confirm_text": "confirm"}
            result.reply = (
                f'{result.reply}\n\nThis would {description}. Reply "confirm" to go ahead, or '
                f'"cancel".\n[[pending-action:{_encode_action(tool_name, arguments)}]]'
            ).strip()
        return result

    async def _confirmed(self, pending: tuple[str, dict[str, Any]], ctx: _Context) -> ChatResult:
        name, arguments = pending
        result = ctx.result
        resolved = self._resolve(name, arguments, ctx)
        outcome = resolved if isinstance(resolved, ToolOutcome) else await self._run(*resolved, ctx)
        description = _safe_describe(self._registry, name, arguments)
        if outcome.status == "ok":
            link = outcome.content.get("html_url")
            result.reply = f"Done: {description}." + (f" {link}" if link else "")
        elif outcome.status == "authorization_required":
            result.reply = (
                f"I need your permission to use {outcome.provider} first. Use the Connect "
                "button, then confirm again."
            )
            result.reply += f"\n[[pending-action:{_encode_action(name, arguments)}]]"
            result.pending_confirmation = {"description": description, "confirm_text": "confirm"}
        else:
            result.reply = f"That did not work: {outcome.content.get('message', 'error')}"
        return result

    def _resolve(
        self, name: str, arguments: Mapping[str, Any], ctx: _Context
    ) -> tuple[Tool, dict[str, Any]] | ToolOutcome:
        """The tool and its checked arguments, or the outcome that refuses the call."""
        try:
            tool: Tool = self._registry.get(name)
        except KeyError:
            return ToolOutcome(
                tool=name,
                provider="",
                status="error",
                content={"error": "unknown_tool", "message": f"no tool named {name[:64]}"},
            )
        try:
            return tool, tool.validate(arguments)
        except ToolError as exc:
            return self._failed(tool.spec, exc, ctx)

    async def _execute(self, name: str, arguments: Mapping[str, Any], ctx: _Context) -> ToolOutcome:
        resolved = self._resolve(name, arguments, ctx)
        if isinstance(resolved, ToolOutcome):
            return resolved
        tool, checked = resolved
        if not tool.spec.mutating:
            return await self._run(tool, checked, ctx)
        ctx.proposals.append((tool.spec.name, checked))
        self._record(tool.spec, "confirmation_required", ctx)
        return ToolOutcome(
            tool=tool.spec.name,
            provider=tool.spec.provider,
            status="confirmation_required",
            content={
                "status": "confirmation_required",
                "message": "This action changes data. It has been shown to the user, who "
                f"must confirm it before it runs: {tool.describe(checked)}.",
            },
        )

    async def _run(self, tool: Tool, checked: dict[str, Any], ctx: _Context) -> ToolOutcome:
        spec = tool.spec
        try:
            grant = await self._binder.token(
                ctx.user_token,
                provider=spec.provider,
                scopes=spec.scopes,
                request_id=ctx.request_id,
            )
        except BinderUnavailable:
            unavailable = ToolError(
                "unavailable",
                "The token service is temporarily unavailable; try again in a moment.",
            )
            return self._failed(spec, unavailable, ctx)
        except BinderRefused as exc:
            refused = ToolError("provider_error", f"token request refused ({exc.code})")
            return self._failed(spec, refused, ctx)
        if isinstance(grant, ConsentNeeded):
            item = grant.item()
            asked = ctx.result.authorization_required
            if all(a["session_id"] != item["session_id"] for a in asked):
                asked.append(item)
            self._record(spec, "authorization_required", ctx)
            return ToolOutcome(
                tool=spec.name,
                provider=spec.provider,
                status="authorization_required",
                content={
                    "status": "authorization_required",
                    "message": f"The user has not granted access to {spec.provider} yet "
                    f"({grant.reason}); they were shown a Connect button.",
                },
                authorization=item,
            )
        try:
            content = await tool.run(checked, token=grant.access_token, http=self._http)
        except ToolError as exc:
            return self._failed(spec, exc, ctx)
        self._record(spec, "ok", ctx)
        return ToolOutcome(tool=spec.name, provider=spec.provider, status="ok", content=content)

    def _failed(self, spec: ToolSpec, exc: ToolError, ctx: _Context) -> ToolOutcome:
        content: dict[str, Any] = {"error": exc.kind, "message": exc.message}
        if exc.retry_at:
            content["retry_at"] = exc.retry_at
        self._record(spec, "error", ctx, reason=exc.kind)
        return ToolOutcome(tool=spec.name, provider=spec.provider, status="error", content=content)

    def _record(
        self, spec: ToolSpec, status: str, ctx: _Context, *, reason: str | None = None
    ) -> None:
        """The tool call in the reply, and its audit line."""
        ctx.result.tool_calls.append(
            {"tool": spec.name, "provider": spec.provider, "status": status}
        )
        fields: dict[str, Any] = {
            "audit": "tool_call",
            "user_hash": ctx.user.user_hash,
            "tool": spec.name,
            "provider": spec.provider,
            "scopes": list(spec.scopes),
            "outcome": status,
            "request_id": ctx.request_id,
        }
        if reason:
            fields["reason"] = reason
        _audit.info("tool_call", extra={"fields": fields})


def _last_pending(history: Sequence[Turn]) -> tuple[str, dict[str, Any]] | None:
    """The pending action of the last assistant turn, if it ends with one."""
    for turn in reversed(history):
        if turn.role == "assistant":
            # Only a marker this module appended: the last thing in the turn.
            match = _TRAILING_MARKER.search(turn.text)
            return _decode_action(match.group(1)) if match else None
    return None


def _safe_describe(registry: Any, name: str, arguments: Mapping[str, Any]) -> str:
    try:
        return str(registry.get(name).describe(arguments))
    except (KeyError, ToolError):
        return name
