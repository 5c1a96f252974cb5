"""Shared by the tool family tests: a recording mock transport and documented response bodies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest

from agent.tools.base import Tool, ToolError

TOKEN = "gho_s3cretAccessTokenValue0123456789"
GITHUB = "https://github.api.test"
GOOGLE = "https://google.api.test"
GRAPH = "https://graph.api.test"
NOTES = "http://127.0.0.1:9911"
USERINFO = "https://sso.example.test/oauth2/userinfo"
NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)

Handler = Callable[[httpx2.Request], httpx2.Response]


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
