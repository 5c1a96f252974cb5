"""The contract between the agent's parts: tools, the model loop, and the orchestrator.

- A tool declares what it needs (provider and scopes) and how it is called (JSON schema); it
  receives an access token from the orchestrator and never anything else secret.
- The model loop (Bedrock Converse or the offline planner) decides which tools to call; it
  calls `Execute`, which returns a `ToolOutcome` whose `content` is what the model may see:
  API results, never tokens.
- The orchestrator (chat.py) gets tokens from the binder per call, turns `consent_required`
  into an `authorization_required` item, and holds back tools that change data until the user
  confirms them in a separate turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx2

Status = Literal["ok", "error", "authorization_required", "confirmation_required"]


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    name: str  # [a-z0-9_]{1,64}, what the model calls
    description: str  # for the model: what it does and when to use it
    input_schema: Mapping[str, Any]  # JSON Schema, type "object"
    provider: str  # the binder's provider name whose token the tool needs
    scopes: tuple[str, ...]  # scopes the tool needs
    mutating: bool = False  # changes data: runs only after an explicit user confirmation


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
