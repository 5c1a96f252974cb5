"""The GitHub family against mocked API answers in GitHub's documented shapes."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from agent.tools.base import ToolError
from agent.tools.github import GithubCreateIssue, GithubListRepositories, GithubWhoami
from agent.tools.schema import validate_arguments
from tests.agent.tools.helpers import (
    GITHUB,
    GITHUB_ISSUE,
    GITHUB_USER,
    Api,
    answer,
    assert_github_headers,
    fail,
    github_repo,
    run,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_github_whoami() -> None:
    api = Api(answer(GITHUB_USER))
    tool = GithubWhoami(api_base=GITHUB)
    result = await run(tool, api)
    request = api.only
    assert request.method == "GET"
    assert str(request.url) == f"{GITHUB}/user"
    assert_github_headers(request)
    assert result == {
        "login": "octocat",
        "name": "monalisa octocat",
        "html_url": "https://github.com/octocat",
        "public_repos": 2,
    }
    assert (tool.spec.provider, tool.spec.scopes, tool.spec.changes_data) == (
        "github",
        ("read:user",),
        False,
    )


@pytest.mark.anyio
async def test_github_list_repositories() -> None:
    repos = [
        github_repo("Hello-World", description="This your first repo!"),
        github_repo("secret", private=True, description="x" * 2000),
        github_repo("third"),
    ]
    api = Api(answer(repos))
    tool = GithubListRepositories(api_base=GITHUB)
    result = await run(tool, api, {"limit": 2, "visibility": "private"})
    request = api.only
    assert request.method == "GET"
    assert request.url.path == "/user/repos"
    assert dict(request.url.params) == {
        "sort": "updated",
        "per_page": "2",
        "visibility": "private",
    }
    assert_github_headers(request)
    first, second = result["repositories"]  # cut to the limit
    assert first == {
        "full_name": "octocat/Hello-World",
        "private": False,
        "description": "This your first repo!",
        "html_url": "https://github.com/octocat/Hello-World",
        "updated_at": "2011-01-26T19:14:43Z",
    }
    assert second["private"] is True
    assert len(second["description"]) == 500  # long strings are truncated
    assert (tool.spec.provider, tool.spec.scopes) == ("github", ("repo",))


@pytest.mark.anyio
async def test_github_list_repositories_defaults() -> None:
    api = Api(answer([]))
    result = await run(GithubListRepositories(api_base=GITHUB), api)
    assert dict(api.only.url.params) == {"sort": "updated", "per_page": "10"}
    assert result == {"repositories": []}


@pytest.mark.anyio
async def test_github_create_issue() -> None:
    api = Api(answer(GITHUB_ISSUE, 201))
    tool = GithubCreateIssue(api_base=GITHUB)
    arguments = {
        "repository": "octocat/Hello-World",
        "title": "Found a bug",
        "body": "I'm having a problem with this.",
    }
    result = await run(tool, api, arguments)
    request = api.only
    assert request.method == "POST"
    assert str(request.url) == f"{GITHUB}/repos/octocat/Hello-World/issues"
    assert_github_headers(request)
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "title": "Found a bug",
        "body": "I'm having a problem with this.",
    }
    assert result == {
        "number": 1347,
        "html_url": "https://github.com/octocat/Hello-World/issues/1347",
        "title": "Found a bug",
    }
    assert tool.spec.changes_data is True
    assert tool.spec.scopes == ("repo",)
    assert tool.describe(arguments) == 'create issue "Found a bug" in octocat/Hello-World'


@pytest.mark.anyio
async def test_github_create_issue_without_body() -> None:
    api = Api(answer(GITHUB_ISSUE, 201))
    await run(GithubCreateIssue(api_base=GITHUB), api, {"repository": "o/r", "title": "T"})
    assert json.loads(api.only.content) == {"title": "T", "body": ""}


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ({"title": "t"}, "repository"),
        ({"repository": "octocat/Hello-World"}, "title"),
        ({"repository": "octocat", "title": "t"}, "repository"),
        ({"repository": "octocat/Hello World", "title": "t"}, "repository"),
        ({"repository": "-octocat/x", "title": "t"}, "repository"),
        ({"repository": "octocat/..", "title": "t"}, "repository"),
        ({"repository": "../x", "title": "t"}, "repository"),
        ({"repository": "octocat/x\n", "title": "t"}, "repository"),
        ({"repository": 7, "title": "t"}, "repository"),
        ({"repository": "o/r", "title": ""}, "title"),
        ({"repository": "o/r", "title": "   "}, "title"),
        ({"repository": "o/r", "title": "x" * 257}, "title"),
        ({"repository": "o/r", "title": "two\nlines"}, "title"),
        ({"repository": "o/r", "title": "t", "body": "b" * 10001}, "body"),
        ({"repository": "o/r", "title": "t", "labels": ["bug"]}, "labels"),
    ],
)
def test_github_create_issue_rejects_bad_arguments(
    arguments: dict[str, Any], argument: str
) -> None:
    tool = GithubCreateIssue(api_base=GITHUB)
    with pytest.raises(ToolError) as caught:
        tool.validate(arguments)
    assert caught.value.kind == "invalid_arguments"
    assert f'"{argument}"' in caught.value.message


def test_github_create_issue_accepts_limits() -> None:
    tool = GithubCreateIssue()
    args = tool.validate({"repository": "a/b.c_d-e", "title": "x" * 256, "body": "y" * 10000})
    assert args["title"] == "x" * 256
    assert tool.validate({"repository": "o/r", "title": "t", "body": None})["body"] == ""


@pytest.mark.anyio
async def test_invalid_arguments_make_no_request() -> None:
    api = Api(answer(GITHUB_ISSUE, 201))
    error = await fail(GithubCreateIssue(api_base=GITHUB), api, {"repository": "nope"})
    assert error.kind == "invalid_arguments"
    assert api.requests == []


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"limit": 0}, '"limit" must be at least 1 and at most 50'),
        ({"limit": 51}, '"limit" must be at least 1 and at most 50'),
        ({"limit": "10"}, '"limit" must be an integer'),
        ({"limit": True}, '"limit" must be an integer'),
        ({"limit": 2.5}, '"limit" must be an integer'),
        ({"visibility": "internal"}, '"visibility" must be one of "all", "public", "private"'),
        ({"sort": "created"}, 'unknown argument "sort"'),
    ],
)
def test_list_repositories_rejects_bad_arguments(arguments: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ToolError) as caught:
        GithubListRepositories().validate(arguments)
    assert caught.value.kind == "invalid_arguments"
    assert fragment in caught.value.message


def test_validation_normalises() -> None:
    tool = GithubListRepositories()
    assert tool.validate({}) == {"limit": 10}
    assert tool.validate({"limit": 50.0}) == {"limit": 50}
    assert tool.validate({"limit": None, "visibility": "all"}) == {"limit": 10, "visibility": "all"}
    with pytest.raises(ToolError, match="JSON object"):
        validate_arguments(tool.spec.input_schema, ["limit", 3])


@pytest.mark.anyio
@pytest.mark.parametrize(
    "arguments",
    [
        {"repository": "octo/repo", "title": "bug \ud800"},
        {"repository": "octo/repo", "title": "bug", "body": "\udfff text"},
    ],
    ids=["title", "body"],
)
async def test_lone_surrogate_arguments_are_invalid_and_nothing_is_sent(
    arguments: dict[str, Any],
) -> None:
    """A model or a client-held marker can produce such a string; UTF-8 cannot encode it, so
    the request body could not be built (UnicodeEncodeError, a 500)."""
    api = Api(answer(GITHUB_ISSUE, 201))
    error = await fail(GithubCreateIssue(api_base=GITHUB), api, arguments)
    assert error.kind == "invalid_arguments"
    assert "valid Unicode" in error.message
    assert api.requests == []


@pytest.mark.anyio
async def test_provider_text_with_lone_surrogates_becomes_replacement_characters() -> None:
    raw = b'{"login": "octo\\ud800cat", "name": "\\udc00", "html_url": "https://x.test"}'
    api = Api(lambda request: httpx2.Response(200, content=raw))
    result = await run(GithubWhoami(api_base=GITHUB), api)
    assert result["login"] == "octo\ufffdcat"
    assert result["name"] == "\ufffd"
    json.dumps(result, ensure_ascii=False).encode("utf-8")  # strict: the reply can carry it
