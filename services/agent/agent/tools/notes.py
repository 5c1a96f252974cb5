"""The local stack's notes server (devstack/notes_server.py): list notes, create one.

A resource server protected by the local OIDC provider's access tokens: the agent's read tool
and its data-changing tool for the approval story. Its tools exist only when NOTES_API_URL is
set (there is no public default) and, in app.py, "notes" is one of AGENT_PROVIDERS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import httpx2

from agent.tools.base import Phrase, Tool, ToolContext, ToolPhrases, ToolSpec
from agent.tools.http import Api, BaseTool, as_int, as_mapping, check_base_url, clip, shape_error
from agent.tools.registry import ToolFamily
from agent.tools.replies import first_str, list_reply
from agent.tools.schema import check_title_and_body, limit_argument

# The notes server's scope: one grant reads and writes; each write still needs the user's
# approval at the binder.
NOTES_SCOPES: Final = ("notes",)


def _notes_api(base_url: str) -> Api:
    return Api(
        label="Notes",
        base_url=check_base_url(base_url, "the notes API URL"),
        headers={"Accept": "application/json"},
    )


def _note(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": clip(item.get("id")) if isinstance(item.get("id"), str) else as_int(item.get("id")),
        "title": clip(item.get("title")),
        "body": clip(item.get("body")),
        "created_at": clip(item.get("created_at")),
    }


class NotesList(BaseTool):
    """GET {NOTES_API_URL}/notes -> {"notes": [{"id", "title", "body", "created_at"}]}.

    The local stack's notes resource server (devstack), protected by the local OIDC provider's
    access tokens: the agent's read tool for the approval story.
    """

    def __init__(self, *, api_base: str) -> None:
        self._api = _notes_api(api_base)
        self.spec = ToolSpec(
            name="notes_list",
            description=(
                "List the user's notes (id, title, body, creation time), as the notes service "
                "returns them."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "limit": limit_argument("notes", maximum=50, default=20),
                },
                "additionalProperties": False,
            },
            provider="notes",
            scopes=NOTES_SCOPES,
            changes_data=False,
        )

    def describe(self, arguments: Mapping[str, Any]) -> str:
        return "list your notes"

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        limit: int = self.validate(arguments)["limit"]
        data = await self._api.call(
            self.spec, http, "GET", f"{self._api.base_url}/notes", token=token
        )
        items = as_mapping(data).get("notes")
        if not isinstance(items, list):
            raise shape_error(self._api)
        notes = [_note(item) for item in (as_mapping(item) for item in items[:limit])]
        return self._finish({"notes": notes}, token)


class NotesCreate(BaseTool):
    """POST {NOTES_API_URL}/notes with {"title", "body"} -> 201 {"id", ...}.

    Changes data: it runs only as an action the user approved in the browser.
    """

    def __init__(self, *, api_base: str) -> None:
        self._api = _notes_api(api_base)
        self.spec = ToolSpec(
            name="notes_create",
            description=(
                "Create a note with a title and a body. Changes data: it runs only after the "
                "user approves it in the browser. Returns the new note's id."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "title": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 200,
                        "description": "The note's title (one line).",
                    },
                    "body": {
                        "type": "string",
                        "minLength": 0,
                        "maxLength": 10000,
                        "default": "",
                        "description": "The note's text (optional).",
                    },
                },
                "required": ["title"],
                "additionalProperties": False,
            },
            provider="notes",
            scopes=NOTES_SCOPES,
            changes_data=True,
        )

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        args = super().validate(arguments)
        check_title_and_body(args)
        return args

    def describe(self, arguments: Mapping[str, Any]) -> str:
        args = self.validate(arguments)
        return f"create a note titled {json.dumps(args['title'], ensure_ascii=True)}"

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        args = self.validate(arguments)
        data = await self._api.call(
            self.spec,
            http,
            "POST",
            f"{self._api.base_url}/notes",
            token=token,
            json_body={"title": args["title"], "body": args["body"]},
            expect=(200, 201),
        )
        if not isinstance(data, Mapping):
            raise shape_error(self._api)
        note = _note(data)
        return self._finish(
            {"id": note["id"], "title": note["title"], "created_at": note["created_at"]}, token
        )


# ------------------------------------------------------------------------------- the planner

_QUOTED_TITLE: Final = (
    r"(?:[\"\u201c](?P<title>[^\"\u201d]+)[\"\u201d]|['\u2018](?P<title__2>[^'\u2019]+)['\u2019])"
)
_ADD_NOTE: Final = r"\b(?:add|create|make|write)\s+(?:a\s+)?(?:new\s+)?note\b"


def _note_line(item: Any) -> str | None:
    if not isinstance(item, Mapping):
        return None
    title = first_str(item, "title") or "(no title)"
    body = first_str(item, "body")
    return f"{title}: {body}" if body else title


def _notes_reply(provider: str, content: Mapping[str, Any]) -> str:
    return list_reply(content, ("notes",), _note_line, "Your notes:", "You have no notes yet.")


def _build(context: ToolContext) -> list[Tool]:
    base = context.api_url("notes")
    if base is None:
        return []
    return [NotesList(api_base=base), NotesCreate(api_base=base)]


FAMILY = ToolFamily(
    name="notes",
    build=_build,
    phrases=(
        ToolPhrases(
            tool="notes_create",
            phrases=(
                # "add a note titled Groceries saying milk, eggs" / 'create a note "Groceries":
                # milk'. Matched on the message as sent: the body keeps its lines.
                Phrase(
                    # Only the message's first "add a note" is tried (the atomic group does
                    # not backtrack to a later one): linear, where a search from every
                    # occurrence was quadratic in the message's length.
                    pattern=r"(?s)\A(?>.*?"
                    + _ADD_NOTE
                    + r")\s*(?:(?:titled|called|named)\s*:?\s*)?"
                    rf"(?:{_QUOTED_TITLE}|(?P<title__3>[^\n]+?))"
                    r"(?:\s*(?:\bsaying\b|\bthat\s+says\b|\bwith\s+(?:the\s+)?(?:body|text)\b|:)\s*"
                    r"(?P<body>.*?))?\s*\Z",
                    priority=80,
                    keep_lines=True,
                    unquote=("title",),
                    defaults={"body": ""},
                ),
                Phrase(
                    pattern=_ADD_NOTE,
                    priority=79,
                    hint="To add a note, say: add a note titled Title saying the text "
                    '(or: create a note "Title": the text).',
                ),
            ),
            example='"add a note titled Title saying text"',
            reply=None,
        ),
        ToolPhrases(
            tool="notes_list",
            phrases=(
                Phrase(
                    pattern=r"\bwhat(?:'|\u2019)?s\s+(?:on|in)\s+my\s+notes\b"
                    r"|\bwhat\s+is\s+(?:on|in)\s+my\s+notes\b"
                    r"|\b(?:list|show)\s+(?:me\s+)?(?:all\s+)?(?:of\s+)?my\s+notes\b|\bmy\s+notes\b",
                    priority=70,
                ),
            ),
            example='"list my notes"',
            reply=_notes_reply,
        ),
    ),
)
