"""The agent's tools against mocked provider APIs serving the documented response shapes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest

from agent.tooling import Tool, ToolError, ToolSpec
from agent.tools import (
    MAX_RESPONSE_BYTES,
    GithubCreateIssue,
    GithubListRepositories,
    GithubWhoami,
    GoogleCalendarUpcoming,
    MicrosoftMailSubjects,
    MicrosoftMe,
    NotesCreate,
    NotesList,
    OidcWhoami,
    ToolRegistry,
    check_input_schema,
    default_tools,
    validate_arguments,
)

TOKEN = "gho_s3cretAccessTokenValue0123456789"
GITHUB = "https://github.api.test"
GOOGLE = "https://google.api.test"
GRAPH = "https://graph.api.test"
NOTES = "http://127.0.0.1:9911"
USERINFO = "https://sso.example.test/oauth2/userinfo"
NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)

Handler = Callable[[httpx2.Request], httpx2.Response]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Api:
    """A MockTransport that records every request and answers with the handler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx2.Request] = []

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.handler(request)

    def client(self, **kwargs: Any) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self._handle), timeout=5, **kwargs)

    @property
    def only(self) -> httpx2.Request:
        assert len(self.requests) == 1
        return self.requests[0]


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx2.Response(status, json=body, headers=headers)


async def run(tool: Tool, api: Api, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    async with api.client() as http:
        return await tool.run(arguments or {}, token=TOKEN, http=http)


async def fail(tool: Tool, api: Api, arguments: dict[str, Any] | None = None) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await run(tool, api, arguments)
    error = caught.value
    assert TOKEN not in error.message
    assert TOKEN not in str(error)
    return error


def assert_bearer(request: httpx2.Request) -> None:
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def assert_github_headers(request: httpx2.Request) -> None:
    assert_bearer(request)
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert request.headers["user-agent"]
    assert not request.headers["user-agent"].startswith("python-httpx")


# --------------------------------------------------------------- documented response bodies

GITHUB_OWNER = {
    "login": "octocat",
    "id": 1,
    "node_id": "MDQ6VXNlcjE=",
    "avatar_url": "https://github.com/images/error/octocat_happy.gif",
    "url": "https://api.github.com/users/octocat",
    "html_url": "https://github.com/octocat",
    "type": "User",
    "site_admin": False,
}

GITHUB_USER = {
    **GITHUB_OWNER,
    "gravatar_id": "",
    "followers_url": "https://api.github.com/users/octocat/followers",
    "repos_url": "https://api.github.com/users/octocat/repos",
    "name": "monalisa octocat",
    "company": "GitHub",
    "blog": "https://github.com/blog",
    "location": "San Francisco",
    "email": "octocat@github.com",
    "hireable": False,
    "bio": "There once was...",
    "twitter_username": "monatheoctocat",
    "public_repos": 2,
    "public_gists": 1,
    "followers": 20,
    "following": 0,
    "created_at": "2008-01-14T04:33:35Z",
    "updated_at": "2008-01-14T04:33:35Z",
    "private_gists": 81,
    "total_private_repos": 100,
    "owned_private_repos": 100,
    "disk_usage": 10000,
    "collaborators": 8,
    "two_factor_authentication": True,
    "plan": {"name": "Medium", "space": 400, "private_repos": 20, "collaborators": 0},
}


def github_repo(
    name: str, *, private: bool = False, description: str | None = None
) -> dict[str, Any]:
    return {
        "id": 1296269,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": name,
        "full_name": f"octocat/{name}",
        "owner": GITHUB_OWNER,
        "private": private,
        "html_url": f"https://github.com/octocat/{name}",
        "description": description,
        "fork": False,
        "url": f"https://api.github.com/repos/octocat/{name}",
        "default_branch": "main",
        "visibility": "private" if private else "public",
        "forks_count": 9,
        "stargazers_count": 80,
        "watchers_count": 80,
        "open_issues_count": 0,
        "topics": ["octocat", "atom", "electron", "api"],
        "pushed_at": "2011-01-26T19:06:43Z",
        "created_at": "2011-01-26T19:01:12Z",
        "updated_at": "2011-01-26T19:14:43Z",
        "permissions": {"admin": False, "push": False, "pull": True},
    }


GITHUB_ISSUE = {
    "id": 1,
    "node_id": "MDU6SXNzdWUx",
    "url": "https://api.github.com/repos/octocat/Hello-World/issues/1347",
    "repository_url": "https://api.github.com/repos/octocat/Hello-World",
    "html_url": "https://github.com/octocat/Hello-World/issues/1347",
    "number": 1347,
    "state": "open",
    "title": "Found a bug",
    "body": "I'm having a problem with this.",
    "user": GITHUB_OWNER,
    "labels": [],
    "assignees": [],
    "locked": False,
    "comments": 0,
    "created_at": "2011-04-22T13:33:48Z",
    "updated_at": "2011-04-22T13:33:48Z",
    "author_association": "COLLABORATOR",
}

GOOGLE_EVENTS = {
    "kind": "calendar#events",
    "etag": '"p32ofplf5q6gf20g"',
    "summary": "alice@example.com",
    "description": "",
    "updated": "2025-03-14T08:00:00.000Z",
    "timeZone": "Europe/Berlin",
    "accessRole": "owner",
    "defaultReminders": [{"method": "popup", "minutes": 10}],
    "nextPageToken": "CigKGjR2aDRvcjBhcmQ",
    "items": [
        {
            "kind": "calendar#event",
            "etag": '"3181161784712000"',
            "id": "4eahs9ghkhrvkld72hogu9ph3e_20250314T100000Z",
            "status": "confirmed",
            "htmlLink": "https://www.google.com/calendar/event?eid=NGVhaHM5Z2hraHJ2",
            "created": "2025-01-02T10:00:00.000Z",
            "updated": "2025-01-02T10:00:00.000Z",
            "summary": "Team stand-up",
            "creator": {"email": "alice@example.com", "self": True},
            "organizer": {"email": "alice@example.com", "self": True},
            "start": {"dateTime": "2025-03-14T11:00:00+01:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2025-03-14T11:15:00+01:00", "timeZone": "Europe/Berlin"},
            "recurringEventId": "4eahs9ghkhrvkld72hogu9ph3e",
            "originalStartTime": {"dateTime": "2025-03-14T11:00:00+01:00"},
            "iCalUID": "4eahs9ghkhrvkld72hogu9ph3e@google.com",
            "sequence": 0,
            "reminders": {"useDefault": True},
            "eventType": "default",
        },
        {
            "kind": "calendar#event",
            "etag": '"3181161784712001"',
            "id": "7cbh8rpc10lrc0ckih9tafss99",
            "status": "confirmed",
            "htmlLink": "https://www.google.com/calendar/event?eid=N2NiaDhycGMxMGxy",
            "summary": "Company holiday",
            "start": {"date": "2025-03-17"},
            "end": {"date": "2025-03-18"},
            "transparency": "transparent",
            "eventType": "default",
        },
    ],
}

GRAPH_ME = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
    "businessPhones": ["+1 412 555 0109"],
    "displayName": "Megan Bowen",
    "givenName": "Megan",
    "jobTitle": "Auditor",
    "mail": "MeganB@M365x214355.onmicrosoft.com",
    "mobilePhone": None,
    "officeLocation": "12/1110",
    "preferredLanguage": "en-US",
    "surname": "Bowen",
    "userPrincipalName": "MeganB@M365x214355.onmicrosoft.com",
    "id": "48d31887-5fad-4d73-a9f5-3c356e68a038",
}

GRAPH_MESSAGES = {
    "@odata.context": (
        "https://graph.microsoft.com/v1.0/$metadata#users('48d3')/messages"
        "(subject,from,receivedDateTime)"
    ),
    "@odata.nextLink": "https://graph.microsoft.com/v1.0/me/messages?%24top=2&%24skip=2",
    "value": [
        {
            "@odata.etag": 'W/"CQAAABYAAAAiIsqMbYjsT5e/T7KzowPTAAAYc2n+"',
            "id": "AAMkAGUAAAwTW09AAA=",
            "receivedDateTime": "2025-03-14T07:53:55Z",
            "subject": "MyAnalytics | Your past week",
            "from": {
                "emailAddress": {
                    "name": "MyAnalytics",
                    "address": "MyAnalytics@service.microsoft.com",
                }
            },
        },
        {
            "@odata.etag": 'W/"CQAAABYAAAAiIsqMbYjsT5e/T7KzowPTAAAYc2n/"',
            "id": "AAMkAGUAAAwTW08AAA=",
            "receivedDateTime": "2025-03-13T17:01:12Z",
            "subject": "Quarterly review",
            "from": {"emailAddress": {"address": "adelev@contoso.com"}},
        },
    ],
}

USERINFO_BODY = {
    "sub": "248289761001",
    "name": "Jane Doe",
    "given_name": "Jane",
    "family_name": "Doe",
    "preferred_username": "j.doe",
    "email": "janedoe@example.com",
    "email_verified": True,
    "picture": "https://example.com/janedoe/me.jpg",
}


# ---------------------------------------------------------------------------------- GitHub


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


# ------------------------------------------------------------------------------------ OIDC


@pytest.mark.anyio
async def test_oidc_whoami_hyphenated_provider() -> None:
    api = Api(answer(USERINFO_BODY))
    tool = OidcWhoami("corp-sso", USERINFO)
    assert tool.spec.name == "corp_sso_whoami"
    assert tool.spec.provider == "corp-sso"
    assert tool.spec.scopes == ("openid", "profile")
    result = await run(tool, api)
    request = api.only
    assert request.method == "GET"
    assert str(request.url) == USERINFO
    assert_bearer(request)
    assert request.headers["accept"] == "application/json"
    assert result == {
        "sub": "248289761001",
        "name": "Jane Doe",
        "email": "janedoe@example.com",
        "preferred_username": "j.doe",
    }


@pytest.mark.anyio
async def test_oidc_whoami_returns_only_present_claims() -> None:
    api = Api(answer({"sub": "u-1", "email_verified": False}))
    assert await run(OidcWhoami("okta", USERINFO), api) == {"sub": "u-1"}


@pytest.mark.parametrize(
    ("provider", "endpoint"),
    [
        ("Corp", USERINFO),
        ("corp_sso", USERINFO),
        ("-corp", USERINFO),
        ("corp", "http://sso.example.test/userinfo"),
        ("corp", "https://user:pw@sso.example.test/userinfo"),
        ("corp", "/userinfo"),
    ],
)
def test_oidc_whoami_rejects_bad_configuration(provider: str, endpoint: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        OidcWhoami(provider, endpoint)


def test_http_only_on_loopback() -> None:
    OidcWhoami("local", "http://127.0.0.1:9400/userinfo")
    GithubWhoami(api_base="http://localhost:8000")
    with pytest.raises(ValueError, match="https"):
        GithubWhoami(api_base="http://github.api.test")


# ---------------------------------------------------------------------------------- Google


@pytest.mark.anyio
async def test_google_calendar_upcoming() -> None:
    api = Api(answer(GOOGLE_EVENTS))
    tool = GoogleCalendarUpcoming(api_base=GOOGLE, clock=lambda: NOW)
    result = await run(tool, api, {"limit": 5})
    request = api.only
    assert request.method == "GET"
    assert request.url.path == "/calendar/v3/calendars/primary/events"
    assert dict(request.url.params) == {
        "timeMin": "2025-03-14T09:26:53Z",
        "singleEvents": "true",
        "orderBy": "startTime",
        "maxResults": "5",
    }
    assert_bearer(request)
    assert result == {
        "events": [
            {
                "summary": "Team stand-up",
                "start": "2025-03-14T11:00:00+01:00",
                "end": "2025-03-14T11:15:00+01:00",
                "html_link": "https://www.google.com/calendar/event?eid=NGVhaHM5Z2hraHJ2",
            },
            {
                "summary": "Company holiday",
                "start": "2025-03-17",
                "end": "2025-03-18",
                "html_link": "https://www.google.com/calendar/event?eid=N2NiaDhycGMxMGxy",
            },
        ]
    }
    assert tool.spec.provider == "google"
    assert tool.spec.scopes == ("https://www.googleapis.com/auth/calendar.readonly",)


@pytest.mark.anyio
async def test_google_calendar_defaults_and_real_clock() -> None:
    api = Api(answer({"kind": "calendar#events", "items": []}))
    before = datetime.now(UTC).replace(microsecond=0)
    assert await run(GoogleCalendarUpcoming(api_base=GOOGLE), api) == {"events": []}
    params = api.only.url.params
    assert params["maxResults"] == "10"
    sent = datetime.strptime(params["timeMin"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= sent <= datetime.now(UTC)


@pytest.mark.parametrize("limit", [0, 26])
def test_google_calendar_limit_bounds(limit: int) -> None:
    with pytest.raises(ToolError, match='"limit"'):
        GoogleCalendarUpcoming().validate({"limit": limit})


@pytest.mark.anyio
async def test_google_rate_limit_reason_in_403() -> None:
    body = {
        "error": {
            "errors": [
                {
                    "domain": "usageLimits",
                    "reason": "userRateLimitExceeded",
                    "message": "User Rate Limit Exceeded",
                }
            ],
            "code": 403,
            "message": "User Rate Limit Exceeded",
        }
    }
    error = await fail(GoogleCalendarUpcoming(api_base=GOOGLE), Api(answer(body, 403)))
    assert error.kind == "rate_limited"
    assert error.retry_at is None


# ------------------------------------------------------------------------------- Microsoft


@pytest.mark.anyio
async def test_microsoft_me() -> None:
    api = Api(answer(GRAPH_ME))
    tool = MicrosoftMe(api_base=GRAPH)
    result = await run(tool, api)
    request = api.only
    assert request.method == "GET"
    assert str(request.url) == f"{GRAPH}/v1.0/me"
    assert_bearer(request)
    assert result == {
        "display_name": "Megan Bowen",
        "user_principal_name": "MeganB@M365x214355.onmicrosoft.com",
        "mail": "MeganB@M365x214355.onmicrosoft.com",
        "id": "48d31887-5fad-4d73-a9f5-3c356e68a038",
    }
    assert (tool.spec.provider, tool.spec.scopes) == ("microsoft", ("User.Read",))


@pytest.mark.anyio
async def test_microsoft_mail_subjects() -> None:
    api = Api(answer(GRAPH_MESSAGES))
    tool = MicrosoftMailSubjects(api_base=GRAPH)
    result = await run(tool, api, {"limit": 3})
    request = api.only
    assert request.method == "GET"
    assert request.url.path == "/v1.0/me/messages"
    assert dict(request.url.params) == {
        "$select": "subject,from,receivedDateTime",
        "$top": "3",
        "$orderby": "receivedDateTime desc",
    }
    assert_bearer(request)
    assert result == {
        "messages": [
            {
                "subject": "MyAnalytics | Your past week",
                "from": "MyAnalytics <MyAnalytics@service.microsoft.com>",
                "received": "2025-03-14T07:53:55Z",
            },
            {
                "subject": "Quarterly review",
                "from": "adelev@contoso.com",
                "received": "2025-03-13T17:01:12Z",
            },
        ]
    }
    assert (tool.spec.provider, tool.spec.scopes) == ("microsoft", ("Mail.Read",))


@pytest.mark.anyio
async def test_microsoft_throttling_retry_after() -> None:
    body = {"error": {"code": "TooManyRequests", "message": "Please try again later."}}
    api = Api(answer(body, 429, {"Retry-After": "5"}))
    before = int(time.time())
    error = await fail(MicrosoftMailSubjects(api_base=GRAPH), api)
    assert error.kind == "rate_limited"
    assert error.retry_at is not None
    assert before + 5 <= error.retry_at <= int(time.time()) + 5


# --------------------------------------------------------------------------- error mapping


@pytest.mark.anyio
async def test_401_means_reconnect() -> None:
    body = {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
    error = await fail(GithubWhoami(api_base=GITHUB), Api(answer(body, 401)))
    assert error.kind == "unauthorized"
    assert "GitHub refused the access" in error.message
    assert "reconnect" in error.message


@pytest.mark.anyio
async def test_github_primary_rate_limit() -> None:
    reset = int(time.time()) + 1800
    headers = {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-used": "5000",
        "x-ratelimit-reset": str(reset),
        "x-ratelimit-resource": "core",
    }
    body = {
        "message": "API rate limit exceeded for user ID 1.",
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
    }
    error = await fail(GithubWhoami(api_base=GITHUB), Api(answer(body, 403, headers)))
    assert error.kind == "rate_limited"
    assert error.retry_at == reset


@pytest.mark.anyio
async def test_github_secondary_rate_limit_with_retry_after() -> None:
    body = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}
    headers = {"retry-after": "60", "x-ratelimit-remaining": "4990"}
    before = int(time.time())
    api = Api(answer(body, 403, headers))
    error = await fail(GithubCreateIssue(api_base=GITHUB), api, {"repository": "o/r", "title": "t"})
    assert error.kind == "rate_limited"
    assert error.retry_at is not None
    assert before + 60 <= error.retry_at <= int(time.time()) + 60


@pytest.mark.anyio
async def test_429_retry_after_seconds() -> None:
    before = int(time.time())
    error = await fail(GithubWhoami(api_base=GITHUB), Api(answer({}, 429, {"Retry-After": "120"})))
    assert error.kind == "rate_limited"
    assert error.retry_at is not None
    assert before + 120 <= error.retry_at <= int(time.time()) + 120


@pytest.mark.anyio
async def test_429_retry_after_http_date() -> None:
    headers = {"Retry-After": "Wed, 21 Oct 2037 07:28:00 GMT"}
    error = await fail(MicrosoftMe(api_base=GRAPH), Api(answer({}, 429, headers)))
    assert error.kind == "rate_limited"
    assert error.retry_at == int(datetime(2037, 10, 21, 7, 28, tzinfo=UTC).timestamp())
    assert "2037-10-21T07:28:00Z" in error.message


@pytest.mark.anyio
async def test_429_without_hint() -> None:
    error = await fail(MicrosoftMe(api_base=GRAPH), Api(answer({}, 429)))
    assert (error.kind, error.retry_at) == ("rate_limited", None)


@pytest.mark.anyio
async def test_403_forbidden() -> None:
    body = {"message": "Resource not accessible by integration"}
    headers = {"x-ratelimit-remaining": "4999", "x-ratelimit-reset": "1700000000"}
    api = Api(answer(body, 403, headers))
    error = await fail(GithubCreateIssue(api_base=GITHUB), api, {"repository": "o/r", "title": "t"})
    assert error.kind == "forbidden"
    assert error.retry_at is None
    assert "Resource not accessible by integration" in error.message


@pytest.mark.anyio
async def test_404_not_found() -> None:
    body = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
    api = Api(answer(body, 404))
    error = await fail(GithubCreateIssue(api_base=GITHUB), api, {"repository": "o/r", "title": "t"})
    assert error.kind == "not_found"


@pytest.mark.anyio
@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_unavailable(status: int) -> None:
    error = await fail(MicrosoftMe(api_base=GRAPH), Api(answer({"error": {}}, status)))
    assert error.kind == "unavailable"


@pytest.mark.anyio
async def test_422_is_a_provider_error_with_the_providers_reason() -> None:
    body = {"message": "Validation Failed", "errors": [{"resource": "Issue", "code": "invalid"}]}
    api = Api(answer(body, 422))
    error = await fail(GithubCreateIssue(api_base=GITHUB), api, {"repository": "o/r", "title": "t"})
    assert error.kind == "provider_error"
    assert "Validation Failed" in error.message


def raising(exc: Exception) -> Handler:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise exc

    return handler


@pytest.mark.anyio
async def test_timeout_is_unavailable() -> None:
    api = Api(raising(httpx2.ReadTimeout(f"timed out (Bearer {TOKEN})")))
    error = await fail(GithubWhoami(api_base=GITHUB), api)
    assert error.kind == "unavailable"
    assert "in time" in error.message


@pytest.mark.anyio
async def test_network_error_is_unavailable() -> None:
    api = Api(raising(httpx2.ConnectError(f"connection refused {TOKEN}")))
    error = await fail(MicrosoftMe(api_base=GRAPH), api)
    assert error.kind == "unavailable"


@pytest.mark.anyio
async def test_non_json_body_is_a_provider_error() -> None:
    html = "<html><body><h1>Unicorn!</h1></body></html>"
    api = Api(lambda request: httpx2.Response(200, text=html))
    error = await fail(GithubWhoami(api_base=GITHUB), api)
    assert error.kind == "provider_error"


@pytest.mark.anyio
async def test_unexpected_shape_is_a_provider_error() -> None:
    error = await fail(GithubListRepositories(api_base=GITHUB), Api(answer({"items": []})))
    assert error.kind == "provider_error"


@pytest.mark.anyio
async def test_oversized_body_is_refused() -> None:
    big = b'{"login": "' + b"a" * MAX_RESPONSE_BYTES + b'"}'
    api = Api(lambda request: httpx2.Response(200, content=big))
    error = await fail(GithubWhoami(api_base=GITHUB), api)
    assert error.kind == "provider_error"


def every_tool() -> list[tuple[Tool, dict[str, Any]]]:
    return [
        (GithubWhoami(api_base=GITHUB), {}),
        (GithubListRepositories(api_base=GITHUB), {}),
        (GithubCreateIssue(api_base=GITHUB), {"repository": "o/r", "title": "t"}),
        (OidcWhoami("corp-sso", USERINFO), {}),
        (GoogleCalendarUpcoming(api_base=GOOGLE), {}),
        (MicrosoftMe(api_base=GRAPH), {}),
        (MicrosoftMailSubjects(api_base=GRAPH), {}),
    ]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, "unauthorized"), (403, "forbidden"), (404, "not_found"), (500, "unavailable")],
)
async def test_every_tool_maps_errors_without_the_token(status: int, kind: str) -> None:
    # The provider echoes the token in its error text: it must not come back out.
    body = {"message": f"token {TOKEN} rejected", "error": {"message": f"bad {TOKEN}"}}
    for tool, arguments in every_tool():
        error = await fail(tool, Api(answer(body, status)), arguments)
        assert error.kind == kind, tool.spec.name


@pytest.mark.anyio
async def test_echoed_token_is_scrubbed_from_results_and_errors() -> None:
    user = {**GITHUB_USER, "name": f"leaked {TOKEN}"}
    result = await run(GithubWhoami(api_base=GITHUB), Api(answer(user)))
    assert TOKEN not in json.dumps(result)
    assert result["name"] == "leaked [redacted]"
    api = Api(answer({"message": f"bad title for {TOKEN}"}, 422))
    error = await fail(GithubCreateIssue(api_base=GITHUB), api, {"repository": "o/r", "title": "t"})
    assert "[redacted]" in error.message


@pytest.mark.anyio
async def test_no_token_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await run(GithubWhoami(api_base=GITHUB), Api(answer(GITHUB_USER)))
    await fail(GithubWhoami(api_base=GITHUB), Api(answer({"message": TOKEN}, 401)))
    await fail(GithubWhoami(api_base=GITHUB), Api(raising(httpx2.ReadTimeout(TOKEN))))
    assert caplog.records
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in repr(record.__dict__)


# -------------------------------------------------------------------- redirects and cookies


@pytest.mark.anyio
async def test_redirect_to_another_host_is_not_followed() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(302, headers={"location": "https://evil.example/collect"})

    api = Api(handler)
    error = await fail(GithubWhoami(api_base=GITHUB), api)
    assert error.kind == "provider_error"
    assert [r.url.host for r in api.requests] == ["github.api.test"]


@pytest.mark.anyio
async def test_same_host_redirect_keeps_method_and_token() -> None:
    # GitHub answers 307 for a POST to a renamed repository.
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/repos/octocat/old-name/issues":
            location = f"{GITHUB}/repositories/1296269/issues"
            return httpx2.Response(307, headers={"location": location})
        return httpx2.Response(201, json=GITHUB_ISSUE)

    api = Api(handler)
    tool = GithubCreateIssue(api_base=GITHUB)
    result = await run(tool, api, {"repository": "octocat/old-name", "title": "Found a bug"})
    assert result["number"] == 1347
    first, second = api.requests
    assert (second.method, second.url.path) == ("POST", "/repositories/1296269/issues")
    assert_github_headers(second)
    assert json.loads(second.content) == json.loads(first.content)


@pytest.mark.anyio
async def test_shared_client_cookies_are_not_sent() -> None:
    api = Api(answer(GITHUB_USER))
    async with api.client(cookies={"session": "another-users-cookie"}) as http:
        await GithubWhoami(api_base=GITHUB).run({}, token=TOKEN, http=http)
    assert "cookie" not in api.only.headers


# -------------------------------------------------------------------------------- registry


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


class SchemaTool:
    """A tool that is only a schema: what registration checks."""

    def __init__(self, schema: Mapping[str, Any], name: str = "probe_tool") -> None:
        self.spec = ToolSpec(
            name=name,
            description="A probe.",
            input_schema=schema,
            provider="github",
            scopes=("repo",),
        )

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return validate_arguments(self.spec.input_schema, arguments)

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        return {}

    def describe(self, arguments: Mapping[str, Any]) -> str:
        return "probe"


def closed(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False}


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        # keywords the validator does not enforce, on a property
        (closed(q={"type": "string", "format": "uri"}), "'format'"),
        (closed(q={"anyOf": [{"type": "string"}, {"type": "integer"}]}), "'anyOf'"),
        (closed(q={"type": "string", "oneOf": [{"maxLength": 3}]}), "'oneOf'"),
        (closed(q={"type": "string", "allOf": [{"maxLength": 3}]}), "'allOf'"),
        (closed(q={"type": "string", "not": {"enum": ["root"]}}), "'not'"),
        (closed(q={"$ref": "#/$defs/q"}), "'$ref'"),
        (closed(q={"type": "string", "const": "x"}), "'const'"),
        (closed(q={"type": "integer", "multipleOf": 2}), "'multipleOf'"),
        (closed(q={"type": "integer", "exclusiveMinimum": 0}), "'exclusiveMinimum'"),
        (closed(q={"type": "string", "$comment": "x"}), "'$comment'"),
        (closed(q={"type": "string", "x-vendor": 1}), "'x-vendor'"),
        # a keyword of another type: the validator only applies a type's own
        (closed(q={"type": "integer", "maxLength": 3}), "'maxLength'"),
        (closed(q={"type": "boolean", "pattern": "^t"}), "'pattern'"),
        # types the validator does not check, or no type at all
        (closed(q={"description": "anything"}), "'type'"),
        (closed(q={"type": "array", "items": {"type": "string"}}), "'items'"),
        (closed(q={"type": "array"}), "'type'"),
        (closed(q={"type": "object", "properties": {"a": {"type": "string"}}}), "'properties'"),
        (closed(q={"type": "object"}), "'type'"),
        (closed(q={"type": "number"}), "'type'"),
        (closed(q={"type": "null"}), "'type'"),
        (closed(q={"type": ["string", "null"]}), "'type'"),
        (closed(q="string"), "schema object"),
        # the object itself
        ({**closed(), "patternProperties": {"^x": {"type": "string"}}}, "'patternProperties'"),
        ({**closed(), "anyOf": [{"required": ["a"]}]}, "'anyOf'"),
        ({**closed(), "$defs": {}}, "'$defs'"),
        ({**closed(), "minProperties": 1}, "'minProperties'"),
        ({**closed(), "propertyNames": {"maxLength": 3}}, "'propertyNames'"),
        ({**closed(), "dependentRequired": {}}, "'dependentRequired'"),
        ({**closed(), "$schema": "https://json-schema.org/draft/2020-12/schema"}, "'$schema'"),
        ({"type": "object", "properties": {}}, "'additionalProperties'"),
        ({**closed(), "additionalProperties": True}, "'additionalProperties'"),
        ({**closed(), "additionalProperties": {"type": "string"}}, "'additionalProperties'"),
        ({**closed(), "type": "array"}, "'type'"),
        ({**closed(), "properties": [{"q": {"type": "string"}}]}, "'properties'"),
        ({**closed(q={"type": "string"}), "required": ["q", "r"]}, "'required'"),
        ({**closed(q={"type": "string"}), "required": "q"}, "'required'"),
        ({**closed(q={"type": "string"}), "required": ["q", "q"]}, "'required'"),
        # defaults, enums, examples and bounds that cannot hold
        (closed(q={"type": "integer", "minimum": 1, "default": 0}), "'default'"),
        (closed(q={"type": "integer", "default": 10.0}), "'default'"),
        (closed(q={"type": "integer", "default": True}), "'default'"),
        (closed(q={"type": "string", "pattern": "^a$", "default": "b"}), "'default'"),
        (closed(q={"type": "string", "enum": ["a"], "default": "b"}), "'default'"),
        (closed(q={"type": "string", "default": "\ud800"}), "'default'"),
        (closed(q={"type": "boolean", "default": "true"}), "'default'"),
        (closed(q={"type": "integer", "enum": ["1"]}), "'enum'"),
        (closed(q={"type": "integer", "enum": [True]}), "'enum'"),
        (closed(q={"type": "string", "maxLength": 2, "enum": ["abc"]}), "'enum'"),
        (closed(q={"type": "string", "enum": []}), "'enum'"),
        (closed(q={"type": "integer", "maximum": 5, "examples": [6]}), "'examples'"),
        (closed(q={"type": "string", "examples": "x"}), "'examples'"),
        (closed(q={"type": "string", "minLength": -1}), "'minLength'"),
        (closed(q={"type": "string", "maxLength": True}), "'maxLength'"),
        (closed(q={"type": "string", "minLength": 3, "maxLength": 2}), "'minLength'"),
        (closed(q={"type": "integer", "minimum": float("nan")}), "'minimum'"),
        (closed(q={"type": "integer", "maximum": "10"}), "'maximum'"),
        (closed(q={"type": "string", "pattern": "("}), "'pattern'"),
        (closed(q={"type": "string", "description": 3}), "'description'"),
    ],
)
def test_a_schema_the_validator_does_not_enforce_is_refused_at_registration(
    schema: dict[str, Any], keyword: str
) -> None:
    """Fail closed: before, each of these registered and the unenforced part let any value
    through (or, for an unknown type, raised ValueError at call time: a 500)."""
    with pytest.raises(ValueError, match="probe_tool") as caught:
        ToolRegistry([GithubWhoami(), SchemaTool(schema)])
    assert keyword in str(caught.value)


def test_annotations_and_enforced_keywords_register_and_are_enforced() -> None:
    schema = {
        "type": "object",
        "title": "Search",
        "description": "Search arguments.",
        "properties": {
            "query": {
                "type": "string",
                "title": "Query",
                "description": "What to look for.",
                "minLength": 1,
                "maxLength": 50,
                "pattern": "^[a-z ]+$",
                "examples": ["open bugs"],
            },
            "limit": {"type": "integer", "minimum": 1, "maximum": 5, "default": 3},
            "mine": {"type": "boolean", "default": False},
            "order": {"type": "string", "enum": ["new", "old"], "default": "new"},
        },
        "required": ["query"],
        "additionalProperties": False,
    }
    registry = ToolRegistry([SchemaTool(schema)])
    tool = registry.get("probe_tool")
    assert tool.validate({"query": "open bugs"}) == {
        "query": "open bugs",
        "limit": 3,
        "mine": False,
        "order": "new",
    }
    with pytest.raises(ToolError, match="wrong format"):
        tool.validate({"query": "DROP"})


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


# ---------------------------------------------------------------------------- the notes tools


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


def test_every_built_in_tool_declares_its_effect() -> None:
    tools = default_tools(oidc_userinfo={"okta": USERINFO}, notes_api=NOTES)
    assert all(t.spec.changes_data is not None for t in tools)
    assert sorted(t.spec.name for t in tools if t.spec.needs_approval) == [
        "github_create_issue",
        "notes_create",
    ]


def test_the_invisible_character_rule_spares_typed_emoji_only() -> None:
    from agent.text import format_characters

    assert format_characters("I \u2764\ufe0f it \U0001f44d") == []  # presentation selector
    assert format_characters("x\ufe0f") == ["U+FE0F"]  # after a letter it hides nothing
    assert format_characters("\U0001f600\ufe00\ufe0f") == ["U+FE00", "U+FE0F"]
    assert format_characters("a\nb\tc") == []
    assert format_characters("a\rb") == ["U+000D"]
