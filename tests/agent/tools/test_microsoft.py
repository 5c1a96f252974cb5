"""The Microsoft family (Graph) against documented answers and its throttling."""

from __future__ import annotations

import time

import pytest

from agent.tools.microsoft import MicrosoftMailSubjects, MicrosoftMe
from tests.agent.tools.helpers import (
    GRAPH,
    GRAPH_ME,
    GRAPH_MESSAGES,
    Api,
    answer,
    assert_bearer,
    fail,
    run,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
