"""The notes family (the local notes server) and when its tools exist."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.tools.base import ToolError
from agent.tools.notes import NotesCreate, NotesList
from agent.tools.registry import default_tools
from tests.agent.tools.helpers import (
    NOTES,
    Api,
    answer,
    assert_bearer,
    run,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_notes_list() -> None:
    note = {"id": "n1", "title": "Groceries", "body": "milk", "created_at": "2026-01-01T00:00Z"}
    api = Api(answer({"notes": [note, {"id": 2, "title": "x" * 600}]}))
    tool = NotesList(api_base=NOTES)
    result = await run(tool, api)
    request = api.only
    assert (request.method, str(request.url)) == ("GET", f"{NOTES}/notes")
    assert_bearer(request)
    assert result["notes"][0] == note
    assert result["notes"][1]["id"] == 2
    assert len(result["notes"][1]["title"]) == 500  # provider text is cut
    assert (tool.spec.provider, tool.spec.changes_data) == ("notes", False)


@pytest.mark.anyio
async def test_notes_create_posts_the_whole_body() -> None:
    body = "line\n" * 2000
    api = Api(answer({"id": "n7", "title": "T", "created_at": "2026-01-01T00:00Z"}, 201))
    tool = NotesCreate(api_base=NOTES)
    result = await run(tool, api, {"title": "T", "body": body})
    request = api.only
    assert (request.method, str(request.url)) == ("POST", f"{NOTES}/notes")
    assert_bearer(request)
    assert json.loads(request.content) == {"title": "T", "body": body}
    assert result == {"id": "n7", "title": "T", "created_at": "2026-01-01T00:00Z"}
    assert (tool.spec.provider, tool.spec.changes_data, tool.spec.needs_approval) == (
        "notes",
        True,
        True,
    )
    assert tool.spec.scopes == ("notes",)  # the notes server's one scope; approval gates writes


@pytest.mark.parametrize(
    "arguments",
    [
        {"title": "x" * 201},
        {"title": " "},
        {"title": "a\nb"},
        {"title": "t", "body": "x" * 10001},
        {"title": "t", "body": "bell\x07"},
        {"body": "no title"},
        {"title": "t", "tags": "x"},
    ],
    ids=["long-title", "blank", "multi-line-title", "long-body", "control", "no-title", "extra"],
)
def test_notes_create_checks_its_arguments(arguments: dict[str, Any]) -> None:
    with pytest.raises(ToolError) as caught:
        NotesCreate(api_base=NOTES).validate(arguments)
    assert caught.value.kind == "invalid_arguments"


def test_notes_create_accepts_the_limits() -> None:
    tool = NotesCreate(api_base=NOTES)
    args = tool.validate({"title": "x" * 200, "body": "y" * 10000})
    assert (len(args["title"]), len(args["body"])) == (200, 10000)
    assert tool.validate({"title": "t"}) == {"title": "t", "body": ""}


def test_notes_tools_only_with_their_url() -> None:
    names = [t.spec.name for t in default_tools()]
    assert "notes_list" not in names
    names = [t.spec.name for t in default_tools(notes_api=NOTES)]
    assert names[-2:] == ["notes_list", "notes_create"]
