"""Tool specs, a recording executor and outcomes shared by the model's and the planner's tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.tools.base import ToolOutcome, ToolSpec

SECRET = "gho_SECRETSECRETSECRET0123456789abcdef"  # a provider access token the model must not see


def spec(name: str, provider: str, *, changes_data: bool | None = False) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=f"{name} description",
        input_schema={"type": "object", "properties": {}, "additionalProperties": False},
        provider=provider,
        scopes=("read",),
        changes_data=changes_data,
    )


WHOAMI = spec("mock_whoami", "mock")
REPOS = spec("github_list_repositories", "github")
ISSUE = ToolSpec(
    name="github_create_issue",
    description="Create an issue",
    input_schema={
        "type": "object",
        "properties": {"repository": {"type": "string"}, "title": {"type": "string"}},
        "required": ["repository", "title"],
    },
    provider="github",
    scopes=("repo",),
    changes_data=True,
)
CALENDAR = spec("google_calendar_upcoming", "google")
MS_ME = spec("microsoft_me", "microsoft")
MAIL = spec("microsoft_mail_subjects", "microsoft")
ALL_TOOLS = [WHOAMI, REPOS, ISSUE, CALENDAR, MS_ME, MAIL]


class FakeExecute:
    """Records calls; answers with canned outcomes (default: ok with {"ok": True})."""

    def __init__(self, outcomes: Mapping[str, ToolOutcome] | None = None) -> None:
        self.outcomes = dict(outcomes or {})
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        self.calls.append((name, dict(arguments)))
        if name in self.outcomes:
            return self.outcomes[name]
        return ToolOutcome(tool=name, provider="mock", status="ok", content={"ok": True})


def outcome(tool: str, provider: str, status: Any, content: dict[str, Any]) -> ToolOutcome:
    return ToolOutcome(tool=tool, provider=provider, status=status, content=content)
