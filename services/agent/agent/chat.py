"""One chat turn: the model plans, this module runs the tools with per-call delegated tokens.

Rules enforced here, whatever the model or the client says:

- a tool gets a token for the current user only, fetched from the binder for that one call;
  `consent_required` becomes an `authorization_required` item for the user, not an error;
- a tool that changes data (any tool not declared read-only) never runs in the turn that
  proposes it. Its checked arguments are registered with the binder as an *action*
  (`approval_required` in the reply); the user approves or denies it in the browser, on the
  binder's page, which accepts only the browser's own session: whoever holds the user's bearer
  token (this agent, a prompt injection steering it) cannot approve. A later turn with
  `confirm_action` runs exactly the stored arguments, with a token the binder hands out once
  per approved action and only for the hash of those arguments; a retried confirmation gets
  the recorded outcome, never a second call;
- string arguments of a data-changing call may not hold Unicode format characters (bidi
  controls, zero-width characters): they are refused, not stripped, so what the user approves
  is what they see;
- client-sent history carries text only: nothing in it can propose, approve or confirm an
  action (old `[[pending-action:...]]` markers are removed and mean nothing);
- what the model sees of a tool call is its result or error description, never a token;
- a turn's tools are the built-in ones plus the MCP servers' tools this user has now
  (mcp_toolbox.py): the same rules apply to them (per-call tokens, approvals for any tool not
  annotated read-only); a server that cannot be listed adds a notice to the reply, or a
  Connect item when the user has not connected it yet.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2

from agent.binder_client import (
    Action,
    ActionRefused,
    BinderClient,
    BinderRefused,
    BinderUnavailable,
    ConsentNeeded,
    ProviderToken,
    arguments_sha256,
)
from agent.mcp_toolbox import McpToolbox
from agent.text import format_characters, strip_markers
from agent.tools.base import Model, Tool, ToolError, ToolOutcome, ToolSpec, Turn, upstream_status
from svc_common.identity import VerifiedUser

__all__ = ["ChatResult", "ChatService", "refuse_format_characters", "strip_markers"]

_audit = logging.getLogger("agent.audit")
logger = logging.getLogger(__name__)

_REFUSALS = {
    "not_approved": "This action has not been approved yet. Open its approval page, review it "
    "and approve it, then confirm it again.",
    "denied": "This action was denied, so it will not run. Nothing was changed.",
    "expired": "This action expired before it ran. Nothing was changed; ask again to propose "
    "it anew.",
    "arguments_changed": "This action's arguments do not match what was approved, so it was "
    "refused. Nothing was changed.",
    "unknown_action": "There is no such action of yours (it may have expired and been removed). "
    "Nothing was changed.",
    "unknown_tool": "This action names a tool this agent does not have. Nothing was changed.",
    "not_an_action": "This action does not name a data-changing tool of this agent. Nothing "
    "was changed.",
    "invalid_arguments": "This action's arguments are not valid for its tool, so it was "
    "refused. Nothing was changed.",
    "tool_unavailable": "This action's tool server does not offer its tool right now, so it "
    "did not run. Nothing was changed; confirm it again in a moment.",
}


@dataclass
class ChatResult:
    reply: str
    model: str
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    authorization_required: list[dict[str, Any]] = field(default_factory=list)
    # A data-changing call registered with the binder, awaiting the user's approval:
    # {"action_id", "approval_url", "expires_at", "action": {"tool", "provider", "arguments"}}.
    approval_required: dict[str, Any] | None = None
    # What a confirmation turn did: {"action_id", "tool", "provider", "status", "reason",
    # "upstream_status", "summary", "replayed"}.
    action_result: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "reply": self.reply,
            "model": self.model,
            "tool_calls": self.tool_calls,
            "authorization_required": self.authorization_required,
            "approval_required": self.approval_required,
            "action_result": self.action_result,
        }


def refuse_format_characters(arguments: Mapping[str, Any]) -> None:
    """ToolError naming the argument and the code points if any string argument holds a Unicode
    format character (category Cf). Applied to every data-changing call: such characters make
    text read differently from what it is (a right-to-left override in a title, a zero-width
    space in a repository name), so they are refused rather than passed on or stripped."""
    for name, value in arguments.items():
        if isinstance(value, str):
            found = format_characters(value)
            if found:
                shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
                raise ToolError(
                    "invalid_arguments",
                    f"{str(name)[:64]!r} contains invisible Unicode format characters ({shown}), "
                    "which can make text look different from what it is; an action that "
                    "changes data may not contain them. Remove them and try again.",
                )


class _TurnRegistry:
    """The built-in tools plus this turn's MCP tools (whose names never take a built-in's)."""

    def __init__(self, base: Any, extra: Sequence[Tool]) -> None:
        self._base = base
        self._extra = {tool.spec.name: tool for tool in extra}

    def get(self, name: str) -> Tool:
        try:
            tool: Tool = self._base.get(name)
        except KeyError:
            return self._extra[name]  # KeyError if unknown
        return tool

    def specs(self) -> list[ToolSpec]:
        return [*self._base.specs(), *(tool.spec for tool in self._extra.values())]


@dataclass
class _Context:
    """One chat turn's caller and its growing result, shared by every tool call of it."""

    user: VerifiedUser
    user_token: str
    request_id: str
    result: ChatResult
    registry: Any = None  # this turn's tools: the built-in registry, plus MCP tools
    notices: list[str] = field(default_factory=list)


class ChatService:
    def __init__(
        self,
        *,
        registry: Any,
        binder: BinderClient,
        model: Model,
        http: httpx2.AsyncClient,
        result_wait_seconds: float = 10.0,
        mcp: McpToolbox | None = None,
    ) -> None:
        self._registry = registry
        self._mcp = mcp
        self._binder = binder
        self._model = model
        self._http = http
        # How long a confirmation that lost the race to a concurrent one waits for the winner's
        # outcome before saying the action is still running.
        self._result_wait = result_wait_seconds

    async def turn(
        self,
        *,
        user: VerifiedUser,
        user_token: str,
        message: str,
        history: Sequence[Turn],
        request_id: str,
        confirm_action: str | None = None,
    ) -> ChatResult:
        ctx = _Context(
            user=user,
            user_token=user_token,
            request_id=request_id,
            result=ChatResult(reply="", model=self._model.name),
        )
        ctx.registry = await self._turn_registry(ctx)
        if confirm_action is not None:
            # The confirmation turn: the model is not asked, the message (if any) is only the
            # user's line in their transcript.
            await self._confirm(confirm_action, ctx)
            self._add_notices(ctx)
            return ctx.result

        async def execute(name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
            return await self._execute(name, arguments, ctx)

        model_history = [Turn(role=t.role, text=strip_markers(t.text)) for t in history]
        reply = await self._model.respond(
            history=model_history,
            message=message,
            tools=ctx.registry.specs(),
            execute=execute,
        )
        result = ctx.result
        result.reply = strip_markers(reply.text)
        proposal = result.approval_required
        if proposal is not None:
            action = proposal["action"]
            description = _safe_describe(ctx.registry, action["tool"], action["arguments"])
            result.reply = (
                f"{result.reply}\n\nApproval needed: this would {description} "
                f"({action['tool']} on {action['provider']}). Nothing has run. Review every "
                f"argument and approve or deny it in your browser: {proposal['approval_url']}"
            ).strip()
        self._add_notices(ctx)
        return result

    async def _turn_registry(self, ctx: _Context) -> Any:
        """The built-in tools, plus the MCP tools this user has now (consents and failures
        become Connect items and notices; they never fail the turn)."""
        if self._mcp is None or not self._mcp.servers:
            return self._registry
        found = await self._mcp.discover(
            user_hash=ctx.user.user_hash, user_token=ctx.user_token, request_id=ctx.request_id
        )
        asked = ctx.result.authorization_required
        for consent in found.consent:
            item = consent.item()
            if all(a["session_id"] != item["session_id"] for a in asked):
                asked.append(item)
        ctx.notices.extend(found.notices)
        return _TurnRegistry(self._registry, found.tools)

    @staticmethod
    def _add_notices(ctx: _Context) -> None:
        """The MCP notices (our own text, naming configured servers) after the reply."""
        if ctx.notices:
            lines = "\n".join(f"- {notice}" for notice in dict.fromkeys(ctx.notices))
            ctx.result.reply = f"{ctx.result.reply}\n\nTool servers:\n{lines}".strip()

    # ---------------------------------------------------------------- the model's tool calls

    def _resolve(
        self, name: str, arguments: Mapping[str, Any], ctx: _Context
    ) -> tuple[Tool, dict[str, Any]] | ToolOutcome:
        """The tool and its checked arguments, or the outcome that refuses the call."""
        try:
            tool: Tool = ctx.registry.get(name)
        except KeyError:
            return ToolOutcome(
                tool=name,
                provider="",
                status="error",
                content={"error": "unknown_tool", "message": f"no tool named {name[:64]}"},
            )
        try:
            checked = tool.validate(arguments)
            if tool.spec.needs_approval:
                refuse_format_characters(checked)
        except ToolError as exc:
            return self._failed(tool.spec, exc, ctx)
        return tool, checked

    async def _execute(self, name: str, arguments: Mapping[str, Any], ctx: _Context) -> ToolOutcome:
        """A tool call the model asked for: read-only tools run, others are only proposed."""
        resolved = self._resolve(name, arguments, ctx)
        if isinstance(resolved, ToolOutcome):
            return resolved
        tool, checked = resolved
        if tool.spec.needs_approval:
            return await self._propose(tool, checked, ctx)
        grant = await self._token(tool.spec, ctx)
        if isinstance(grant, ToolOutcome):
            return grant
        return await self._invoke(tool, checked, grant, ctx, action=None)

    async def _propose(self, tool: Tool, checked: dict[str, Any], ctx: _Context) -> ToolOutcome:
        """Register a data-changing call with the binder for the user's approval; run nothing."""
        spec = tool.spec
        if ctx.result.approval_required is not None:
            return self._failed(
                spec,
                ToolError(
                    "too_many_actions",
                    "Only one data-changing action can await approval per turn; one already "
                    "does. Propose the next one after the user has dealt with it.",
                ),
                ctx,
            )
        digest = arguments_sha256(checked)
        try:
            proposal = await self._binder.propose_action(
                ctx.user_token,
                provider=spec.provider,
                tool=spec.name,
                arguments=checked,
                turn_id=ctx.request_id,
                request_id=ctx.request_id,
            )
        except BinderUnavailable as exc:
            error = (
                ToolError(
                    "rate_limited",
                    "Too many actions are waiting for the user's approval: they must approve "
                    "or deny those first.",
                )
                if exc.code == "binder_429"
                else ToolError(
                    "unavailable",
                    "The token service is temporarily unavailable; try again in a moment.",
                )
            )
            return self._failed(spec, error, ctx)
        except BinderRefused as exc:
            refused = ToolError("provider_error", f"the action was not registered ({exc.code})")
            return self._failed(spec, refused, ctx)
        if proposal.arguments_sha256 != digest:
            # Two canonical forms of the same arguments: the approval could never be used.
            logger.warning("binder hashed the arguments differently", extra={"fields": {}})
            mismatch = ToolError("provider_error", "the action was registered inconsistently")
            return self._failed(spec, mismatch, ctx)
        ctx.result.approval_required = {
            "action_id": proposal.action_id,
            "approval_url": proposal.approval_url,
            "expires_at": proposal.expires_at,
            "action": {"tool": spec.name, "provider": spec.provider, "arguments": checked},
        }
        self._record(
            spec, "approval_required", ctx, action_id=proposal.action_id, arguments_sha256=digest
        )
        return ToolOutcome(
            tool=spec.name,
            provider=spec.provider,
            status="approval_required",
            content={
                "status": "approval_required",
                "message": "This action changes data, so it has not run. It was shown to the "
                "user, who must review and approve it in their browser; do not claim it has "
                f"been done. Proposed: {tool.describe(checked)}.",
            },
        )

    # ---------------------------------------------------------------- the confirmation turn

    async def _confirm(self, action_id: str, ctx: _Context) -> None:
        """Run one approved action, exactly as stored, at most once (see the module doc)."""
        try:
            action = await self._binder.get_action(
                ctx.user_token, action_id, request_id=ctx.request_id
            )
        except BinderUnavailable:
            self._unavailable(action_id, ctx)
            return
        except (BinderRefused, ValueError):
            action = None
        if action is None:
            self._refuse(action_id, "unknown_action", ctx)
            return
        try:
            tool: Tool = ctx.registry.get(action.tool)
        except KeyError:
            # An MCP server's tool is listed per turn: its server may be down right now.
            mcp = self._mcp is not None and self._mcp.server(action.provider) is not None
            self._refuse(
                action_id, "tool_unavailable" if mcp else "unknown_tool", ctx, action=action
            )
            return
        spec = tool.spec
        if spec.provider != action.provider or not spec.needs_approval:
            self._refuse(action_id, "not_an_action", ctx, action=action)
            return
        try:
            checked = tool.validate(action.arguments)
            refuse_format_characters(checked)
        except ToolError:
            self._refuse(action_id, "invalid_arguments", ctx, action=action)
            return
        if checked != action.arguments:
            # Defaults filled in now would run something the user was not shown.
            self._refuse(action_id, "invalid_arguments", ctx, action=action)
            return
        digest = arguments_sha256(action.arguments)
        try:
            answer = await self._binder.action_token(
                ctx.user_token,
                action.action_id,
                arguments_sha256=digest,
                provider=spec.provider,
                scopes=spec.scopes,
                request_id=ctx.request_id,
            )
        except BinderUnavailable:
            self._unavailable(action_id, ctx, action=action)
            return
        except BinderRefused as exc:
            self._refuse(action_id, exc.code, ctx, action=action)
            return
        if isinstance(answer, ActionRefused):
            if answer.reason == "already_executed":
                await self._replay(action, answer, ctx)
            else:
                self._refuse(action_id, answer.reason, ctx, action=action)
            return
        if isinstance(answer, ConsentNeeded):
            self._consent(spec, answer, ctx, action_id=action.action_id)
            self._set_outcome(ctx, action, "authorization_required")
            ctx.result.reply = (
                f"I need your permission to use {spec.provider} first. Use the Connect button, "
                "then confirm the action again."
            )
            return
        outcome = await self._invoke(tool, checked, answer, ctx, action=action)
        status = "succeeded" if outcome.status == "ok" else "failed"
        summary = _summary(ctx.registry, action, outcome)
        upstream = upstream_status.get()
        try:
            await self._binder.action_result(
                ctx.user_token,
                action.action_id,
                status=status,
                upstream_status=upstream,
                summary=summary,
                request_id=ctx.request_id,
            )
        except (BinderUnavailable, BinderRefused) as exc:
            # The call ran; only the record is missing. A retry then says "still running".
            logger.warning(
                "action result not recorded",
                extra={"fields": {"action_id": action.action_id, "error": str(exc)[:64]}},
            )
        self._set_outcome(ctx, action, status, upstream_status=upstream, summary=summary)
        ctx.result.reply = summary

    async def _replay(self, action: Action, answer: ActionRefused, ctx: _Context) -> None:
        """The action already ran (or is running, for a concurrent confirmation): report its
        recorded outcome, waiting a little for it if it is not recorded yet."""
        stored = answer.result
        deadline = anyio.current_time() + self._result_wait
        while stored is None and anyio.current_time() < deadline:
            await anyio.sleep(0.1)
            try:
                current = await self._binder.get_action(
                    ctx.user_token, action.action_id, request_id=ctx.request_id
                )
            except (BinderUnavailable, BinderRefused):
                continue
            if current is None or current.status not in ("executing", "done"):
                break
            stored = current.result
        self._audit_action(action, "replayed" if stored else "in_progress", ctx)
        if stored is None:
            self._set_outcome(ctx, action, "in_progress", replayed=True)
            ctx.result.reply = (
                "This action is running now (an approved action runs only once). Confirm it "
                "again in a moment to see its outcome."
            )
            return
        status = stored.get("status")
        summary = stored.get("summary")
        upstream = stored.get("upstream_status")
        self._set_outcome(
            ctx,
            action,
            status if status in ("succeeded", "failed") else "failed",
            upstream_status=upstream if isinstance(upstream, int) else None,
            summary=summary if isinstance(summary, str) else "",
            replayed=True,
        )
        ctx.result.reply = (
            "This action has already run (an approved action runs only once). Its outcome: "
            f"{summary if isinstance(summary, str) and summary else status}"
        )

    def _refuse(
        self, action_id: str, reason: str, ctx: _Context, *, action: Action | None = None
    ) -> None:
        known = reason if reason in _REFUSALS else "refused"
        self._audit_action(action, "refused", ctx, action_id=action_id, reason=known)
        self._set_outcome(ctx, action, "refused", action_id=action_id, reason=known)
        ctx.result.reply = _REFUSALS.get(
            known, f"This action was refused ({reason[:64]}). Nothing was changed."
        )

    def _unavailable(self, action_id: str, ctx: _Context, *, action: Action | None = None) -> None:
        self._audit_action(action, "error", ctx, action_id=action_id, reason="unavailable")
        self._set_outcome(ctx, action, "unavailable", action_id=action_id)
        ctx.result.reply = (
            "The token service is temporarily unavailable, so the action did not run. Confirm "
            "it again in a moment."
        )

    def _set_outcome(
        self,
        ctx: _Context,
        action: Action | None,
        status: str,
        *,
        action_id: str = "",
        reason: str | None = None,
        upstream_status: int | None = None,
        summary: str = "",
        replayed: bool = False,
    ) -> None:
        ctx.result.action_result = {
            "action_id": action.action_id if action else action_id,
            "tool": action.tool if action else None,
            "provider": action.provider if action else None,
            "status": status,
            "reason": reason,
            "upstream_status": upstream_status,
            "summary": summary,
            "replayed": replayed,
        }

    # ---------------------------------------------------------------- tokens and tool runs

    async def _token(self, spec: ToolSpec, ctx: _Context) -> ProviderToken | ToolOutcome:
        """A token for a read-only call, or the outcome that stands in for the call."""
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
            return self._consent(spec, grant, ctx)
        return grant

    def _consent(
        self, spec: ToolSpec, grant: ConsentNeeded, ctx: _Context, *, action_id: str | None = None
    ) -> ToolOutcome:
        item = grant.item()
        asked = ctx.result.authorization_required
        if all(a["session_id"] != item["session_id"] for a in asked):
            asked.append(item)
        self._record(spec, "authorization_required", ctx, action_id=action_id)
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

    async def _invoke(
        self,
        tool: Tool,
        checked: dict[str, Any],
        grant: ProviderToken,
        ctx: _Context,
        *,
        action: Action | None,
    ) -> ToolOutcome:
        """The only place a tool runs. A data-changing tool runs only with the approved action
        whose token the binder handed out for it (the confirmation turn)."""
        spec = tool.spec
        if spec.needs_approval and (action is None or action.tool != spec.name):
            refused = ToolError("approval_required", "a data-changing tool runs only when approved")
            return self._failed(spec, refused, ctx)
        action_id = action.action_id if action else None
        upstream_status.set(None)
        try:
            content = await tool.run(checked, token=grant.access_token, http=self._http)
        except ToolError as exc:
            return self._failed(spec, exc, ctx, action_id=action_id)
        self._record(spec, "ok", ctx, action_id=action_id)
        return ToolOutcome(tool=spec.name, provider=spec.provider, status="ok", content=content)

    # ---------------------------------------------------------------- results and audit

    def _failed(
        self, spec: ToolSpec, exc: ToolError, ctx: _Context, *, action_id: str | None = None
    ) -> ToolOutcome:
        content: dict[str, Any] = {"error": exc.kind, "message": exc.message}
        if exc.retry_at:
            content["retry_at"] = exc.retry_at
        self._record(spec, "error", ctx, reason=exc.kind, action_id=action_id)
        return ToolOutcome(tool=spec.name, provider=spec.provider, status="error", content=content)

    def _record(
        self,
        spec: ToolSpec,
        status: str,
        ctx: _Context,
        *,
        reason: str | None = None,
        action_id: str | None = None,
        arguments_sha256: str | None = None,
    ) -> None:
        """The tool call in the reply, and its audit line."""
        ctx.result.tool_calls.append(
            {"tool": spec.name, "provider": spec.provider, "status": status}
        )
        self._audit(
            ctx,
            tool=spec.name,
            provider=spec.provider,
            scopes=list(spec.scopes),
            outcome=status,
            reason=reason,
            action_id=action_id,
            arguments_sha256=arguments_sha256,
        )

    def _audit_action(
        self,
        action: Action | None,
        outcome: str,
        ctx: _Context,
        *,
        action_id: str = "",
        reason: str | None = None,
    ) -> None:
        """An audit line for a confirmation that ran no tool (refused, replayed, unavailable)."""
        self._audit(
            ctx,
            tool=action.tool if action else None,
            provider=action.provider if action else None,
            scopes=None,
            outcome=outcome,
            reason=reason,
            action_id=action.action_id if action else action_id,
            arguments_sha256=action.arguments_sha256 if action else None,
        )

    def _audit(self, ctx: _Context, **fields: Any) -> None:
        """One `tool_call` audit line: names, outcome and ids, never argument values or tokens."""
        line: dict[str, Any] = {
            "audit": "tool_call",
            "user_hash": ctx.user.user_hash,
            "request_id": ctx.request_id,
        }
        line.update({key: value for key, value in fields.items() if value is not None})
        _audit.info("tool_call", extra={"fields": line})


def _safe_describe(registry: Any, name: str, arguments: Mapping[str, Any]) -> str:
    try:
        return str(registry.get(name).describe(arguments))
    except (KeyError, ToolError):
        return name


def _summary(registry: Any, action: Action, outcome: ToolOutcome) -> str:
    """What the user is told, and the binder records, about one run of an action."""
    description = _safe_describe(registry, action.tool, action.arguments)
    if outcome.status == "ok":
        link = outcome.content.get("html_url")
        ident = outcome.content.get("id")
        text = f"Done: {description}."
        if isinstance(link, str) and link:
            text += f" {link}"
        elif isinstance(ident, str | int) and not isinstance(ident, bool):
            text += f" (id {ident})"
        return text[:2000]
    return f"That did not work ({description}): {outcome.content.get('message', 'error')}"[:2000]
