"""The agent's client for the binder's internal API (Service Connect, never the ALB).

The user's own Cognito access token is forwarded: the binder verifies it again and can only
issue that user's tokens, so the agent holds no credential of its own for the vault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2


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


class BinderUnavailable(Exception):
    def __init__(self, code: str, retry_after: int = 5) -> None:
        super().__init__(code)
        self.code = code
        self.retry_after = retry_after


class BinderRefused(Exception):
    """The binder refused the request itself (bad request or the user token was refused)."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code


class BinderClient:
    def __init__(self, *, base_url: str, http: httpx2.AsyncClient, timeout: float = 10.0) -> None:
        self._url = f"{base_url.rstrip('/')}/internal/tokens"
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
        headers = {"authorization": f"Bearer {user_token}"}
        if request_id:
            headers["x-request-id"] = request_id  # joins the two services' audit lines
        response = None
        # One retry, and only when the request never reached the binder (connect failure):
        # the call is a read with at most a new consent session as a side effect.
        for attempt in (1, 2):
            try:
                response = await self._http.post(
                    self._url, json=body, headers=headers, timeout=self._timeout
                )
                break
            except httpx2.ConnectError:
                if attempt == 2:
                    raise BinderUnavailable("binder_unreachable") from None
            except httpx2.HTTPError as exc:
                raise BinderUnavailable(type(exc).__name__) from None
        assert response is not None  # noqa: S101 - loop either breaks with a response or raises
        if response.status_code in (502, 503, 504, 429):
            retry = response.headers.get("retry-after", "5")
            raise BinderUnavailable(
                f"binder_{response.status_code}", int(retry) if retry.isdigit() else 5
            )
        try:
            data = response.json()
        except ValueError:
            raise BinderUnavailable("binder_malformed_response") from None
        if response.status_code == 200:
            return ProviderToken(
                access_token=str(data["access_token"]),
                token_type=str(data.get("token_type", "Bearer")),
                expires_at=data.get("expires_at"),
                scopes=tuple(data.get("scopes", ())),
            )
        if response.status_code == 403 and data.get("error") == "consent_required":
            return ConsentNeeded(
                provider=provider,
                scopes=tuple(scopes),
                authorization_url=str(data["authorization_url"]),
                session_id=str(data["session_id"]),
                expires_at=int(data["expires_at"]),
                reason=str(data.get("reason", "no_connection")),
            )
        code = data.get("field") or data.get("reason") or data.get("error") or "refused"
        raise BinderRefused(response.status_code, str(code)[:64])
