"""How the offline planner words a tool's successful result: shared by the families' ``reply``.

Written for the planner's short replies, not for the model (which sees the result itself).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def first_str(content: Mapping[str, Any], *keys: str) -> str | None:
    """The first non-blank string among ``keys``, stripped."""
    for key in keys:
        value = content.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def identity_reply(provider: str, content: Mapping[str, Any]) -> str:
    """ "You are alice@example.com (Alice) on provider." from the usual identity claims."""
    who = first_str(
        content, "email", "preferred_username", "login", "mail", "userPrincipalName", "sub", "id"
    )
    name = first_str(content, "name", "displayName")
    if who is None and name is None:
        return f"{provider} did not say who you are."
    if who is None:
        return f"You are {name} on {provider}."
    if name is None or name == who:
        return f"You are {who} on {provider}."
    return f"You are {who} ({name}) on {provider}."


def _items(content: Mapping[str, Any], keys: Sequence[str]) -> list[Any] | None:
    for key in keys:
        value = content.get(key)
        if isinstance(value, list):
            return value
    return None


def list_reply(
    content: Mapping[str, Any],
    keys: Sequence[str],
    line: Callable[[Any], str | None],
    heading: str,
    empty: str,
) -> str:
    """``heading`` and one "- line" per item of the first list among ``keys``, else ``empty``."""
    lines = [text for text in (line(item) for item in _items(content, keys) or []) if text]
    if not lines:
        return empty
    return heading + "\n" + "\n".join(f"- {text}" for text in lines)
