"""The Google family (Calendar) against documented answers and its rate-limit reasons."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.tools.base import ToolError
from agent.tools.google import GoogleCalendarUpcoming
from tests.agent.tools.helpers import (
    GOOGLE,
    GOOGLE_EVENTS,
    NOW,
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
