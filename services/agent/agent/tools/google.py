"""Google Workspace: the next events of the user's primary calendar.

Calendar API: https://developers.google.com/workspace/calendar/api/v3/reference (errors and the
403 rateLimitExceeded reasons are mapped in http.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import httpx2

from agent.tools.base import Phrase, Tool, ToolContext, ToolPhrases, ToolSpec
from agent.tools.http import Api, BaseTool, as_mapping, check_base_url, clip, shape_error
from agent.tools.registry import ToolFamily
from agent.tools.replies import first_str, list_reply
from agent.tools.schema import limit_argument

GOOGLE_API: Final = "https://www.googleapis.com"


class GoogleCalendarUpcoming(BaseTool):
    """GET /calendar/v3/calendars/primary/events?timeMin=...&singleEvents=true&orderBy=startTime.

    Docs: https://developers.google.com/workspace/calendar/api/v3/reference/events/list
    (event fields: https://developers.google.com/workspace/calendar/api/v3/reference/events;
    errors: https://developers.google.com/workspace/calendar/api/guides/errors).
    """

    def __init__(
        self,
        *,
        api_base: str = GOOGLE_API,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = Api(
            label="Google",
            base_url=check_base_url(api_base, "the Google API URL"),
            headers={"Accept": "application/json"},
        )
        self._clock = clock
        self.spec = ToolSpec(
            name="google_calendar_upcoming",
            description=(
                "List the next events in the user's primary Google Calendar, soonest first, "
                "with title, start, end and a link. Recurring events appear as single instances."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "limit": limit_argument("events", maximum=25, default=10),
                },
                "additionalProperties": False,
            },
            provider="google",
            scopes=("https://www.googleapis.com/auth/calendar.readonly",),
            changes_data=False,
        )

    def describe(self, arguments: Mapping[str, Any]) -> str:
        return f"list your next {self.validate(arguments)['limit']} Google Calendar events"

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        limit: int = self.validate(arguments)["limit"]
        now = self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # RFC 3339, UTC
        query = (
            f"timeMin={quote(now, safe='')}&singleEvents=true&orderBy=startTime&maxResults={limit}"
        )
        url = f"{self._api.base_url}/calendar/v3/calendars/primary/events?{query}"
        data = await self._api.call(self.spec, http, "GET", url, token=token)
        items = as_mapping(data).get("items", [])
        if not isinstance(data, Mapping) or not isinstance(items, list):
            raise shape_error(self._api)
        events = []
        for event in (as_mapping(item) for item in items[:limit]):
            start, end = as_mapping(event.get("start")), as_mapping(event.get("end"))
            events.append(
                {
                    "summary": clip(event.get("summary")),
                    "start": clip(start.get("dateTime") or start.get("date")),
                    "end": clip(end.get("dateTime") or end.get("date")),
                    "html_link": clip(event.get("htmlLink")),
                }
            )
        return self._finish({"events": events}, token)


# ------------------------------------------------------------------------------- the planner


def _when(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return first_str(value, "dateTime", "date")
    return None


def _event_line(item: Any) -> str | None:
    if not isinstance(item, Mapping):
        return str(item) if isinstance(item, str) else None
    title = first_str(item, "summary", "title", "subject") or "(no title)"
    start = _when(item.get("start"))
    return f"{start}: {title}" if start else title


def _events_reply(provider: str, content: Mapping[str, Any]) -> str:
    return list_reply(
        content,
        ("events", "items"),
        _event_line,
        "Your upcoming events:",
        "You have no upcoming events.",
    )


def _build(context: ToolContext) -> list[Tool]:
    return [GoogleCalendarUpcoming(api_base=context.api_url("google", GOOGLE_API) or GOOGLE_API)]


FAMILY = ToolFamily(
    name="google",
    build=_build,
    phrases=(
        ToolPhrases(
            tool="google_calendar_upcoming",
            phrases=(
                Phrase(
                    pattern=r"\b(?:calendar|upcoming\s+events|meetings?|my\s+events)\b",
                    priority=30,
                ),
            ),
            example='"upcoming events"',
            reply=_events_reply,
        ),
    ),
)
