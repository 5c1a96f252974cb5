"""The offline planner: which tool each phrasing reaches (through the families' phrases), its
replies, its help, and that nothing token-like leaves it."""

from __future__ import annotations

from typing import Any

import pytest

from agent.planner import OfflinePlanner, scrub
from agent.tools.base import ToolOutcome, ToolSpec, Turn
from tests.agent.model_support import (
    ALL_TOOLS,
    CALENDAR,
    MS_ME,
    SECRET,
    WHOAMI,
    FakeExecute,
    outcome,
    spec,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- offline planner ----------------------------------------------------------------------------

PLANNER = OfflinePlanner()


async def plan_reply(
    message: str, tools: list[ToolSpec] | None = None, execute: FakeExecute | None = None
) -> tuple[str, FakeExecute]:
    execute = execute or FakeExecute()
    reply = await PLANNER.respond(
        history=[], message=message, tools=ALL_TOOLS if tools is None else tools, execute=execute
    )
    assert reply.text.startswith("[offline planner] ")
    assert reply.stop_reason == "end_turn"
    assert reply.rounds == len(execute.calls)
    assert len(reply.outcomes) == len(execute.calls)
    return reply.text, execute


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("message", "tool", "arguments"),
    [
        ("Who am I on mock?", "mock_whoami", {}),
        ("whoami mock", "mock_whoami", {}),
        ("who am I", "mock_whoami", {}),  # the only *_whoami tool
        ("WHO AM I ON MICROSOFT", "microsoft_me", {}),
        ("show my Microsoft profile", "microsoft_me", {}),
        ("list my repos", "github_list_repositories", {}),
        ("Please LIST REPOSITORIES", "github_list_repositories", {}),
        ("show me all my github repositories", "github_list_repositories", {}),
        (
            "create an issue in octo-org/hello.world titled Fix the login bug",
            "github_create_issue",
            {"repository": "octo-org/hello.world", "title": "Fix the login bug"},
        ),
        (
            'Create issue in octo/app titled "Don\'t crash"',
            "github_create_issue",
            {"repository": "octo/app", "title": "Don't crash"},
        ),
        (
            'create issue "Crash on start" in Octo/App',
            "github_create_issue",
            {"repository": "Octo/App", "title": "Crash on start"},
        ),
        (
            "please create an issue \u201cCalendar is wrong\u201d in octo/app",
            "github_create_issue",
            {"repository": "octo/app", "title": "Calendar is wrong"},
        ),
        ("what's on my calendar?", "google_calendar_upcoming", {}),
        ("any Upcoming Events", "google_calendar_upcoming", {}),
        ("meetings today", "google_calendar_upcoming", {}),
        ("check my mail", "microsoft_mail_subjects", {}),
        ("email subjects please", "microsoft_mail_subjects", {}),
        ("what's in my INBOX", "microsoft_mail_subjects", {}),
    ],
)
async def test_planner_rules(message: str, tool: str, arguments: dict[str, Any]) -> None:
    _, execute = await plan_reply(message)

    assert execute.calls == [(tool, arguments)]


@pytest.mark.anyio
async def test_planner_whoami_with_several_providers() -> None:
    tools = [WHOAMI, spec("github_whoami", "github"), MS_ME]

    text, execute = await plan_reply("who am I?", tools)
    assert execute.calls == []
    assert '"who am I on github"' in text
    assert '"who am I on microsoft"' in text
    assert '"who am I on mock"' in text

    _, execute = await plan_reply("who am i on GitHub", tools)
    assert execute.calls == [("github_whoami", {})]

    text, execute = await plan_reply("who am I on gitlab", tools)
    assert execute.calls == []
    assert "no identity tool" in text


@pytest.mark.anyio
async def test_planner_applies_a_rule_only_when_its_tool_is_available() -> None:
    text, execute = await plan_reply("list my repos", [WHOAMI, CALENDAR])

    assert execute.calls == []
    assert "not a language model" in text


@pytest.mark.anyio
async def test_planner_create_issue_without_details_explains_the_phrasing() -> None:
    text, execute = await plan_reply("create an issue please")

    assert execute.calls == []
    assert 'create issue "Title" in owner/repo' in text


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("message", "result", "expected"),
    [
        (
            "who am I on mock",
            outcome(
                "mock_whoami",
                "mock",
                "ok",
                {"sub": "u-1", "name": "Alice", "email": "alice@mock"},
            ),
            "[offline planner] You are alice@mock (Alice) on mock.",
        ),
        (
            "who am I on mock",
            outcome("mock_whoami", "mock", "ok", {"sub": "u-1", "preferred_username": "alice"}),
            "[offline planner] You are alice on mock.",
        ),
        (
            "microsoft profile",
            outcome(
                "microsoft_me",
                "microsoft",
                "ok",
                {"displayName": "Bob", "userPrincipalName": "bob@contoso.example"},
            ),
            "[offline planner] You are bob@contoso.example (Bob) on microsoft.",
        ),
        (
            "list my repos",
            outcome(
                "github_list_repositories",
                "github",
                "ok",
                {
                    "repositories": [
                        {"full_name": "octo/app", "private": True},
                        {"full_name": "octo/docs", "private": False},
                    ]
                },
            ),
            "[offline planner] Your repositories on github:\n- octo/app (private)\n- octo/docs",
        ),
        (
            "list my repos",
            outcome("github_list_repositories", "github", "ok", {"repositories": []}),
            "[offline planner] You have no repositories on github.",
        ),
        (
            "upcoming events",
            outcome(
                "google_calendar_upcoming",
                "google",
                "ok",
                {
                    "events": [
                        {"summary": "Standup", "start": {"dateTime": "2030-01-02T09:00:00Z"}},
                        {"summary": "Holiday", "start": {"date": "2030-01-05"}},
                        {"summary": "Whenever"},
                    ]
                },
            ),
            "[offline planner] Your upcoming events:\n- 2030-01-02T09:00:00Z: Standup\n"
            "- 2030-01-05: Holiday\n- Whenever",
        ),
        (
            "my mail",
            outcome(
                "microsoft_mail_subjects",
                "microsoft",
                "ok",
                {
                    "messages": [
                        {"subject": "Invoice", "from": "billing@example.com"},
                        {"subject": "Hello"},
                    ]
                },
            ),
            "[offline planner] Your latest mail:\n- Invoice (from billing@example.com)\n- Hello",
        ),
        (
            'create issue "Bug" in octo/app',
            outcome(
                "github_create_issue",
                "github",
                "ok",
                {"number": 7, "title": "Bug", "html_url": "https://github.example/octo/app/7"},
            ),
            '[offline planner] Created issue #7 "Bug": https://github.example/octo/app/7',
        ),
    ],
)
async def test_planner_ok_replies(message: str, result: ToolOutcome, expected: str) -> None:
    text, _ = await plan_reply(message, execute=FakeExecute({result.tool: result}))

    assert text == expected


@pytest.mark.anyio
async def test_planner_authorization_required() -> None:
    result = outcome(
        "github_list_repositories",
        "github",
        "authorization_required",
        {"status": "authorization_required", "message": "not granted"},
    )
    text, _ = await plan_reply("list my repos", execute=FakeExecute({result.tool: result}))

    assert text == (
        "[offline planner] I need your permission to use github. "
        "Use the Connect button, then ask again."
    )


@pytest.mark.anyio
async def test_planner_approval_required_says_nothing_ran() -> None:
    message = "This action changes data, so it has not run."
    result = outcome(
        "github_create_issue",
        "github",
        "approval_required",
        {"status": "approval_required", "message": message},
    )
    text, execute = await plan_reply(
        'create issue "Bug" in octo/app', execute=FakeExecute({result.tool: result})
    )

    assert execute.calls == [("github_create_issue", {"repository": "octo/app", "title": "Bug"})]
    assert text == (
        "[offline planner] This changes data, so it has not run: it needs your approval first."
    )


@pytest.mark.anyio
async def test_planner_error() -> None:
    result = outcome(
        "google_calendar_upcoming",
        "google",
        "error",
        {"error": "rate_limited", "message": "Rate limit exceeded"},
    )
    text, _ = await plan_reply("calendar", execute=FakeExecute({result.tool: result}))

    assert text == "[offline planner] google said: Rate limit exceeded"


@pytest.mark.anyio
async def test_planner_help_lists_available_tools() -> None:
    text, execute = await plan_reply("tell me a joke")

    assert execute.calls == []
    assert "not a language model" in text
    for tool in ALL_TOOLS:
        assert tool.name in text
    assert '"who am I on mock"' in text

    text, _ = await plan_reply("list my repos", [CALENDAR])
    assert "github_list_repositories" not in text
    assert "google_calendar_upcoming" in text

    text, _ = await plan_reply("anything", [])
    assert "No tools" in text


@pytest.mark.anyio
async def test_planner_is_deterministic() -> None:
    result = outcome(
        "google_calendar_upcoming",
        "google",
        "ok",
        {"events": [{"summary": "A", "start": "2030-01-01T00:00:00Z"}]},
    )
    replies = []
    for _ in range(3):
        execute = FakeExecute({result.tool: result})
        reply = await OfflinePlanner().respond(
            history=[Turn(role="user", text="earlier")],
            message="My Calendar",
            tools=ALL_TOOLS,
            execute=execute,
        )
        replies.append((reply, execute.calls))
    assert replies[0] == replies[1] == replies[2]
    assert PLANNER.plan("meetings", ALL_TOOLS) == PLANNER.plan("meetings", ALL_TOOLS)


@pytest.mark.anyio
async def test_planner_never_echoes_token_like_strings() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJl"
    result = outcome(
        "mock_whoami",
        "mock",
        "ok",
        {"sub": SECRET, "name": f"Bearer {jwt}", "email": jwt},
    )
    error = outcome("microsoft_mail_subjects", "microsoft", "error", {"message": f"bad {SECRET}"})

    text, _ = await plan_reply("who am I", execute=FakeExecute({result.tool: result}))
    mail_text, _ = await plan_reply("inbox", execute=FakeExecute({error.tool: error}))

    for reply in (text, mail_text):
        assert SECRET not in reply
        assert jwt not in reply
        assert "[redacted]" in reply


def test_scrub_keeps_ordinary_text() -> None:
    text = "You are alice@mock (Alice) on mock. https://github.example/octo/app/issues/7"
    assert scrub(text) == text
    assert scrub("token ya29.a0AfH6SMBx-abc here") == "token [redacted] here"
