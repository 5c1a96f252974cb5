"""The agent's client for the binder's internal API (Service Connect, never the ALB).

The user's own Cognito access token is forwarded: the binder verifies it again and can only
issue that user's tokens, so the agent holds no credential of its own for the vault.

Tokens: `POST /internal/tokens`. Actions (data-changing tool calls the user approves in the
browser): `POST /internal/actions` registers one, `GET /internal/actions/{id}` reads it back,
`POST /internal/actions/{id}/token` exchanges the approved action and its arguments' hash for
the token (once), `POST /internal/actions/{id}/result` records what happened. Providers:
`GET /internal/providers` lists the binder's providers with their display names (for the chat
page's labels).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import httpx2
import rfc8785

# What an action id may look like before it is put in a URL path (it can come from a client).
ACTION_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
ACTION_REFUSALS: Final = frozenset(
    {"not_approved", "denied", "expired", "already_executed", "arguments_changed"}
)


def arguments_sha256(arguments: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the RFC 8785 canonical JSON of the arguments: what the user approved."""
    return hashlib.sha256(rfc8785.dumps(dict(arguments))).hexdigest()


@dataclass(frozen=True, kw_only=True)
class ProviderToken:
    access_token: str = field(repr=False)
    token_type: str
    expires_at: int | None
    scopes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ConsentNeeded:
    provider: str
    scopes: tuple[str, ...]
    authorization_url: str
    session_id: str
    expires_at: int
    reason: str

    def item(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "scopes": list(self.scopes),
            "authorization_url": self.authorization_url,
            "session_id": self.session_id,
            "expires_at": self.expires_at,
            "reason": self.reason,
        }


@dataclass(frozen=True, kw_only=True)
class ActionProposal:
    action_id: str
    approval_url: str
    arguments_sha256: str
    expires_at: int


@dataclass(frozen=True, kw_only=True)
class Action:
    action_id: str
    status: str  # pending | approved | executing | done | denied | expired
    provider: str
    tool: str
    arguments: dict[str, Any]
    arguments_sha256: str
    turn_id: str
    expires_at: int
    result: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class ActionRefused:
    """409 from the action token exchange: the action may not run (now or ever)."""

    reason: str  # one of ACTION_REFUSALS, or "refused" for a reason this client does not know
    status: str | None = None
    result: dict[str, Any] | None = None


class BinderUnavailable(Exception):
    """The binder could not answer now. `code` says how (binder_502, binder_unreachable, an
    httpx2 error name); `reason` is the binder's own code from its JSON answer when it gave one
    (provider_discovery, refresh_busy, WriteConflict, ...): at most 64 characters of
    [A-Za-z0-9_:.-], or "unrecognized" for a code outside that; None only without one."""

    def __init__(self, code: str, retry_after: int = 5, *, reason: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.retry_after = retry_after
        self.reason = reason


class BinderRefused(Exception):
    """The binder refused the request itself (bad request or the user token was refused)."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code


_REASON = re.compile(r"[A-Za-z0-9_:.\-]{1,64}")


def _reason(response: httpx2.Response) -> str | None:
    """The binder's `code` in an error answer (a load balancer's 502 has none)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or "code" not in body:
        return None
    code = body["code"]
    return code if isinstance(code, str) and _REASON.fullmatch(code) else "unrecognized"


class BinderClient:
    def __init__(self, *, base_url: str, http: httpx2.AsyncClient, timeout: float = 10.0) -> None:
        self._url = f"{base_url.rstrip('/')}/internal/tokens"
        self._actions = f"{base_url.rstrip('/')}/internal/actions"
        self._providers = f"{base_url.rstrip('/')}/internal/providers"
        self._http = http
        self._timeout = timeout

    async def token(
        self,
        user_token: str,
        *,
        provider: str,
        scopes: Sequence[str],
        return_url: str | None = None,
        request_id: str | None = None,
    ) -> ProviderToken | ConsentNeeded:
        body: dict[str, Any] = {"provider": provider, "scopes": list(scopes)}
        if return_url:
            body["return_url"] = return_url
        response = await self._send("POST", self._url, user_token, request_id, body)
        data = self._json(response)
        return self._grant(response.status_code, data, provider=provider, scopes=scopes)

    async def display_names(
        self, user_token: str, *, request_id: str | None = None
    ) -> dict[str, str]:
        """Provider name -> display name, as the binder lists its providers.

        BinderUnavailable for any answer but a well-formed 200 (the caller falls back to the
        names themselves).
        """
        response = await self._send("GET", self._providers, user_token, request_id, None)
        data = self._json(response)
        if response.status_code != 200:
            raise BinderUnavailable(f"binder_{response.status_code}")
        providers = data.get("providers")
        if not isinstance(providers, list):
            raise BinderUnavailable("binder_malformed_response")
        names: dict[str, str] = {}
        for item in providers:
            if not isinstance(item, dict):
                raise BinderUnavailable("binder_malformed_response")
            name, display = item.get("name"), item.get("display_name")
            if not isinstance(name, str) or not isinstance(display, str) or not display.strip():
                raise BinderUnavailable("binder_malformed_response")
            names[name] = display[:64]
        return names

    # ------------------------------------------------------------------------------ actions

    async def propose_action(
        self,
        user_token: str,
        *,
        provider: str,
        tool: str,
        arguments: Mapping[str, Any],
        turn_id: str,
        request_id: str | None = None,
    ) -> ActionProposal:
        body = {
            "provider": provider,
            "tool": tool,
            "arguments": dict(arguments),
            "turn_id": turn_id,
        }
        response = await self._send("POST", self._actions, user_token, request_id, body)
        data = self._json(response)
        if response.status_code != 201:
            raise self._refused(response.status_code, data)
        try:
            return ActionProposal(
                action_id=_action_id(data["action_id"]),
                approval_url=str(data["approval_url"]),
                arguments_sha256=str(data["arguments_sha256"]),
                expires_at=int(data["expires_at"]),
            )
        except (KeyError, TypeError, ValueError):
            raise BinderUnavailable("binder_malformed_response") from None

    async def get_action(
        self, user_token: str, action_id: str, *, request_id: str | None = None
    ) -> Action | None:
        """The action, or None when the binder knows no such action of this user (404)."""
        url = f"{self._actions}/{quote(_action_id(action_id), safe='')}"
        response = await self._send("GET", url, user_token, request_id, None)
        if response.status_code == 404:
            return None
        data = self._json(response)
        if response.status_code != 200:
            raise self._refused(response.status_code, data)
        try:
            arguments = data["arguments"]
            result = data.get("result")
            if not isinstance(arguments, dict) or not (result is None or isinstance(result, dict)):
                raise TypeError("arguments and result are objects")
            return Action(
                action_id=_action_id(data["action_id"]),
                status=str(data["status"]),
                provider=str(data["provider"]),
                tool=str(data["tool"]),
                arguments=arguments,
                arguments_sha256=str(data["arguments_sha256"]),
                turn_id=str(data.get("turn_id", "")),
                expires_at=int(data["expires_at"]),
                result=result,
            )
        except (KeyError, TypeError, ValueError):
            raise BinderUnavailable("binder_malformed_response") from None

    async def action_token(
        self,
        user_token: str,
        action_id: str,
        *,
        arguments_sha256: str,
        provider: str,
        scopes: Sequence[str],
        request_id: str | None = None,
    ) -> ProviderToken | ConsentNeeded | ActionRefused:
        """The token for running this approved action, once; ActionRefused (409) otherwise."""
        url = f"{self._actions}/{quote(_action_id(action_id), safe='')}/token"
        # The tool's scopes: a connection that lacks them is a consent answer (the approval
        # stays), not a token the provider will refuse (which would use up the approval).
        body = {"arguments_sha256": arguments_sha256, "scopes": list(scopes)}
        response = await self._send("POST", url, user_token, request_id, body)
        data = self._json(response)
        if response.status_code == 409:
            reason = str(data.get("reason", ""))
            result = data.get("result")
            status = data.get("status")
            return ActionRefused(
                reason=reason if reason in ACTION_REFUSALS else "refused",
                status=str(status) if isinstance(status, str) else None,
                result=result if isinstance(result, dict) else None,
            )
        return self._grant(response.status_code, data, provider=provider, scopes=scopes)

    async def action_result(
        self,
        user_token: str,
        action_id: str,
        *,
        status: str,
        upstream_status: int | None,
        summary: str,
        request_id: str | None = None,
    ) -> None:
        """Record the outcome (the binder keeps the first; a second answer 409 is fine)."""
        url = f"{self._actions}/{quote(_action_id(action_id), safe='')}/result"
        body = {"status": status, "upstream_status": upstream_status, "summary": summary[:2000]}
        response = await self._send("POST", url, user_token, request_id, body)
        if response.status_code not in (200, 201, 204, 409):
            raise self._refused(response.status_code, self._json(response))

    # ------------------------------------------------------------------------------ plumbing

    async def _send(
        self,
        method: str,
        url: str,
        user_token: str,
        request_id: str | None,
        body: Mapping[str, Any] | None,
    ) -> httpx2.Response:
        headers = {"authorization": f"Bearer {user_token}"}
        if request_id:
            headers["x-request-id"] = request_id  # joins the two services' audit lines
        # One retry, and only when the request never reached the binder (connect failure):
        # nothing happened on the other side, so sending it again cannot do anything twice.
        for attempt in (1, 2):
            try:
                response = await self._http.request(
                    method, url, json=body, headers=headers, timeout=self._timeout
                )
            except httpx2.ConnectError:
                if attempt == 2:
                    raise BinderUnavailable("binder_unreachable") from None
                continue
            except httpx2.HTTPError as exc:
                raise BinderUnavailable(type(exc).__name__) from None
            if response.status_code in (502, 503, 504, 429):
                retry = response.headers.get("retry-after", "5")
                raise BinderUnavailable(
                    f"binder_{response.status_code}",
                    int(retry) if retry.isdigit() else 5,
                    reason=_reason(response),
                )
            return response
        raise BinderUnavailable("binder_unreachable")  # pragma: no cover - the loop returns

    @staticmethod
    def _json(response: httpx2.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise BinderUnavailable("binder_malformed_response") from None
        if not isinstance(data, dict):
            raise BinderUnavailable("binder_malformed_response")
        return data

    def _grant(
        self, status: int, data: Mapping[str, Any], *, provider: str, scopes: Sequence[str]
    ) -> ProviderToken | ConsentNeeded:
        if status == 200:
            return ProviderToken(
                access_token=str(data["access_token"]),
                token_type=str(data.get("token_type", "Bearer")),
                expires_at=data.get("expires_at"),
                scopes=tuple(data.get("scopes", ())),
            )
        if status == 403 and data.get("error") == "consent_required":
            return ConsentNeeded(
                provider=provider,
                scopes=tuple(scopes),
                authorization_url=str(data["authorization_url"]),
                session_id=str(data["session_id"]),
                expires_at=int(data["expires_at"]),
                reason=str(data.get("reason", "no_connection")),
            )
        raise self._refused(status, data)

    @staticmethod
    def _refused(status: int, data: Mapping[str, Any]) -> BinderRefused:
        code = data.get("field") or data.get("reason") or data.get("error") or "refused"
        return BinderRefused(status, str(code)[:64])


def _action_id(value: object) -> str:
    if not isinstance(value, str) or ACTION_ID.fullmatch(value) is None:
        raise ValueError("not an action id")
    return value
