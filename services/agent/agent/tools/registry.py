"""The tool families, found by module, and the registry of the tools one agent offers.

A tool family is a module of this package with a module attribute ``FAMILY = ToolFamily(...)``:
``families()`` imports every module of the package (``pkgutil.iter_modules``) but the
infrastructure ones (``INFRASTRUCTURE``), in module-name order, and refuses one without a
``FAMILY``, so adding a family is one new module (and its test); there is no list to edit.
Declaring a ``ToolFamily`` checks it at once, at import: it builds every tool the family can
build (``ToolContext.probe``) and refuses a bad tool name, an input schema that uses a keyword
the validator does not enforce (``schema.check_input_schema``), and phrases whose named groups
are not the tool's arguments.

``ToolRegistry`` holds the tools one agent offers (checked again as they register);
``Phrasebook`` answers the offline planner's one question: which tool answers this message,
with which arguments (planner.py holds no tool-specific rule).
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import pkgutil
import re
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from agent.tools.base import (
    PROBE_URL,
    Phrase,
    Tool,
    ToolContext,
    ToolPhrases,
    ToolSpec,
)
from agent.tools.schema import check_input_schema

__all__ = [
    "Answer",
    "Phrasebook",
    "ToolFamily",
    "ToolRegistry",
    "default_tools",
    "families",
]

_PACKAGE: Final = __name__.rpartition(".")[0]
# The package's modules that are not tool families; every other module must declare FAMILY.
INFRASTRUCTURE: Final = frozenset({"base", "http", "registry", "replies", "schema"})
TOOL_NAME_RE: Final = re.compile(r"[a-z0-9_]{1,64}")
QUOTES: Final = "\"'\u201c\u201d\u2018\u2019"  # straight and curly quotes
_PROBE: Final = ToolContext(probe=True, oidc_userinfo=MappingProxyType({"probe": PROBE_URL}))
_NONE: Final[Mapping[str, str]] = MappingProxyType({})


def check_tool(tool: Tool) -> None:
    """ValueError unless the tool's name is well-formed and its schema fully enforced."""
    name = tool.spec.name
    if not isinstance(name, str) or TOOL_NAME_RE.fullmatch(name) is None:
        raise ValueError(f"invalid tool name {name!r}")
    check_input_schema(name, tool.spec.input_schema)


@dataclass(frozen=True, kw_only=True)
class ToolFamily:
    """One module's tools: how they are built from the settings and how they are asked for.

    ``build`` returns the tools for a ``ToolContext`` (none when the family's API is not
    configured); ``phrases`` is what the offline planner recognises, per tool.
    """

    name: str
    build: Callable[[ToolContext], Sequence[Tool]]
    phrases: tuple[ToolPhrases, ...] = ()

    def __post_init__(self) -> None:
        """Refuse the family at import: every tool it can build and every phrase is checked."""
        try:
            tools = list(self.build(_PROBE))
            if not tools:
                raise ValueError("it builds no tool even with every API configured")
            for tool in tools:
                check_tool(tool)
            for entry in self.phrases:
                _check_phrases(entry, [t.spec for t in tools])
        except ValueError as exc:
            raise ValueError(f"tool family {self.name!r}: {exc}") from None


def _check_phrases(entry: ToolPhrases, specs: Sequence[ToolSpec]) -> None:
    matching = [spec for spec in specs if fnmatch.fnmatchcase(spec.name, entry.tool)]
    if not matching:
        raise ValueError(f"phrases for {entry.tool!r}, a tool the family does not build")
    for phrase in entry.phrases:
        try:
            compiled = _compile(phrase.pattern, "probe")
        except re.error:
            raise ValueError(
                f"a phrase of {entry.tool!r} is not a valid regular expression"
            ) from None
        names = {_argument(group) for group in compiled.groupindex}
        names |= set(phrase.unquote) | set(phrase.defaults)
        for spec in matching:
            properties = spec.input_schema.get("properties", {})
            unknown = sorted(names - set(properties))
            if unknown:
                raise ValueError(
                    f"a phrase of {spec.name!r} names {unknown[0]!r}, which is not an argument"
                )


@functools.cache
def families() -> tuple[ToolFamily, ...]:
    """Every ``FAMILY`` of this package's modules, in module-name order (imported once)."""
    package = sys.modules[_PACKAGE]
    found: list[ToolFamily] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name in INFRASTRUCTURE or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_PACKAGE}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if not isinstance(family, ToolFamily):
            # A family module that forgot its FAMILY would otherwise vanish without a word.
            raise TypeError(
                f"{module.__name__} is a tool family module without a ToolFamily FAMILY"
            )
        if any(other.name == family.name for other in found):
            raise ValueError(f"two tool families are named {family.name!r}")
        found.append(family)
    return tuple(found)


class ToolRegistry:
    """The tools the agent offers, by name, in a fixed order.

    A tool is registered only if its name is well-formed and unique and its input schema uses
    only what ``validate_arguments`` enforces (``check_input_schema``): ValueError otherwise.
    """

    def __init__(self, tools: Sequence[Tool]) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            name = tool.spec.name
            if TOOL_NAME_RE.fullmatch(name) is None:
                raise ValueError(f"invalid tool name {name!r}")
            if name in self._tools:
                raise ValueError(f"duplicate tool name {name!r}")
            check_input_schema(name, tool.spec.input_schema)
            self._tools[name] = tool

    def get(self, name: str) -> Tool:
        return self._tools[name]  # KeyError if unknown

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def specs(self) -> list[ToolSpec]:
        return [tool.spec for tool in self._tools.values()]

    def for_providers(self, providers: Collection[str]) -> ToolRegistry:
        """Only the tools whose provider is configured (in ``providers``)."""
        wanted = frozenset(providers)
        return ToolRegistry([t for t in self._tools.values() if t.spec.provider in wanted])


def default_tools(
    *,
    oidc_userinfo: Mapping[str, str] = _NONE,
    github_api: str | None = None,
    google_api: str | None = None,
    graph_api: str | None = None,
    notes_api: str | None = None,
    api_urls: Mapping[str, str] = _NONE,
) -> list[Tool]:
    """Every family's tools for these settings, in family order.

    Each family uses its provider's public API unless a URL is given; the notes tools exist
    only with ``notes_api``; one whoami tool per ``oidc_userinfo`` entry (name -> URL).
    ``api_urls`` gives other families their URL by key. A tool name two families would both
    define is a ValueError (an OIDC provider named like a built-in family, say).
    """
    urls = dict(api_urls)
    for key, url in (
        ("github", github_api),
        ("google", google_api),
        ("microsoft", graph_api),
        ("notes", notes_api),
    ):
        if url is not None:
            urls[key] = url
    context = ToolContext(api_urls=urls, oidc_userinfo=oidc_userinfo)
    tools: list[Tool] = []
    owner: dict[str, str] = {}
    for family in families():
        for tool in family.build(context):
            name = tool.spec.name
            if name in owner:
                raise ValueError(
                    f"the {family.name} family would define the tool {name!r}, which is built in "
                    f"(the {owner[name]} family defines it)"
                )
            owner[name] = family.name
            tools.append(tool)
    return tools


# ------------------------------------------------------------------------------ the phrasebook


@dataclass(frozen=True)
class Answer:
    """A tool to call with these arguments, or (tool None) a text to answer instead."""

    tool: str | None
    arguments: dict[str, Any]
    text: str = ""


def _argument(group: str) -> str:
    """``title__2`` is the second way of writing argument ``title``."""
    return group.split("__", 1)[0]


@functools.lru_cache(maxsize=512)
def _compile(pattern: str, provider: str) -> re.Pattern[str]:
    return re.compile(pattern.replace("{provider}", re.escape(provider)), re.IGNORECASE)


def _arguments(match: re.Match[str], phrase: Phrase, spec: ToolSpec) -> dict[str, Any] | None:
    arguments: dict[str, Any] = {}
    for group, value in match.groupdict().items():
        name = _argument(group)
        if value is None or name in arguments:
            continue
        value = value.strip()
        if name in phrase.unquote:
            value = value.strip(QUOTES).strip()
        arguments[name] = value
    for name, value in phrase.defaults.items():
        arguments.setdefault(name, value)
    for name in spec.input_schema.get("required", ()):
        value = arguments.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # the phrase was used but an argument the tool needs is blank
    return arguments


class Phrasebook:
    """The families' phrases, asked by the offline planner (deterministic, no side effects)."""

    def __init__(self, tool_families: Sequence[ToolFamily] | None = None) -> None:
        chosen = families() if tool_families is None else tool_families
        self._entries = [entry for family in chosen for entry in family.phrases]

    def entries(self, spec: ToolSpec) -> list[ToolPhrases]:
        """The phrases declared for this tool (by name or name pattern), in family order."""
        return [e for e in self._entries if fnmatch.fnmatchcase(spec.name, e.tool)]

    def answer(self, message: str, tools: Sequence[ToolSpec]) -> Answer | None:
        """Which of ``tools`` answers ``message``: the highest priority with a match decides.

        At that priority: one tool matched with its arguments -> call it; several -> ask
        which (listing the group's choices); only hints -> the first hint; None if nothing
        matched at any priority.
        """
        collapsed = " ".join(message.split())
        stripped = message.strip()
        candidates = [
            (phrase.priority, spec, entry, phrase)
            for spec in tools
            for entry in self.entries(spec)
            for phrase in entry.phrases
        ]
        for priority in sorted({c[0] for c in candidates}, reverse=True):
            calls: dict[str, tuple[ToolSpec, ToolPhrases, dict[str, Any]]] = {}
            hints: list[str] = []
            for _, spec, entry, phrase in (c for c in candidates if c[0] == priority):
                text = stripped if phrase.keep_lines else collapsed
                match = _compile(phrase.pattern, spec.provider).search(text)
                if match is None:
                    continue
                if phrase.hint is not None:
                    hints.append(phrase.hint.replace("{choices}", self._choices(entry, tools)))
                    continue
                arguments = _arguments(match, phrase, spec)
                if arguments is not None:
                    calls.setdefault(spec.name, (spec, entry, arguments))
            if len(calls) == 1:
                ((name, (_, _, arguments)),) = calls.items()
                return Answer(name, arguments)
            if calls:
                first = next(iter(calls.values()))
                providers = {spec.provider for spec, _, _ in calls.values()}
                which = "provider" if len(providers) == len(calls) else "tool"
                choices = self._choices(first[1], tools) or ", ".join(
                    example
                    for spec, _, _ in calls.values()
                    if (example := self.example(spec)) is not None
                )
                return Answer(None, {}, f"Which {which}? Say one of: {choices}.")
            if hints:
                return Answer(None, {}, hints[0])
        return None

    def _choices(self, entry: ToolPhrases, tools: Sequence[ToolSpec]) -> str:
        """The quoted ``choice`` of every available tool in ``entry``'s group, sorted."""
        if entry.group is None:
            return ""
        found = {
            f'"{other.choice.replace("{provider}", spec.provider.lower())}"'
            for spec in tools
            for other in self.entries(spec)
            if other.group == entry.group and other.choice is not None
        }
        return ", ".join(sorted(found))

    def example(self, spec: ToolSpec) -> str | None:
        """How the planner's help suggests asking for this tool."""
        for entry in self.entries(spec):
            if entry.example is not None:
                return entry.example.replace("{provider}", spec.provider)
        return None

    def reply(self, tool: ToolSpec, content: Mapping[str, Any], provider: str) -> str:
        """The successful result of ``tool`` told in a sentence or a list."""
        for entry in self.entries(tool):
            if entry.reply is not None:
                return entry.reply(provider, content)
        return f"{tool.name} finished."
