"""The offline planner: a deterministic, rule-based `Model` for the local stack (no AWS account).

It is not a language model and says so in every reply. It holds no rule of its own about any
tool: it asks the tool families' phrasebook (tools/registry.py) which tool answers the message
and with which arguments, and how to word that tool's result. What it owns is the generic part:
one tool call per message at most, the replies for each outcome status, the help text, and the
redaction of anything token-like before a reply leaves it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from agent.tools.base import Execute, ModelReply, ToolOutcome, ToolSpec, Turn
from agent.tools.registry import Phrasebook

_LABEL: Final = "[offline planner] "

# Redaction of anything token-like that could reach a reply (belt and braces: the tool
# contract keeps tokens out of outcome content).
_TOKEN_LIKE: Final = (
    re.compile(r"\bbearer\s+\S+", re.IGNORECASE),
    re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),  # JWT
    re.compile(r"\b(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]{8,}"),  # GitHub tokens
    re.compile(r"\bya29\.[A-Za-z0-9._-]+"),  # Google access tokens
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]+"),  # Slack-style tokens
)
# Long opaque strings: a run of 40 or more of these characters with a letter and a digit in it
# (checked on the run, not by lookaheads at every position, which were quadratic).
_OPAQUE_RUN: Final = re.compile(r"[A-Za-z0-9_-]{40,}")
_DIGIT: Final = re.compile(r"\d")
_LETTER: Final = re.compile(r"[A-Za-z]")


def _opaque(match: re.Match[str]) -> str:
    run = match.group()
    return "[redacted]" if _DIGIT.search(run) and _LETTER.search(run) else run


def scrub(text: str) -> str:
    """Replace anything token-like in `text` with "[redacted]"."""
    for pattern in _TOKEN_LIKE:
        text = pattern.sub("[redacted]", text)
    return _OPAQUE_RUN.sub(_opaque, text)


@dataclass(frozen=True)
class Plan:
    tool: str | None  # None: reply with `text` and call nothing
    arguments: dict[str, Any]
    text: str = ""


class OfflinePlanner:
    """A deterministic, rule-based planner for the local stack: NOT a language model.

    It reads only the new message (not the history), asks the phrasebook which of the given
    tools answers it (each family declares its phrases, with a priority: the highest priority
    with a match decides; see ``Phrasebook.answer``), calls at most that one tool, and turns
    the `ToolOutcome` into a short reply. Every reply starts with "[offline planner] ".

    A phrase applies only when its tool is among the given specs. A phrase that names a tool
    without its arguments ("create an issue") gets the expected phrasing back; a question
    several tools answer ("who am I" with several identity tools) asks which; no match gets a
    help text listing what the available tools allow.

    Replies by outcome status: ok -> the family's wording of the content; authorization_required
    -> "I need your permission to use P. Use the Connect button, then ask again.";
    approval_required -> it has not run and needs the user's approval (the orchestrator adds
    the action and its approval link); error -> "P said: <content["message"]>". Token-like
    strings are redacted.

    Proposing a data-changing tool is all the planner does with it: the orchestrator registers
    the call for approval and runs it only in a later confirmation turn, which never reaches a
    model.
    """

    name = "offline planner (not a language model)"

    def __init__(self, phrasebook: Phrasebook | None = None) -> None:
        self._phrasebook = phrasebook or Phrasebook()

    async def respond(
        self,
        *,
        history: Sequence[Turn],
        message: str,
        tools: Sequence[ToolSpec],
        execute: Execute,
    ) -> ModelReply:
        del history  # stateless: each message is planned on its own
        specs = {spec.name: spec for spec in tools}
        plan = self.plan(message, tools)
        if plan.tool is None:
            return ModelReply(text=_LABEL + scrub(plan.text))
        outcome = await execute(plan.tool, plan.arguments)
        spec = specs[plan.tool]
        text = self._compose(spec, outcome.provider or spec.provider, outcome)
        return ModelReply(text=_LABEL + scrub(text), rounds=1, outcomes=[outcome])

    def plan(self, message: str, tools: Sequence[ToolSpec]) -> Plan:
        """The tool and arguments for `message` (no side effects; deterministic)."""
        answer = self._phrasebook.answer(message, tools)
        if answer is None:
            return Plan(None, {}, self._help(tools))
        return Plan(answer.tool, answer.arguments, answer.text)

    def _help(self, tools: Sequence[ToolSpec]) -> str:
        lines = []
        for spec in tools:
            example = self._phrasebook.example(spec)
            if example is not None:
                lines.append(f"- {example}: {spec.name} ({spec.provider})")
        head = (
            "I am a rule-based planner for the local stack, not a language model, so I only "
            "understand a few phrasings."
        )
        if not lines:
            return f"{head} No tools I can plan for are available right now."
        return head + " Try:\n" + "\n".join(lines)

    def _compose(self, spec: ToolSpec, provider: str, outcome: ToolOutcome) -> str:
        content = outcome.content if isinstance(outcome.content, Mapping) else {}
        if outcome.status == "authorization_required":
            return (
                f"I need your permission to use {provider}. Use the Connect button, then ask again."
            )
        if outcome.status == "approval_required":
            return "This changes data, so it has not run: it needs your approval first."
        if outcome.status == "error":
            message = content.get("message") or content.get("error") or "the request failed"
            return f"{provider} said: {message}"
        return self._phrasebook.reply(spec, content, provider)
