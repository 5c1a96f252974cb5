"""The shared HTTP layer: error mapping, tokens kept out, redirects and cookies."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest

from agent.tools.base import Tool
from agent.tools.github import GithubCreateIssue, GithubListRepositories, GithubWhoami
from agent.tools.google import GoogleCalendarUpcoming
from agent.tools.http import MAX_RESPONSE_BYTES
from agent.tools.microsoft import MicrosoftMailSubjects, MicrosoftMe
from agent.tools.oidc import OidcWhoami
from tests.agent.tools.helpers import (
    GITHUB,
    GITHUB_ISSUE,
    GITHUB_USER,
    GOOGLE,
    GRAPH,
    TOKEN,
    USERINFO,
    Api,
    Handler,
    answer,
    assert_github_headers,
    fail,
    run,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
