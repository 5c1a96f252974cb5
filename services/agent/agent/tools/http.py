"""The HTTP layer every tool shares: one provider API's origin and headers (`Api`), the mapping
of provider answers to `ToolError`s, and the helpers that keep results small and token-free.

Rules every tool follows (through these helpers):

- The token goes only into the ``Authorization`` header of requests to the tool's configured
  API origin. Redirects are followed by hand, and only within that origin; cookies from the
  shared client's jar are never sent.
- The token never appears in a result, a ``ToolError`` message or a log line: messages are
  built from fixed text plus short, scrubbed provider error text, and exceptions from the HTTP
  library are replaced (``from None``), never quoted.
- Results are small and JSON-serialisable: long strings are cut to ``MAX_TEXT`` characters,
  lists to the caller's limit, and response bodies larger than ``MAX_RESPONSE_BYTES`` refused.
- Timeouts come from the ``httpx2.AsyncClient`` the caller passes in.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx2

from agent.text import replace_lone_surrogates
from agent.tools.base import ToolError, ToolSpec, upstream_status
from agent.tools.schema import validate_arguments

logger = logging.getLogger("agent.tools")

USER_AGENT: Final = "secure-agents-on-ecs-agent/0.1"
MAX_TEXT: Final = 500  # characters kept of any string a provider returns
MAX_RESPONSE_BYTES: Final = 2 * 1024 * 1024  # decoded body size accepted from a provider
MAX_REDIRECTS: Final = 3
_DETAIL_CHARS: Final = 200  # characters of a provider's error text quoted in a ToolError
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})
_REDIRECT_CODES: Final = frozenset({301, 302, 303, 307, 308})
_GOOGLE_RATE_REASONS: Final = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


# ---------------------------------------------------------------------------- result helpers


def clip(value: object, limit: int = MAX_TEXT) -> str | None:
    """A provider's string, cut to `limit` and encodable as UTF-8 (for the reply and model)."""
    if not isinstance(value, str):
        return None
    value = replace_lone_surrogates(value)
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"


def as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def scrub(value: Any, token: str) -> Any:
    """The value with every occurrence of the token replaced (defence in depth)."""
    if not token:
        return value
    if isinstance(value, str):
        return value.replace(token, "[redacted]")
    if isinstance(value, Mapping):
        return {key: scrub(item, token) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item, token) for item in value]
    return value


# ---------------------------------------------------------------------------------- HTTP layer


def check_base_url(url: str, what: str, *, strip: bool = True) -> str:
    """An https URL (http only on loopback, for the local stack), by default without a final /."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        raise ValueError(f"{what} is not a valid URL") from None
    if not host:
        raise ValueError(f"{what} must be an absolute URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} must not contain credentials")
    if parts.query or parts.fragment:
        raise ValueError(f"{what} must not contain a query or a fragment")
    if parts.scheme != "https" and not (parts.scheme == "http" and host in _LOOPBACK_HOSTS):
        raise ValueError(f"{what} must be an https URL (http only on 127.0.0.1, ::1, localhost)")
    return url.rstrip("/") if strip else url


def _origin(url: httpx2.URL) -> tuple[str, str, int | None]:
    default = {"https": 443, "http": 80}.get(url.scheme)
    return (url.scheme, url.host, url.port or default)


def _retry_after(value: str | None, now: float) -> int | None:
    """Epoch seconds from a Retry-After header (delay-seconds or HTTP-date, RFC 9110 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(now) + int(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(int(moment.timestamp()), int(now))


def _epoch(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def _when(retry_at: int | None) -> str:
    if retry_at is None:
        return "; try again later"
    stamp = datetime.fromtimestamp(retry_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"; try again after {stamp}"


def _error_details(body: bytes) -> tuple[str | None, set[str]]:
    """The provider's own error text and error reasons, from the usual JSON error shapes.

    GitHub: {"message"}; Google: {"error": {"message", "errors": [{"reason"}]}};
    Microsoft Graph: {"error": {"code", "message"}}; OAuth/OIDC: {"error", "error_description"}.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, set()
    if not isinstance(data, Mapping):
        return None, set()
    reasons: set[str] = set()
    message = data.get("message")
    error = data.get("error")
    if isinstance(error, Mapping):
        message = error.get("message") or error.get("code")
        for item in error.get("errors") or ():
            reason = as_mapping(item).get("reason")
            if isinstance(reason, str):
                reasons.add(reason)
    elif isinstance(error, str):
        reasons.add(error)
        message = data.get("error_description") or error
    return (message if isinstance(message, str) and message else None), reasons


class Api:
    """One provider's REST API: its origin, display name and recommended headers."""

    def __init__(self, *, label: str, base_url: str, headers: Mapping[str, str]) -> None:
        self.label = label
        self.base_url = base_url
        self.headers = {"User-Agent": USER_AGENT, **headers}

    async def call(
        self,
        spec: ToolSpec,
        http: httpx2.AsyncClient,
        method: str,
        url: str,
        *,
        token: str,
        json_body: Mapping[str, Any] | None = None,
        expect: Collection[int] = (200,),
    ) -> Any:
        """The decoded JSON body of a successful answer; provider failures as ToolError."""
        started = time.monotonic()
        try:
            response, body = await self._exchange(
                http, method, url, token=token, json_body=json_body
            )
        except ToolError as exc:
            logger.warning(
                "tool call failed",
                extra={"fields": {"tool": spec.name, "provider": spec.provider, "kind": exc.kind}},
            )
            raise
        status = response.status_code
        upstream_status.set(status)
        fields = {
            "tool": spec.name,
            "provider": spec.provider,
            "http_status": status,
            "duration_ms": round((time.monotonic() - started) * 1000),
        }
        if status not in expect:
            error = self._error(response, body, token=token)
            logger.warning("tool call failed", extra={"fields": {**fields, "kind": error.kind}})
            raise error
        logger.info("tool call", extra={"fields": fields})
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ToolError(
                "provider_error", f"{self.label} sent a response that is not valid JSON."
            ) from None

    async def _exchange(
        self,
        http: httpx2.AsyncClient,
        method: str,
        url: str,
        *,
        token: str,
        json_body: Mapping[str, Any] | None,
    ) -> tuple[httpx2.Response, bytes]:
        headers = {**self.headers, "Authorization": f"Bearer {token}"}
        target = httpx2.URL(url)
        origin = _origin(target)
        for _ in range(MAX_REDIRECTS + 1):
            request = http.build_request(method, target, json=json_body, headers=headers)
            request.headers.pop("cookie", None)  # the shared client's jar is not this user's
            response, body = await self._send(http, request)
            if response.status_code not in _REDIRECT_CODES:
                return response, body
            location = response.headers.get("location")
            if not location:
                raise ToolError("provider_error", f"{self.label} sent a redirect without a target.")
            target = request.url.join(location)
            if _origin(target) != origin:
                raise ToolError(
                    "provider_error",
                    f"{self.label} redirected the request to another host; it was not followed "
                    "(the access token is only sent to the provider's API).",
                )
            if method != "GET" and response.status_code not in (307, 308):
                raise ToolError(
                    "provider_error",
                    f"{self.label} redirected a {method} request; it was not repeated.",
                )
        raise ToolError("provider_error", f"{self.label} redirected the request too many times.")

    async def _send(
        self, http: httpx2.AsyncClient, request: httpx2.Request
    ) -> tuple[httpx2.Response, bytes]:
        try:
            response = await http.send(request, stream=True, auth=None, follow_redirects=False)
            try:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise ToolError(
                            "provider_error", f"{self.label} sent a response that is too large."
                        )
                    chunks.append(chunk)
            finally:
                await response.aclose()
        except httpx2.TimeoutException:
            raise ToolError(
                "unavailable", f"{self.label} did not answer in time; try again later."
            ) from None
        except httpx2.TransportError:
            raise ToolError(
                "unavailable", f"{self.label} could not be reached; try again later."
            ) from None
        except httpx2.HTTPError:
            raise ToolError(
                "provider_error", f"{self.label} sent a response that could not be read."
            ) from None
        return response, b"".join(chunks)

    def _error(self, response: httpx2.Response, body: bytes, *, token: str) -> ToolError:
        status = response.status_code
        label = self.label
        headers = response.headers
        now = time.time()
        text, reasons = _error_details(body)
        detail = f": {scrub(clip(text, _DETAIL_CHARS), token)}" if text else ""
        exhausted = headers.get("x-ratelimit-remaining", "").strip() == "0"
        retry_after = _retry_after(headers.get("retry-after"), now)
        if status == 401:
            return ToolError(
                "unauthorized",
                f"{label} refused the access (HTTP 401): the connection may have expired or "
                f"been revoked, so the user may need to reconnect {label}.",
            )
        if status == 429 or (
            status == 403
            and (
                exhausted
                or retry_after is not None
                or bool(reasons & _GOOGLE_RATE_REASONS)
                or (text is not None and "rate limit" in text.lower())
            )
        ):
            # GitHub documents a primary limit (403/429 with x-ratelimit-remaining: 0, wait for
            # x-ratelimit-reset) and secondary limits (403/429, retry-after when present):
            # https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api
            # Google answers 403 with reason (user)rateLimitExceeded, or 429:
            # https://developers.google.com/workspace/calendar/api/guides/errors
            # Microsoft Graph answers 429 with Retry-After:
            # https://learn.microsoft.com/en-us/graph/throttling
            retry_at = retry_after
            if retry_at is None and exhausted:
                retry_at = _epoch(headers.get("x-ratelimit-reset"))
            return ToolError(
                "rate_limited",
                f"{label} rate limit reached (HTTP {status}){_when(retry_at)}.",
                retry_at=retry_at,
            )
        if status == 403:
            return ToolError(
                "forbidden",
                f"{label} denied the request (HTTP 403): the connected account or the granted "
                f"permissions do not allow it{detail}.",
            )
        if status in (404, 410):
            return ToolError(
                "not_found",
                f"{label} found nothing there (HTTP {status}): it does not exist, is disabled, "
                "or the connected account cannot see it.",
            )
        if status >= 500:
            return ToolError(
                "unavailable",
                f"{label} is unavailable (HTTP {status}){_when(retry_after)}.",
                retry_at=retry_after,
            )
        return ToolError(
            "provider_error", f"{label} did not accept the request (HTTP {status}){detail}."
        )


# ------------------------------------------------------------------------------ a tool's base


class BaseTool:
    spec: ToolSpec

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return validate_arguments(self.spec.input_schema, arguments)

    def describe(self, arguments: Mapping[str, Any]) -> str:
        return self.spec.description.split(".")[0]

    def _finish(self, result: dict[str, Any], token: str) -> dict[str, Any]:
        scrubbed: dict[str, Any] = scrub(result, token)
        return scrubbed


def shape_error(api: Api) -> ToolError:
    return ToolError("provider_error", f"{api.label} sent a response of an unexpected shape.")
