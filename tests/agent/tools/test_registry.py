"""Family discovery, the registry of tools, and what default_tools builds for which settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agent.tools.base import Phrase, ToolPhrases
from agent.tools.github import GithubListRepositories, GithubWhoami
from agent.tools.google import GoogleCalendarUpcoming
from agent.tools.microsoft import MicrosoftMailSubjects
from agent.tools.oidc import OidcWhoami
from agent.tools.registry import ToolFamily, ToolRegistry, default_tools, families
from agent.tools.schema import check_input_schema
from tests.agent.tools.helpers import (
    GITHUB,
    GOOGLE,
    GRAPH,
    GRAPH_ME,
    NOTES,
    USERINFO,
    Api,
    answer,
    run,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_registry_lookup_and_duplicates() -> None:
    registry = ToolRegistry(default_tools())
    assert registry.get("github_whoami").spec.provider == "github"
    with pytest.raises(KeyError):
        registry.get("nope")
    with pytest.raises(ValueError, match="duplicate"):
        ToolRegistry([GithubWhoami(), GithubWhoami()])


def test_default_tools() -> None:
    tools = default_tools(oidc_userinfo={"corp-sso": USERINFO, "okta": USERINFO})
    names = [tool.spec.name for tool in tools]
    assert names == [
        "github_whoami",
        "github_list_repositories",
        "github_create_issue",
        "google_calendar_upcoming",
        "microsoft_me",
        "microsoft_mail_subjects",
        "corp_sso_whoami",
        "okta_whoami",
    ]
    assert [t.spec.name for t in tools if t.spec.needs_approval] == ["github_create_issue"]
    with pytest.raises(ValueError, match="built in"):
        default_tools(oidc_userinfo={"github": USERINFO})


@pytest.mark.anyio
async def test_default_tools_use_the_given_base_urls() -> None:
    tools = {
        t.spec.name: t
        for t in default_tools(github_api=GITHUB, google_api=GOOGLE, graph_api=GRAPH + "/")
    }
    api = Api(answer(GRAPH_ME))
    await run(tools["microsoft_me"], api)
    assert str(api.only.url) == f"{GRAPH}/v1.0/me"


def test_for_providers() -> None:
    registry = ToolRegistry(default_tools(oidc_userinfo={"corp-sso": USERINFO}))
    only = registry.for_providers({"github", "corp-sso"})
    assert [spec.name for spec in only.specs()] == [
        "github_whoami",
        "github_list_repositories",
        "github_create_issue",
        "corp_sso_whoami",
    ]
    assert registry.for_providers([]).specs() == []
    assert len(registry) == 7  # the original is unchanged


def test_every_built_in_tool_registers() -> None:
    tools = default_tools(oidc_userinfo={"corp-sso": USERINFO, "okta": USERINFO})
    assert len(ToolRegistry(tools)) == 8
    for tool in tools:
        check_input_schema(tool.spec.name, tool.spec.input_schema)


def test_the_registry_builds_no_tool_config() -> None:
    """Bedrock's toolConfig is built in one place, model.tool_config (tested there)."""
    assert not hasattr(ToolRegistry, "bedrock_tool_config")


def test_describe_lines() -> None:
    assert GithubWhoami().describe({}) == "read your GitHub profile"
    assert GithubListRepositories().describe({"limit": 3, "visibility": "private"}) == (
        "list up to 3 of your private GitHub repositories"
    )
    assert OidcWhoami("corp-sso", USERINFO).describe({}) == "read your corp-sso profile"
    assert "5" in GoogleCalendarUpcoming().describe({"limit": 5})
    assert "10" in MicrosoftMailSubjects().describe({})


def test_every_built_in_tool_declares_its_effect() -> None:
    tools = default_tools(oidc_userinfo={"okta": USERINFO}, notes_api=NOTES)
    assert all(t.spec.changes_data is not None for t in tools)
    assert sorted(t.spec.name for t in tools if t.spec.needs_approval) == [
        "github_create_issue",
        "notes_create",
    ]


def test_families_are_found_by_module() -> None:
    assert [family.name for family in families()] == [
        "github",
        "google",
        "mcp",
        "microsoft",
        "notes",
        "oidc",
    ]


def test_a_module_without_a_family_is_refused_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A family module that forgot (or misspelled) FAMILY fails the start, loudly."""
    import agent.tools

    (tmp_path / "stray.py").write_text("FAMILIES = None\n")
    monkeypatch.setattr(agent.tools, "__path__", [*agent.tools.__path__, str(tmp_path)])
    families.cache_clear()
    try:
        with pytest.raises(TypeError, match=r"agent\.tools\.stray is a tool family module without"):
            families()
    finally:
        sys.modules.pop("agent.tools.stray", None)
        families.cache_clear()


def test_a_phrase_naming_no_argument_of_its_tool_is_refused_at_declaration() -> None:
    phrases = ToolPhrases(tool="github_whoami", phrases=(Phrase(pattern=r"who is (?P<login>\w+)"),))
    with pytest.raises(ValueError, match="'login', which is not an argument"):
        ToolFamily(name="probe", build=lambda c: [GithubWhoami()], phrases=(phrases,))


def test_phrases_for_a_tool_the_family_does_not_build_are_refused() -> None:
    phrases = ToolPhrases(tool="github_nothing", phrases=(Phrase(pattern="nothing"),))
    with pytest.raises(ValueError, match="does not build"):
        ToolFamily(name="probe", build=lambda c: [GithubWhoami()], phrases=(phrases,))


def test_a_family_that_builds_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="builds no tool"):
        ToolFamily(name="probe", build=lambda c: [])
