"""Remote MCP servers' tools (AGENT_MCP_SERVERS), offered to the model next to the built-in ones.

Spec: https://modelcontextprotocol.io/specification/2025-11-25/server/tools (tools/list,
tools/call, annotations). A server's listing is untrusted input, so each tool is adapted here:

- named ``<server>__<tool>`` (hyphens and other characters as ``_``, lowercased) within
  ``TOOL_NAME_RE``; a name that is too long, or that another tool already has, is refused;
- its description stripped of invisible characters and markers and cut to
  ``MAX_DESCRIPTION_BYTES``; its input schema accepted only if ``check_input_schema`` proves the
  validator enforces all of it (an absent ``additionalProperties`` is closed, which only
  tightens it), so arguments are checked before any call; a tool that fails is skipped and
  the reason logged and told;
- read-only only when its annotations say ``readOnlyHint: true``; anything else changes data
  and runs only through the user's approval (chat.py);
- at most ``MAX_TOOLS_PER_SERVER`` per server are offered (the reply says when more exist).

Results are text content only (other content types are counted, not passed on), cleaned the
same way and cut to ``MAX_RESULT_BYTES``: a result cannot carry a marker, and it cannot call
anything by itself (only the model calls tools, and writes still need the user's approval).

This module is a tool family only for the offline planner's phrase ("what's on my MCP notes"
-> any server's ``list_notes``); the tools themselves are listed per user at run time
(mcp_toolbox.py), never built from the settings.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import httpx2

from agent.mcp_client import McpFailure
from agent.settings import McpServer
from agent.text import clean_untrusted, redact
from agent.tools.base import Phrase, Tool, ToolContext, ToolError, ToolPhrases, ToolSpec
from agent.tools.registry import TOOL_NAME_RE, ToolFamily
from agent.tools.schema import check_input_schema, validate_arguments

if TYPE_CHECKING:  # the SDK is imported on first use (mcp_client.py)
    import mcp_types

logger = logging.getLogger("agent.mcp")

MAX_TOOLS_PER_SERVER: Final = 64
MAX_DESCRIPTION_BYTES: Final = 1024
MAX_PROPERTY_TEXT_BYTES: Final = 256  # a property's title or description
MAX_SCHEMA_BYTES: Final = 16 * 1024
MAX_RESULT_BYTES: Final = 16 * 1024  # of a result's text, to the model
MAX_REMOTE_NAME: Final = 128  # MCP tool names are 1-128 characters (spec 2025-11-25)
SEPARATOR: Final = "__"
_UNSAFE: Final = re.compile(r"[^a-z0-9_]")

# Calls a tool on a server with a token: McpClient.call_tool.
Caller = Callable[[McpServer, str, dict[str, Any], str], Awaitable["mcp_types.CallToolResult"]]


class RemoteAnnotations(Protocol):
    @property
    def read_only_hint(self) -> bool | None: ...


class RemoteTool(Protocol):
    """What ``adapt_tool`` reads of a listed tool: ``mcp_types.Tool`` has it, and so does the
    registration probe's stand-in, which this module builds without importing the SDK."""

    @property
    def name(self) -> str: ...
    @property
    def title(self) -> str | None: ...
    @property
    def description(self) -> str | None: ...
    @property
    def input_schema(self) -> dict[str, Any]: ...
    @property
    def annotations(self) -> RemoteAnnotations | None: ...


# McpFailure kinds -> ToolError kinds (chat.py and the planner know these).
_KINDS: Final = {
    "unreachable": "unavailable",
    "timeout": "unavailable",
    "server_error": "unavailable",
    "unauthorized": "unauthorized",
    "too_large": "provider_error",
    "protocol_error": "provider_error",
}


def tool_name(server: str, remote: str) -> str | None:
    """``<server>__<tool>`` for the model, or None if it would not fit ``TOOL_NAME_RE``."""
    name = _UNSAFE.sub("_", f"{server}{SEPARATOR}{remote}".lower())
    return name if TOOL_NAME_RE.fullmatch(name) else None


class McpTool:
    """One tool of one MCP server, called with the token the orchestrator hands its ``run``."""

    def __init__(
        self, *, server: McpServer, remote_name: str, spec: ToolSpec, caller: Caller
    ) -> None:
        self.server = server
        self.remote_name = remote_name
        self.spec = spec
        self._caller = caller

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return validate_arguments(self.spec.input_schema, arguments)

    def describe(self, arguments: Mapping[str, Any]) -> str:
        remote = json.dumps(self.remote_name, ensure_ascii=True)
        return f"run the tool {remote} of the MCP server {self.server.name}"

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        """``tools/call`` with this call's token (``http`` is unused: the MCP client opens its
        own session, which carries this token and nothing else)."""
        args = self.validate(arguments)
        try:
            result = await self._caller(self.server, self.remote_name, args, token)
        except McpFailure as exc:
            message = redact(clean_untrusted(exc.message, 400), token)
            raise ToolError(_KINDS.get(exc.kind, "provider_error"), message) from None
        return shape_result(self.server, self.remote_name, result, token)


def shape_result(
    server: McpServer, remote: str, result: mcp_types.CallToolResult, token: str
) -> dict[str, Any]:
    """What the model sees: the text content, cleaned and capped; other content counted."""
    texts: list[str] = []
    omitted: Counter[str] = Counter()
    budget = MAX_RESULT_BYTES * 4  # characters gathered before cleaning (bounded work)
    for block in result.content[:1000]:
        block_text = getattr(block, "text", None)
        if getattr(block, "type", None) == "text" and isinstance(block_text, str):
            if budget > 0:
                texts.append(block_text[:budget])
                budget -= len(texts[-1])
        else:
            omitted[str(getattr(block, "type", "other"))[:32]] += 1
    raw = "\n".join(texts)
    text = redact(clean_untrusted(raw, MAX_RESULT_BYTES), token)
    truncated = budget <= 0 or len(text.encode("utf-8")) < len(raw.encode("utf-8", "replace"))
    if result.is_error:
        raise ToolError(
            "provider_error",
            f"The MCP server {server.name} reported an error from {remote}: "
            + (clean_untrusted(text, 400) or "no details"),
        )
    content: dict[str, Any] = {"server": server.name, "tool": remote, "text": text}
    if truncated:
        content["truncated"] = True
    if omitted:
        content["omitted_content"] = dict(omitted)
    return content


def _clean_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with annotation text cleaned (it is shown to the model like a description)."""
    cleaned = dict(schema)
    properties: dict[str, Any] = {}
    for name, prop in dict(schema.get("properties", {})).items():
        prop = dict(prop)
        for key in ("title", "description"):
            if key in prop:
                prop[key] = clean_untrusted(prop[key], MAX_PROPERTY_TEXT_BYTES)
        properties[name] = prop
    if "properties" in schema:
        cleaned["properties"] = properties
    for key in ("title", "description"):
        if key in cleaned:
            cleaned[key] = clean_untrusted(cleaned[key], MAX_PROPERTY_TEXT_BYTES)
    return cleaned


def adapt_tool(server: McpServer, tool: RemoteTool, caller: Caller) -> McpTool | str:
    """The tool as the agent offers it, or why it is skipped."""
    remote = tool.name
    if not 1 <= len(remote) <= MAX_REMOTE_NAME or any(ord(c) < 0x21 for c in remote):
        return "its name is not a valid MCP tool name"
    shown = json.dumps(remote[:64], ensure_ascii=True)
    name = tool_name(server.name, remote)
    if name is None:
        return f"tool {shown}: its name does not fit the agent's 64-character tool names"
    schema: dict[str, Any] = dict(tool.input_schema)
    try:
        size = len(json.dumps(schema))
    except (TypeError, ValueError):
        return f"tool {shown}: its input schema is not JSON"
    if size > MAX_SCHEMA_BYTES:
        return f"tool {shown}: its input schema is larger than {MAX_SCHEMA_BYTES} bytes"
    # Closing an open object only tightens it: the model may send no undeclared argument.
    schema.setdefault("additionalProperties", False)
    try:
        check_input_schema(name, schema)
    except ValueError as exc:
        return clean_untrusted(str(exc), 300)
    description = clean_untrusted(tool.description or tool.title or "", MAX_DESCRIPTION_BYTES)
    read_only = tool.annotations is not None and tool.annotations.read_only_hint is True
    spec = ToolSpec(
        name=name,
        description=(
            f"[MCP server {server.name}, tool {shown}; the description is the server's] "
            + (description or "(no description)")
        ),
        input_schema=_clean_schema(schema),
        provider=server.name,
        scopes=server.scopes,
        # Only an explicit readOnlyHint: true is read-only; anything else needs approval.
        changes_data=not read_only,
    )
    return McpTool(server=server, remote_name=remote, spec=spec, caller=caller)


def adapt_listing(
    server: McpServer,
    tools: Sequence[RemoteTool],
    caller: Caller,
    *,
    reserved: Collection[str],
    complete: bool = True,
) -> tuple[list[McpTool], list[str]]:
    """The server's tools the agent offers (at most MAX_TOOLS_PER_SERVER), and notices for the
    user about what was left out. ``reserved``: names other tools already have."""
    offered: list[McpTool] = []
    notices: list[str] = []
    skipped: list[str] = []
    taken = set(reserved)
    for tool in tools:
        if len(offered) >= MAX_TOOLS_PER_SERVER:
            break
        adapted = adapt_tool(server, tool, caller)
        if isinstance(adapted, str):
            skipped.append(adapted)
            continue
        if adapted.spec.name in taken:
            skipped.append(f"tool {adapted.spec.name}: another tool already has that name")
            continue
        taken.add(adapted.spec.name)
        offered.append(adapted)
    for reason in skipped:
        logger.warning(
            "mcp tool skipped", extra={"fields": {"server": server.name, "reason": reason}}
        )
    if skipped:
        notices.append(
            f"{len(skipped)} tool(s) of the MCP server {server.name} were left out because "
            f"the agent cannot check them safely (first: {skipped[0]})."
        )
    listed = len(tools)
    if listed > len(offered) + len(skipped) or not complete:
        more = f"{listed}" + ("" if complete else " or more")
        notices.append(
            f"The MCP server {server.name} lists {more} tools; only the first "
            f"{MAX_TOOLS_PER_SERVER} usable ones are offered."
        )
        logger.warning(
            "mcp tools capped",
            extra={"fields": {"server": server.name, "listed": listed, "offered": len(offered)}},
        )
    return offered, notices


# ------------------------------------------------------------------------------- the planner


def _text_reply(provider: str, content: Mapping[str, Any]) -> str:
    text = content.get("text")
    if not isinstance(text, str) or not text.strip():
        return f"The MCP server {provider} returned nothing."
    return f"From the MCP server {provider}:\n{text}"


async def _probe_caller(
    server: McpServer, name: str, arguments: dict[str, Any], token: str
) -> mcp_types.CallToolResult:
    raise ToolError("unavailable", "the probe tool is never called")


@dataclass(frozen=True)
class _ProbeAnnotations:
    read_only_hint: bool | None


@dataclass(frozen=True)
class _ProbeTool:
    name: str
    input_schema: dict[str, Any]
    annotations: _ProbeAnnotations | None
    title: str | None = None
    description: str | None = "probe"


_ADD_MCP_NOTE: Final = r"\b(?:add|create|make|write)\s+(?:an?\s+)?(?:new\s+)?mcp\s+note\b"


def _build(context: ToolContext) -> Sequence[Tool]:
    """No tools from the settings: MCP tools are listed per user (mcp_toolbox.py). The probe
    (registration check) gets one stand-in per phrase, so that the phrases below are checked."""
    if not context.probe:
        return []
    probe = McpServer(name="probe", url="https://probe.invalid/mcp")
    listed = (
        _ProbeTool(
            name="list_notes",
            input_schema={"type": "object", "properties": {}},
            annotations=_ProbeAnnotations(read_only_hint=True),
        ),
        _ProbeTool(
            name="add_note",
            input_schema={
                "type": "object",
                "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
                "required": ["title", "body"],
            },
            annotations=_ProbeAnnotations(read_only_hint=False),
        ),
    )
    tools: list[Tool] = []
    for remote in listed:
        tool = adapt_tool(probe, remote, _probe_caller)
        if not isinstance(tool, McpTool):
            raise ValueError(f"the probe MCP tool was refused: {tool}")
        tools.append(tool)
    return tools


FAMILY = ToolFamily(
    name="mcp",
    build=_build,
    phrases=(
        ToolPhrases(
            tool=f"*{SEPARATOR}list_notes",
            phrases=(
                Phrase(
                    pattern=r"\bwhat(?:'|\u2019)?s\s+(?:on|in)\s+my\s+mcp\s+notes\b"
                    r"|\bwhat\s+is\s+(?:on|in)\s+my\s+mcp\s+notes\b"
                    r"|\b(?:list|show)\s+(?:me\s+)?my\s+mcp\s+notes\b",
                    priority=75,
                ),
            ),
            example='"what\'s on my MCP notes"',
            reply=_text_reply,
        ),
        ToolPhrases(
            tool=f"*{SEPARATOR}add_note",
            phrases=(
                # "add an MCP note titled Groceries saying milk" / 'add an MCP note "Groceries":
                # milk', as the notes API's phrase (notes.py) with "MCP" before "note". Only the
                # message's first occurrence is tried (atomic group: linear in its length).
                Phrase(
                    pattern=r"(?s)\A(?>.*?" + _ADD_MCP_NOTE + r")\s*"
                    r"(?:(?:titled|called|named)\s*:?\s*)?"
                    r"(?:[\"\u201c](?P<title>[^\"\u201d]+)[\"\u201d]|(?P<title__2>[^\n]+?))"
                    r"(?:\s*(?:\bsaying\b|\bthat\s+says\b|:)\s*(?P<body>.*?))?\s*\Z",
                    priority=85,
                    keep_lines=True,
                    unquote=("title",),
                    defaults={"body": ""},
                ),
                Phrase(
                    pattern=_ADD_MCP_NOTE,
                    priority=84,
                    hint="To add an MCP note, say: add an MCP note titled Title saying the text.",
                ),
            ),
            example='"add an MCP note titled Title saying text"',
            reply=None,
        ),
    ),
)
