"""GitHub: the connected account, its repositories, and creating an issue (which changes data).

REST API: https://docs.github.com/en/rest (headers: Accept, X-GitHub-Api-Version; requests
without a User-Agent are rejected). Errors and rate limits are mapped in http.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import httpx2

from agent.tools.base import Phrase, Tool, ToolContext, ToolPhrases, ToolSpec
from agent.tools.http import (
    Api,
    BaseTool,
    as_bool,
    as_int,
    as_mapping,
    check_base_url,
    clip,
    shape_error,
)
from agent.tools.oidc import identity_phrases
from agent.tools.registry import ToolFamily
from agent.tools.replies import first_str, list_reply
from agent.tools.schema import check_title_and_body, invalid, limit_argument

GITHUB_API: Final = "https://api.github.com"
GITHUB_API_VERSION: Final = "2022-11-28"

# GitHub: owner (user or organisation login, up to 39 characters, letters, digits, hyphens,
# not starting with a hyphen) "/" repository name (letters, digits, ".", "_", "-").
REPOSITORY_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$"


def github_api(base_url: str) -> Api:
    # Headers: https://docs.github.com/en/rest/using-the-rest-api/getting-started-with-the-rest-api
    # (Accept, X-GitHub-Api-Version; requests without a User-Agent are rejected).
    return Api(
        label="GitHub",
        base_url=check_base_url(base_url, "the GitHub API URL"),
        headers={
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": GITHUB_API_VERSION,
        },
    )


class GithubWhoami(BaseTool):
    """GET /user.

    Docs: https://docs.github.com/en/rest/users/users#get-the-authenticated-user
    """

    def __init__(self, *, api_base: str = GITHUB_API) -> None:
        self._api = github_api(api_base)
        self.spec = ToolSpec(
            name="github_whoami",
            description=(
                "Show the GitHub account the user has connected: login, name, profile URL and "
                "number of public repositories. Use it when the user asks who they are on GitHub."
            ),
            input_schema={"type": "object", "properties": {}, "additionalProperties": False},
            provider="github",
            scopes=("read:user",),
            changes_data=False,
        )

    def describe(self, arguments: Mapping[str, Any]) -> str:
        return "read your GitHub profile"

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        self.validate(arguments)
        data = await self._api.call(
            self.spec, http, "GET", f"{self._api.base_url}/user", token=token
        )
        if not isinstance(data, Mapping):
            raise shape_error(self._api)
        return self._finish(
            {
                "login": clip(data.get("login")),
                "name": clip(data.get("name")),
                "html_url": clip(data.get("html_url")),
                "public_repos": as_int(data.get("public_repos")),
            },
            token,
        )


class GithubListRepositories(BaseTool):
    """GET /user/repos?sort=updated&per_page=N[&visibility=...].

    Docs: https://docs.github.com/en/rest/repos/repos#list-repositories-for-the-authenticated-user
    """

    def __init__(self, *, api_base: str = GITHUB_API) -> None:
        self._api = github_api(api_base)
        self.spec = ToolSpec(
            name="github_list_repositories",
            description=(
                "List the GitHub repositories the user can access (owned, collaborator, "
                "organisation member), most recently updated first. Returns full name, "
                "visibility, description, URL and last update time."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "limit": limit_argument("repositories", maximum=50, default=10),
                    "visibility": {
                        "type": "string",
                        "enum": ["all", "public", "private"],
                        "description": "Only repositories with this visibility (default all).",
                    },
                },
                "additionalProperties": False,
            },
            provider="github",
            scopes=("repo",),
            changes_data=False,
        )

    def describe(self, arguments: Mapping[str, Any]) -> str:
        args = self.validate(arguments)
        which = f"{args['visibility']} " if args.get("visibility", "all") != "all" else ""
        return f"list up to {args['limit']} of your {which}GitHub repositories"

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        args = self.validate(arguments)
        limit: int = args["limit"]
        query = f"sort=updated&per_page={limit}"
        if "visibility" in args:
            query += f"&visibility={args['visibility']}"
        data = await self._api.call(
            self.spec, http, "GET", f"{self._api.base_url}/user/repos?{query}", token=token
        )
        if not isinstance(data, list):
            raise shape_error(self._api)
        repositories = [
            {
                "full_name": clip(repo.get("full_name")),
                "private": as_bool(repo.get("private")),
                "description": clip(repo.get("description")),
                "html_url": clip(repo.get("html_url")),
                "updated_at": clip(repo.get("updated_at")),
            }
            for repo in (as_mapping(item) for item in data[:limit])
        ]
        return self._finish({"repositories": repositories}, token)


class GithubCreateIssue(BaseTool):
    """POST /repos/{owner}/{repo}/issues with {"title", "body"}.

    Docs: https://docs.github.com/en/rest/issues/issues#create-an-issue
    """

    def __init__(self, *, api_base: str = GITHUB_API) -> None:
        self._api = github_api(api_base)
        self.spec = ToolSpec(
            name="github_create_issue",
            description=(
                "Create an issue in a GitHub repository the user can access. Changes data: it "
                "runs only after the user approves it in the browser. Returns the issue number, "
                "URL and title."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "repository": {
                        "type": "string",
                        "pattern": REPOSITORY_PATTERN,
                        "maxLength": 140,
                        "description": "The repository as owner/name, e.g. octocat/Hello-World.",
                    },
                    "title": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 256,
                        "description": "The issue title (one line).",
                    },
                    "body": {
                        "type": "string",
                        "minLength": 0,
                        "maxLength": 10000,
                        "default": "",
                        "description": "The issue text in Markdown (optional).",
                    },
                },
                "required": ["repository", "title"],
                "additionalProperties": False,
            },
            provider="github",
            scopes=("repo",),
            changes_data=True,
        )

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        args = super().validate(arguments)
        _owner, _, name = args["repository"].partition("/")
        if name in (".", ".."):
            raise invalid('"repository" has the wrong format')
        check_title_and_body(args)
        return args

    def describe(self, arguments: Mapping[str, Any]) -> str:
        args = self.validate(arguments)
        return f'create issue "{args["title"]}" in {args["repository"]}'

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        args = self.validate(arguments)
        owner, _, name = args["repository"].partition("/")
        url = f"{self._api.base_url}/repos/{quote(owner, safe='')}/{quote(name, safe='')}/issues"
        data = await self._api.call(
            self.spec,
            http,
            "POST",
            url,
            token=token,
            json_body={"title": args["title"], "body": args["body"]},
            expect=(200, 201),
        )
        if not isinstance(data, Mapping):
            raise shape_error(self._api)
        return self._finish(
            {
                "number": as_int(data.get("number")),
                "html_url": clip(data.get("html_url")),
                "title": clip(data.get("title")),
            },
            token,
        )


# ------------------------------------------------------------------------------- the planner

_REPO: Final = r"(?P<repository>[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+)"
# "Title" or 'Title', straight or curly; the other kind of quote may appear inside.
_QUOTED_TITLE: Final = (
    r"(?:[\"\u201c](?P<title>[^\"\u201d]+)[\"\u201d]|['\u2018](?P<title__2>[^'\u2019]+)['\u2019])"
)


def _repo_line(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if not isinstance(item, Mapping):
        return None
    name = first_str(item, "full_name", "name")
    if name is None:
        return None
    return f"{name} (private)" if item.get("private") is True else name


def _repositories_reply(provider: str, content: Mapping[str, Any]) -> str:
    return list_reply(
        content,
        ("repositories", "repos", "items"),
        _repo_line,
        f"Your repositories on {provider}:",
        f"You have no repositories on {provider}.",
    )


def _issue_reply(provider: str, content: Mapping[str, Any]) -> str:
    number = content.get("number")
    title = first_str(content, "title")
    repository = first_str(content, "repository", "full_name")
    url = first_str(content, "html_url", "url")
    text = "Created issue"
    if isinstance(number, int):
        text += f" #{number}"
    if title:
        text += f' "{title}"'
    if repository:
        text += f" in {repository}"
    return f"{text}: {url}" if url else f"{text}."


def _build(context: ToolContext) -> list[Tool]:
    base = context.api_url("github", GITHUB_API) or GITHUB_API
    return [
        GithubWhoami(api_base=base),
        GithubListRepositories(api_base=base),
        GithubCreateIssue(api_base=base),
    ]


FAMILY = ToolFamily(
    name="github",
    build=_build,
    phrases=(
        identity_phrases("github_whoami"),
        ToolPhrases(
            tool="github_list_repositories",
            phrases=(
                Phrase(
                    pattern=r"\b(?:list|show)\b(?:\s+(?:me\s+)?(?:all\s+)?(?:of\s+)?my)?\s+"
                    r"(?:\w+\s+)?repo(?:s|sitories)\b|\bmy\s+repo(?:s|sitories)\b",
                    priority=40,
                ),
            ),
            example='"list my repositories"',
            reply=_repositories_reply,
        ),
        ToolPhrases(
            tool="github_create_issue",
            phrases=(
                Phrase(
                    pattern=rf"\bcreate\s+(?:an?\s+)?issue\s+{_QUOTED_TITLE}\s+(?:in|on|for)\s+{_REPO}",
                    priority=90,
                    unquote=("title",),
                ),
                Phrase(
                    pattern=rf"(?s)\bcreate\s+(?:an?\s+)?issue\s+(?:in|on|for)\s+{_REPO}\s+"
                    r"(?:titled|called|named)\s*:?\s+(?P<title>.+)$",
                    priority=90,
                    unquote=("title",),
                ),
                Phrase(
                    pattern=r"\b(?:create|open|file)\s+(?:an?\s+)?issue\b",
                    priority=89,
                    hint='To create an issue, say: create issue "Title" in owner/repo '
                    "(or: create an issue in owner/repo titled Title).",
                ),
            ),
            example="'create issue \"Title\" in owner/repo'",
            reply=_issue_reply,
        ),
    ),
)
