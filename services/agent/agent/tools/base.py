"""The contracts between the agent's parts: tools, tool families, the model loop, the orchestrator.

- A tool declares what it needs (provider and scopes) and how it is called (JSON schema); it
  receives an access token from the orchestrator and never anything else secret.
- The model loop (Bedrock Converse or the offline planner) decides which tools to call; it
  calls `Execute`, which returns a `ToolOutcome` whose `content` is what the model may see:
  API results, never tokens.
- The orchestrator (chat.py) gets tokens from the binder per call, turns `consent_required`
  into an `authorization_required` item, and never runs a tool that changes data in the turn
  that proposes it: it registers the call with the binder, the user approves it in the browser,
  and only a later confirmation turn runs exactly that call, once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import httpx2

Status = Literal["ok", "error", "authorization_required", "approval_required"]

# The HTTP status of the last answer a provider's API gave in this task (set by the tools'
# HTTP layer, read by the orchestrator for the action record): a context variable, so
# concurrent requests served by one tool instance never see each other's.
upstream_status: ContextVar[int | None] = ContextVar("upstream_status", default=None)


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    name: str  # [a-z0-9_]{1,64}, what the model calls
    description: str  # for the model: what it does and when to use it
    input_schema: Mapping[str, Any]  # JSON Schema, type "object"
    provider: str  # the binder's provider name whose token the tool needs
    scopes: tuple[str, ...]  # scopes the tool needs
    # Whether the tool changes data. Only an explicit False makes a tool read-only: a tool that
    # does not say (None) is treated as changing data, so it runs only through an approval.
    changes_data: bool | None = None

    @property
    def needs_approval(self) -> bool:
        """Runs only as an action the user approved in the browser (see chat.py)."""
        return self.changes_data is not False


class ToolError(Exception):
    """A tool failed in a way the user should hear about (never contains a token).

    kind: "invalid_arguments", "unauthorized" (the provider refused the token), "forbidden",
    "not_found", "rate_limited" (retry_at set when the provider says), "unavailable",
    "provider_error".
    """

    def __init__(self, kind: str, message: str, *, retry_at: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_at = retry_at


class Tool(Protocol):
    spec: ToolSpec

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Checked, normalised arguments; raises ToolError("invalid_arguments", ...)."""
        ...

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        """Call the provider's API; returns a JSON-serialisable result (no token in it)."""
        ...

    def describe(self, arguments: Mapping[str, Any]) -> str:
        """One line a person can confirm, e.g. 'create issue "Bug" in octo/repo'."""
        ...


@dataclass(frozen=True, kw_only=True)
class ToolOutcome:
    tool: str
    provider: str
    status: Status
    content: dict[str, Any]  # what the model sees (results or an error description)
    authorization: dict[str, Any] | None = None  # an authorization_required item, if any


Execute = Callable[[str, Mapping[str, Any]], Awaitable[ToolOutcome]]


@dataclass(frozen=True, kw_only=True)
class Turn:
    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True, kw_only=True)
class ModelReply:
    text: str
    rounds: int = 0
    stop_reason: str = "end_turn"
    outcomes: list[ToolOutcome] = field(default_factory=list)


class Model(Protocol):
    """Bedrock Converse or the offline planner: same tools, same orchestrator."""

    name: str  # shown in replies, e.g. "offline planner (not a language model)"

    async def respond(
        self,
        *,
        history: Sequence[Turn],
        message: str,
        tools: Sequence[ToolSpec],
        execute: Execute,
    ) -> ModelReply: ...


# ------------------------------------------------------------------------------- tool families


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """What a family may read from the agent's settings to build its tools.

    ``api_urls``: API base URLs by key (``github``, ``google``, ``microsoft``, ``notes``...);
    a family falls back to its provider's public URL, and a family whose API has none (the
    notes server) builds no tools without one. ``oidc_userinfo``: OIDC provider -> UserInfo URL.
    ``probe``: set only by registration checks, which build every tool a family can build
    (each missing URL stands in as ``PROBE_URL``) to check their schemas and phrases at import.
    """

    api_urls: Mapping[str, str] = field(default_factory=dict)
    oidc_userinfo: Mapping[str, str] = field(default_factory=dict)
    probe: bool = False

    def api_url(self, key: str, default: str | None = None) -> str | None:
        """The configured URL for ``key``, else ``default`` (None: this API is not configured)."""
        url = self.api_urls.get(key) or default
        if url is None and self.probe:
            return PROBE_URL
        return url


PROBE_URL: Final = "https://probe.invalid"


# The planner's reply for a successful outcome: (provider, content) -> text.
Reply = Callable[[str, Mapping[str, Any]], str]


@dataclass(frozen=True, kw_only=True)
class Phrase:
    """One way of asking for a tool, for the offline planner (no model involved).

    ``pattern``: a regular expression searched case-insensitively in the message (whitespace
    collapsed to single spaces unless ``keep_lines``). Its named groups are the tool's
    arguments: group ``title`` fills argument ``title``; alternatives of one argument are named
    ``title__2``, ``title__3`` (the first that matched wins). Values are stripped; those named
    in ``unquote`` also lose surrounding quotes; ``defaults`` fill arguments no group gave. A
    match whose required arguments (the tool's schema) come out blank does not count.
    ``{provider}`` in the pattern stands for the tool's provider name (escaped).
    ``hint``: instead of calling the tool, answer this text (``{choices}``: the family group's
    choices, see ``ToolPhrases``): for a request that names the tool but not its arguments.
    ``priority``: higher is tried first; the first priority with a match decides.
    """

    pattern: str
    priority: int = 10
    hint: str | None = None
    keep_lines: bool = False
    unquote: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ToolPhrases:
    """Everything the offline planner knows about one tool (or a name pattern of tools).

    ``tool``: the tool's name, or a shell-style pattern (``*_whoami``) for tools named at run
    time. ``example``: what the planner's help suggests (``{provider}`` is replaced).
    ``group`` and ``choice``: tools answering the same question for different providers (who
    am I); when a message matches several of them the planner asks which, listing each
    available tool's ``choice``. ``reply``: how a successful result is told to the user.
    """

    tool: str
    phrases: tuple[Phrase, ...] = ()
    example: str | None = None
    group: str | None = None
    choice: str | None = None
    reply: Reply | None = None
