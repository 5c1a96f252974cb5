"""Microsoft 365 (Microsoft Graph): the connected account and the newest mail subjects.

Graph: https://learn.microsoft.com/en-us/graph/use-the-api (throttling, 429 with Retry-After,
is mapped in http.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx2

from agent.tools.base import Phrase, Tool, ToolContext, ToolPhrases, ToolSpec
from agent.tools.http import Api, BaseTool, as_mapping, check_base_url, clip, shape_error
from agent.tools.oidc import identity_phrases
from agent.tools.registry import ToolFamily
from agent.tools.replies import first_str, list_reply
from agent.tools.schema import limit_argument

GRAPH_API: Final = "https://graph.microsoft.com"


def _graph_api(base_url: str) -> Api:
    # Calling Microsoft Graph: https://learn.microsoft.com/en-us/graph/call-api
    # Throttling (429 + Retry-After): https://learn.microsoft.com/en-us/graph/throttling
    return Api(
        label="Microsoft",
        base_url=check_base_url(base_url, "the Microsoft Graph URL"),
        headers={"Accept": "application/json"},
    )


class MicrosoftMe(BaseTool):
    """GET /v1.0/me.

    Docs: https://learn.microsoft.com/en-us/graph/api/user-get?view=graph-rest-1.0
    """

    def __init__(self, *, api_base: str = GRAPH_API) -> None:
        self._api = _graph_api(api_base)
        self.spec = ToolSpec(
            name="microsoft_me",
            description=(
                "Show the Microsoft 365 account the user has connected: display name, user "
                "principal name, mail address and id."
            ),
            input_schema={"type": "object", "properties": {}, "additionalProperties": False},
            provider="microsoft",
            scopes=("User.Read",),
            changes_data=False,
        )

    def describe(self, arguments: Mapping[str, Any]) -> str:
        return "read your Microsoft profile"

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        self.validate(arguments)
        data = await self._api.call(
            self.spec, http, "GET", f"{self._api.base_url}/v1.0/me", token=token
        )
        if not isinstance(data, Mapping):
            raise shape_error(self._api)
        return self._finish(
            {
                "display_name": clip(data.get("displayName")),
                "user_principal_name": clip(data.get("userPrincipalName")),
                "mail": clip(data.get("mail")),
                "id": clip(data.get("id")),
            },
            token,
        )


class MicrosoftMailSubjects(BaseTool):
    """GET /v1.0/me/messages?$select=subject,from,receivedDateTime&$top=N&$orderby=... desc.

    Docs: https://learn.microsoft.com/en-us/graph/api/user-list-messages?view=graph-rest-1.0
    """

    def __init__(self, *, api_base: str = GRAPH_API) -> None:
        self._api = _graph_api(api_base)
        self.spec = ToolSpec(
            name="microsoft_mail_subjects",
            description=(
                "List the subjects, senders and arrival times of the newest messages in the "
                "user's Outlook mailbox (no message bodies)."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "limit": limit_argument("messages", maximum=25, default=10),
                },
                "additionalProperties": False,
            },
            provider="microsoft",
            scopes=("Mail.Read",),
            changes_data=False,
        )

    def describe(self, arguments: Mapping[str, Any]) -> str:
        limit = self.validate(arguments)["limit"]
        return f"list the subjects of your {limit} newest Outlook messages"

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        limit: int = self.validate(arguments)["limit"]
        # Written as in Graph's documentation: literal "$" names, %20 for the space.
        query = (
            f"$select=subject,from,receivedDateTime&$top={limit}&$orderby=receivedDateTime%20desc"
        )
        url = f"{self._api.base_url}/v1.0/me/messages?{query}"
        data = await self._api.call(self.spec, http, "GET", url, token=token)
        items = as_mapping(data).get("value", [])
        if not isinstance(data, Mapping) or not isinstance(items, list):
            raise shape_error(self._api)
        messages = []
        for message in (as_mapping(item) for item in items[:limit]):
            address = as_mapping(as_mapping(message.get("from")).get("emailAddress"))
            name, mail = clip(address.get("name"), 200), clip(address.get("address"), 254)
            sender = f"{name} <{mail}>" if name and mail and name != mail else (name or mail)
            messages.append(
                {
                    "subject": clip(message.get("subject")),
                    "from": sender,
                    "received": clip(message.get("receivedDateTime")),
                }
            )
        return self._finish({"messages": messages}, token)


# ------------------------------------------------------------------------------- the planner


def _mail_line(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if not isinstance(item, Mapping):
        return None
    subject = first_str(item, "subject") or "(no subject)"
    sender = item.get("from")
    if isinstance(sender, Mapping):  # Microsoft Graph: {"emailAddress": {"name", "address"}}
        address = sender.get("emailAddress")
        sender = first_str(address, "name", "address") if isinstance(address, Mapping) else None
    return f"{subject} (from {sender})" if isinstance(sender, str) and sender else subject


def _mail_reply(provider: str, content: Mapping[str, Any]) -> str:
    return list_reply(
        content,
        ("messages", "subjects", "mail", "value"),
        _mail_line,
        "Your latest mail:",
        "Your inbox has no messages.",
    )


def _build(context: ToolContext) -> list[Tool]:
    base = context.api_url("microsoft", GRAPH_API) or GRAPH_API
    return [MicrosoftMe(api_base=base), MicrosoftMailSubjects(api_base=base)]


# microsoft_me answers "who am I on microsoft" after any microsoft_whoami tool, and never
# "who am I" alone (that asks which provider).
_IDENTITY = identity_phrases("microsoft_me", specific=49, bare=False)

FAMILY = ToolFamily(
    name="microsoft",
    build=_build,
    phrases=(
        ToolPhrases(
            tool="microsoft_me",
            phrases=(
                Phrase(pattern=r"\b(?:microsoft|outlook|office\s*365)\s+profile\b", priority=60),
                *_IDENTITY.phrases,
            ),
            example='"microsoft profile"',
            group=_IDENTITY.group,
            choice=_IDENTITY.choice,
            reply=_IDENTITY.reply,
        ),
        ToolPhrases(
            tool="microsoft_mail_subjects",
            phrases=(
                Phrase(
                    pattern=r"\b(?:my\s+(?:e-?)?mails?|e-?mail\s+subjects?|mail\s+subjects?|inbox)\b",
                    priority=20,
                ),
            ),
            example='"my mail"',
            reply=_mail_reply,
        ),
    ),
)
