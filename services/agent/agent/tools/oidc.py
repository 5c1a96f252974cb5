"""Any OpenID Connect provider: who the user is signed in as (UserInfo), one tool per provider.

Docs: https://openid.net/specs/openid-connect-core-1_0.html#UserInfo (section 5.3: a GET with
the access token as a Bearer token; the answer is a JSON object of claims). The tools are named
``<provider>_whoami`` from ``OIDC_USERINFO`` (provider -> UserInfo URL). The "who am I" phrases
live here and other families' identity tools reuse them (``identity_phrases``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx2

from agent.settings import PROVIDER_NAME_RE
from agent.tools.base import Phrase, Tool, ToolContext, ToolPhrases, ToolSpec
from agent.tools.http import Api, BaseTool, check_base_url, clip, shape_error
from agent.tools.registry import TOOL_NAME_RE, ToolFamily
from agent.tools.replies import identity_reply

# The binder's provider-name rule: lowercase letters, digits and inner hyphens, 1-32 chars.

_WHO: Final = r"\b(?:who\s*am\s*i|whoami)\b"
IDENTITY_GROUP: Final = "identity"
_CHOICE: Final = "who am I on {provider}"


def identity_phrases(tool: str, *, specific: int = 50, bare: bool = True) -> ToolPhrases:
    """ "who am I (on) <provider>" for an identity tool; with ``bare``, "who am I" alone too.

    Priorities (higher first): the tool's own provider named (``specific``); another word
    after "on" (no identity tool for that provider); "who am I" alone, which a single identity
    tool answers and several make the planner ask which.
    """
    phrases = [
        Phrase(
            pattern=_WHO + r"(?:\s+(?:on|at|in)\b)?\s+{provider}(?![a-z0-9_-])", priority=specific
        ),
        Phrase(
            pattern=_WHO + r"\s+(?:on|at|in)\s+[a-z0-9_-]+",
            priority=48,
            hint="I have no identity tool for that provider. Say one of: {choices}.",
        ),
    ]
    if bare:
        phrases.append(Phrase(pattern=_WHO, priority=47))
    else:  # no tool answers "who am I" alone: ask which
        phrases.append(
            Phrase(pattern=_WHO, priority=46, hint="Which provider? Say one of: {choices}.")
        )
    return ToolPhrases(
        tool=tool,
        phrases=tuple(phrases),
        example=f'"{_CHOICE}"',
        group=IDENTITY_GROUP,
        choice=_CHOICE,
        reply=identity_reply,
    )


class OidcWhoami(BaseTool):
    """GET the provider's UserInfo endpoint (any OpenID Connect provider)."""

    CLAIMS: Final = ("sub", "name", "email", "preferred_username")

    def __init__(self, provider: str, userinfo_endpoint: str) -> None:
        if PROVIDER_NAME_RE.fullmatch(provider) is None:
            raise ValueError(f"invalid provider name {provider!r}")
        name = f"{provider.replace('-', '_')}_whoami"
        if TOOL_NAME_RE.fullmatch(name) is None:  # pragma: no cover - implied by PROVIDER_NAME_RE
            raise ValueError(f"invalid tool name {name!r}")
        endpoint = check_base_url(
            userinfo_endpoint, f"the {provider} userinfo endpoint", strip=False
        )
        self._api = Api(label=provider, base_url=endpoint, headers={"Accept": "application/json"})
        self.spec = ToolSpec(
            name=name,
            description=(
                f"Show who the user is signed in as at {provider} (OpenID Connect UserInfo: "
                "subject, name, email, username). Use it when the user asks which "
                f"{provider} account is connected."
            ),
            input_schema={"type": "object", "properties": {}, "additionalProperties": False},
            provider=provider,
            scopes=("openid", "profile"),
            changes_data=False,
        )

    def describe(self, arguments: Mapping[str, Any]) -> str:
        return f"read your {self.spec.provider} profile"

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        self.validate(arguments)
        data = await self._api.call(self.spec, http, "GET", self._api.base_url, token=token)
        if not isinstance(data, Mapping):
            raise shape_error(self._api)
        claims = {claim: clip(data.get(claim)) for claim in self.CLAIMS}
        result = {claim: value for claim, value in claims.items() if value is not None}
        if not result:
            raise shape_error(self._api)
        return self._finish(result, token)


def _build(context: ToolContext) -> list[Tool]:
    return [OidcWhoami(provider, url) for provider, url in context.oidc_userinfo.items()]


FAMILY = ToolFamily(
    name="oidc",
    build=_build,
    # Any tool named *_whoami is an identity tool by convention (github_whoami too).
    phrases=(identity_phrases("*_whoami"),),
)
