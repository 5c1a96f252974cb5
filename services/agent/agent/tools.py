"""The agent's tools (GitHub, Google Calendar, Microsoft Graph, any OIDC provider) and registry.

Each tool calls its provider's public REST API with the user's access token, which the
orchestrator obtained from the binder for this one call. Rules every tool follows:

- The token goes only into the ``Authorization`` header of requests to the tool's configured
  API origin. Redirects are followed by hand, and only within that origin; cookies from the
  shared client's jar are never sent.
- The token never appears in a result, a ``ToolError`` message or a log line: messages are
  built from fixed text plus short, scrubbed provider error text, and exceptions from the HTTP
  library are replaced (``from None``), never quoted.
- Results are small and JSON-serialisable: long strings are cut to ``MAX_TEXT`` characters,
  lists to the caller's limit, and response bodies larger than ``MAX_RESPONSE_BYTES`` refused.
- Timeouts come from the ``httpx2.AsyncClient`` the caller passes in.

Arguments are checked against each tool's JSON Schema by a small validator for the subset the
tools use: an object with properties, required and additionalProperties false; properties of
type string (minLength, maxLength, pattern), integer (minimum, maximum) or boolean, each with
optional enum and default. ``ToolRegistry`` refuses a tool whose schema uses anything else
(``check_input_schema``): a keyword the validator ignored would be a constraint the model is
shown and nobody enforces, so registration fails closed instead.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx2

from agent.text import has_lone_surrogate, replace_lone_surrogates
from agent.tooling import Tool, ToolError, ToolSpec, upstream_status

__all__ = [
    "GithubCreateIssue",
    "GithubListRepositories",
    "GithubWhoami",
    "GoogleCalendarUpcoming",
    "MicrosoftMailSubjects",
    "MicrosoftMe",
    "NotesCreate",
    "NotesList",
    "OidcWhoami",
    "ToolRegistry",
    "check_input_schema",
    "default_tools",
    "validate_arguments",
]

logger = logging.getLogger(__name__)

GITHUB_API: Final = "https://api.github.com"
GOOGLE_API: Final = "https://www.googleapis.com"
GRAPH_API: Final = "https://graph.microsoft.com"
# The local notes server's scope (devstack/notes_server.py): one grant reads and writes; each
# write still needs the user's approval at the binder.
NOTES_SCOPES: Final = ("notes",)

USER_AGENT: Final = "secure-agents-on-ecs-agent/0.1"
GITHUB_API_VERSION: Final = "2022-11-28"

MAX_TEXT: Final = 500  # characters kept of any string a provider returns
MAX_RESPONSE_BYTES: Final = 2 * 1024 * 1024  # decoded body size accepted from a provider
MAX_REDIRECTS: Final = 3
_DETAIL_CHARS: Final = 200  # characters of a provider's error text quoted in a ToolError

_TOOL_NAME_RE: Final = re.compile(r"[a-z0-9_]{1,64}")
# The binder's provider-name rule: lowercase letters, digits and inner hyphens, 1-32 chars.
_PROVIDER_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})
_REDIRECT_CODES: Final = frozenset({301, 302, 303, 307, 308})
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
_BODY_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # keeps \t \n \r
_GOOGLE_RATE_REASONS: Final = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})

# GitHub: owner (user or organisation login, up to 39 characters, letters, digits, hyphens,
# not starting with a hyphen) "/" repository name (letters, digits, ".", "_", "-").
_REPOSITORY_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$"


# --------------------------------------------------------------------------- argument checking


def _invalid(message: str) -> ToolError:
    return ToolError("invalid_arguments", message)


def _check_title_and_body(args: Mapping[str, Any]) -> None:
    """A one-line, non-blank title and a body without control characters (newlines and tabs
    are fine): what an issue or a note may hold."""
    if not args["title"].strip():
        raise _invalid('"title" must not be blank')
    if _CONTROL_RE.search(args["title"]):
        raise _invalid('"title" must be a single line without control characters')
    if _BODY_CONTROL_RE.search(args["body"]):
        raise _invalid('"body" must not contain control characters')


def _label(name: str) -> str:
    """An argument name as quoted in an error message (bounded: names come from the model)."""
    return json.dumps(name[:64])


def _python_pattern(pattern: str) -> re.Pattern[str]:
    """An ECMA-262 style pattern for Python: a final ``$`` must not match before a newline."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _check_value(name: str, schema: Mapping[str, Any], value: object) -> object:
    kind = schema.get("type")
    label = _label(name)
    if kind == "string":
        if not isinstance(value, str):
            raise _invalid(f"{label} must be a string")
        if has_lone_surrogate(value):
            # Not text: no provider could be sent it (UTF-8 cannot encode it).
            raise _invalid(f"{label} must be valid Unicode text")
        min_length = schema.get("minLength")
        max_length = schema.get("maxLength")
        if min_length is not None and len(value) < min_length:
            raise _invalid(
                f"{label} must not be empty"
                if min_length == 1
                else f"{label} must be at least {min_length} characters long"
            )
        if max_length is not None and len(value) > max_length:
            raise _invalid(f"{label} must be at most {max_length} characters long")
        pattern = schema.get("pattern")
        if pattern is not None and _python_pattern(pattern).search(value) is None:
            raise _invalid(f"{label} has the wrong format")
    elif kind == "integer":
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)  # JSON Schema: 10.0 is an integer
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(f"{label} must be an integer")
        minimum = schema.get("minimum")
        maximum = schema.get("maximum")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            low = "" if minimum is None else f" at least {minimum}"
            high = "" if maximum is None else f" at most {maximum}"
            joiner = " and" if low and high else ""
            raise _invalid(f"{label} must be{low}{joiner}{high}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _invalid(f"{label} must be true or false")
    elif kind is not None:
        raise ValueError(f"unsupported schema type {kind!r} for {name!r}")
    enum = schema.get("enum")
    if enum is not None and not any(
        type(value) is type(option) and value == option for option in enum
    ):
        choices = ", ".join(json.dumps(option) for option in enum)
        raise _invalid(f"{label} must be one of {choices}")
    return value


def validate_arguments(schema: Mapping[str, Any], arguments: object) -> dict[str, Any]:
    """Checked arguments with defaults filled in; raises ToolError("invalid_arguments", ...).

    ``null`` for an optional argument counts as "not given" (models often send it).
    """
    if schema.get("type") != "object":
        raise ValueError("a tool's input schema must have type 'object'")
    if not isinstance(arguments, Mapping):
        raise _invalid("the arguments must be a JSON object")
    properties: Mapping[str, Mapping[str, Any]] = schema.get("properties", {})
    required: Sequence[str] = schema.get("required", ())
    closed = schema.get("additionalProperties", True) is False
    result: dict[str, Any] = {}
    for name, value in arguments.items():
        if not isinstance(name, str):
            raise _invalid("argument names must be strings")
        spec = properties.get(name)
        if spec is None:
            if closed:
                raise _invalid(f"unknown argument {_label(name)}")
            result[name] = value
            continue
        if value is None and name not in required:
            continue
        result[name] = _check_value(name, spec, value)
    for name in required:
        if name not in result:
            raise _invalid(f"missing required argument {_label(name)}")
    for name, spec in properties.items():
        if name not in result and "default" in spec:
            result[name] = spec["default"]
    return result


# The schema subset ``validate_arguments`` enforces, keyword by keyword. Annotations (title and
# description anywhere, examples on a property) never constrain a value, so ignoring them
# accepts exactly what a full validator would: they are allowed. Examples must validate all
# the same, since the model learns from them; ``default`` is no annotation here (the validator
# fills it in), so it must validate too. Anything else, ``$comment`` included, is refused: the
# list stays the validator's, not JSON Schema's.
_ANNOTATIONS: Final = frozenset({"title", "description"})
_OBJECT_KEYWORDS: Final = frozenset(
    {"type", "properties", "required", "additionalProperties", *_ANNOTATIONS}
)
_TYPE_KEYWORDS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "string": frozenset({"minLength", "maxLength", "pattern"}),
        "integer": frozenset({"minimum", "maximum"}),
        "boolean": frozenset(),
    }
)
_PROPERTY_KEYWORDS: Final = frozenset({"type", "enum", "default", "examples", *_ANNOTATIONS})
_ANY_PROPERTY_KEYWORD: Final = _PROPERTY_KEYWORDS.union(*_TYPE_KEYWORDS.values())


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _bound(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_property(name: str, prop: object) -> None:
    """Raise ValueError (without the tool's name) unless `prop` is in the enforced subset."""
    where = f"property {name[:64]!r}"
    if not isinstance(prop, Mapping):
        raise ValueError(f"{where} must be a schema object")
    for keyword in prop:
        if keyword not in _ANY_PROPERTY_KEYWORD:
            raise ValueError(
                f"{where} uses {str(keyword)[:64]!r}, which the validator does not enforce"
            )
    kind = prop.get("type")
    if kind is None:
        raise ValueError(f"{where} has no 'type': the validator would accept any value")
    if not isinstance(kind, str) or kind not in _TYPE_KEYWORDS:
        supported = ", ".join(_TYPE_KEYWORDS)
        raise ValueError(f"{where} has 'type' {kind!r}; the validator supports {supported}")
    for keyword in prop:
        if keyword not in _PROPERTY_KEYWORDS and keyword not in _TYPE_KEYWORDS[kind]:
            raise ValueError(f"{where} uses {keyword!r}, which does not apply to type {kind!r}")
    for keyword in _ANNOTATIONS & set(prop):
        if not isinstance(prop[keyword], str):
            raise ValueError(f"{where}: {keyword!r} must be a string")
    for low, high, valid in (
        ("minLength", "maxLength", _count),
        ("minimum", "maximum", _bound),
    ):
        for keyword in (low, high):
            if keyword in prop and not valid(prop[keyword]):
                raise ValueError(f"{where}: {keyword!r} is not a valid bound")
        if low in prop and high in prop and prop[low] > prop[high]:
            raise ValueError(f"{where}: {low!r} is greater than {high!r}")
    if "pattern" in prop:
        if not isinstance(prop["pattern"], str):
            raise ValueError(f"{where}: 'pattern' must be a string")
        try:
            _python_pattern(prop["pattern"])
        except re.error:
            raise ValueError(f"{where}: 'pattern' is not a valid regular expression") from None
    unconstrained = {key: value for key, value in prop.items() if key != "enum"}
    if "enum" in prop:
        options = prop["enum"]
        if not isinstance(options, list) or not options:
            raise ValueError(f"{where}: 'enum' must be a non-empty list")
        for option in options:
            _check_example(name, "enum", unconstrained, option)
    if "default" in prop:
        _check_example(name, "default", prop, prop["default"])
    if "examples" in prop:
        if not isinstance(prop["examples"], list):
            raise ValueError(f"{where}: 'examples' must be a list")
        for example in prop["examples"]:
            _check_example(name, "examples", prop, example)


def _check_example(name: str, keyword: str, prop: Mapping[str, Any], value: object) -> None:
    """`value` must pass the property's own check unchanged (10.0 is no integer default)."""
    where = f"property {name[:64]!r}"
    try:
        checked = _check_value(name, prop, value)
    except ToolError as exc:
        raise ValueError(f"{where}: {keyword!r} value does not validate ({exc.message})") from None
    if type(checked) is not type(value):
        raise ValueError(f"{where}: {keyword!r} value is not of the property's type")


def check_input_schema(tool: str, schema: object) -> None:
    """Raise ValueError naming the tool and the keyword unless ``validate_arguments`` enforces
    every keyword of ``schema``.

    The model is shown the schema, so a keyword it relies on (``format``, ``anyOf``, ``items``,
    a property without ``type``...) that the validator skipped would let any value through:
    such a tool is refused when registered, not trusted at call time.
    """
    try:
        _check_object_schema(schema)
    except ValueError as exc:
        raise ValueError(f"tool {tool!r}: input schema: {exc}") from None


def _check_object_schema(schema: object) -> None:
    if not isinstance(schema, Mapping):
        raise ValueError("must be a schema object")
    for keyword in schema:
        if keyword not in _OBJECT_KEYWORDS:
            raise ValueError(f"uses {str(keyword)[:64]!r}, which the validator does not enforce")
    if schema.get("type") != "object":
        raise ValueError("'type' must be 'object'")
    if schema.get("additionalProperties") is not False:
        raise ValueError(
            "'additionalProperties' must be false: undeclared arguments would pass unchecked"
        )
    for keyword in _ANNOTATIONS & set(schema):
        if not isinstance(schema[keyword], str):
            raise ValueError(f"{keyword!r} must be a string")
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise ValueError("'properties' must be an object")
    for name, prop in properties.items():
        if not isinstance(name, str):
            raise ValueError("property names must be strings")
        _check_property(name, prop)
    required = schema.get("required", [])
    if not isinstance(required, list | tuple) or not all(isinstance(n, str) for n in required):
        raise ValueError("'required' must be a list of property names")
    if len(set(required)) != len(required):
        raise ValueError("'required' names a property twice")
    for name in required:
        if name not in properties:
            raise ValueError(f"'required' names {name[:64]!r}, which is not a property")


# ---------------------------------------------------------------------------- result helpers


def _text(value: object, limit: int = MAX_TEXT) -> str | None:
    """A provider's string, cut to `limit` and encodable as UTF-8 (for the reply and model)."""
    if not isinstance(value, str):
        return None
    value = replace_lone_surrogates(value)
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _scrub(value: Any, token: str) -> Any:
    """The value with every occurrence of the token replaced (defence in depth)."""
    if not token:
        return value
    if isinstance(value, str):
        return value.replace(token, "[redacted]")
    if isinstance(value, Mapping):
        return {key: _scrub(item, token) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item, token) for item in value]
    return value


# ---------------------------------------------------------------------------------- HTTP layer


def _check_base_url(url: str, what: str, *, strip: bool = True) -> str:
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
            reason = _mapping(item).get("reason")
            if isinstance(reason, str):
                reasons.add(reason)
    elif isinstance(error, str):
        reasons.add(error)
        message = data.get("error_description") or error
    return (message if isinstance(message, str) and message else None), reasons


class _Api:
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
        detail = f": {_scrub(_text(text, _DETAIL_CHARS), token)}" if text else ""
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


# --------------------------------------------------------------------------------------- tools


class _BaseTool:
    spec: ToolSpec

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return validate_arguments(self.spec.input_schema, arguments)

    def describe(self, arguments: Mapping[str, Any]) -> str:
        return self.spec.description.split(".")[0]

    def _finish(self, result: dict[str, Any], token: str) -> dict[str, Any]:
        scrubbed: dict[str, Any] = _scrub(result, token)
        return scrubbed


def _shape_error(api: _Api) -> ToolError:
    return ToolError("provider_error", f"{api.label} sent a response of an unexpected shape.")


def _github_api(base_url: str) -> _Api:
    # Headers: https://docs.github.com/en/rest/using-the-rest-api/getting-started-with-the-rest-api
    # (Accept, X-GitHub-Api-Version; requests without a User-Agent are rejected).
    return _Api(
        label="GitHub",
        base_url=_check_base_url(base_url, "the GitHub API URL"),
        headers={
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": GITHUB_API_VERSION,
        },
    )


class GithubWhoami(_BaseTool):
    """GET /user.

    Docs: https://docs.github.com/en/rest/users/users#get-the-authenticated-user
    """

    def __init__(self, *, api_base: str = GITHUB_API) -> None:
        self._api = _github_api(api_base)
        self.spec = ToolSpec(
            name="github_whoami",
            description=(
                "Show the GitHub account the user has connected: login, name, profile URL and "
                "number of public repositories. Use it when the user asks who they are on GitHub."
            ),
            input_schema={"type": "object", "properties": {}, "additionalProperties": False},
            provider="github",
            scopes=("read:user",),
            changes_data=False,
        )

    def describe(self, arguments: Mapping[str, Any]) -> str:
        return "read your GitHub profile"

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        self.validate(arguments)
        data = await self._api.call(
            self.spec, http, "GET", f"{self._api.base_url}/user", token=token
        )
        if not isinstance(data, Mapping):
            raise _shape_error(self._api)
        return self._finish(
            {
                "login": _text(data.get("login")),
                "name": _text(data.get("name")),
                "html_url": _text(data.get("html_url")),
                "public_repos": _int(data.get("public_repos")),
            },
            token,
        )


class GithubListRepositories(_BaseTool):
    """GET /user/repos?sort=updated&per_page=N[&visibility=...].

    Docs: https://docs.github.com/en/rest/repos/repos#list-repositories-for-the-authenticated-user
    """

    def __init__(self, *, api_base: str = GITHUB_API) -> None:
        self._api = _github_api(api_base)
        self.spec = ToolSpec(
            name="github_list_repositories",
            description=(
                "List the GitHub repositories the user can access (owned, collaborator, "
                "organisation member), most recently updated first. Returns full name, "
                "visibility, description, URL and last update time."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 50,
                        "default": 10,
                        "description": "How many repositories to return (1-50, default 10).",
                    },
                    "visibility": {
                        "type": "string",
                        "enum": ["all", "public", "private"],
                        "description": "Only repositories with this visibility (default all).",
                    },
                },
                "additionalProperties": False,
            },
            provider="github",
            scopes=("repo",),
            changes_data=False,
        )

    def describe(self, arguments: Mapping[str, Any]) -> str:
        args = self.validate(arguments)
        which = f"{args['visibility']} " if args.get("visibility", "all") != "all" else ""
        return f"list up to {args['limit']} of your {which}GitHub repositories"

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        args = self.validate(arguments)
        limit: int = args["limit"]
        query = f"sort=updated&per_page={limit}"
        if "visibility" in args:
            query += f"&visibility={args['visibility']}"
        data = await self._api.call(
            self.spec, http, "GET", f"{self._api.base_url}/user/repos?{query}", token=token
        )
        if not isinstance(data, list):
            raise _shape_error(self._api)
        repositories = [
            {
                "full_name": _text(repo.get("full_name")),
                "private": _bool(repo.get("private")),
                "description": _text(repo.get("description")),
                "html_url": _text(repo.get("html_url")),
                "updated_at": _text(repo.get("updated_at")),
            }
            for repo in (_mapping(item) for item in data[:limit])
        ]
        return self._finish({"repositories": repositories}, token)


class GithubCreateIssue(_BaseTool):
    """POST /repos/{owner}/{repo}/issues with {"title", "body"}.

    Docs: https://docs.github.com/en/rest/issues/issues#create-an-issue
    """

    def __init__(self, *, api_base: str = GITHUB_API) -> None:
        self._api = _github_api(api_base)
        self.spec = ToolSpec(
            name="github_create_issue",
            description=(
                "Create an issue in a GitHub repository the user can access. Changes data: it "
                "runs only after the user approves it in the browser. Returns the issue number, "
                "URL and title."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "repository": {
                        "type": "string",
                        "pattern": _REPOSITORY_PATTERN,
                        "maxLength": 140,
                        "description": "The repository as owner/name, e.g. octocat/Hello-World.",
                    },
                    "title": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 256,
                        "description": "The issue title (one line).",
                    },
                    "body": {
                        "type": "string",
                        "minLength": 0,
                        "maxLength": 10000,
                        "default": "",
                        "description": "The issue text in Markdown (optional).",
                    },
                },
                "required": ["repository", "title"],
                "additionalProperties": False,
            },
            provider="github",
            scopes=("repo",),
            changes_data=True,
        )

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        args = super().validate(arguments)
        _owner, _, name = args["repository"].partition("/")
        if name in (".", ".."):
            raise _invalid('"repository" has the wrong format')
        _check_title_and_body(args)
        return args

    def describe(self, arguments: Mapping[str, Any]) -> str:
        args = self.validate(arguments)
        return f'create issue "{args["title"]}" in {args["repository"]}'

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        args = self.validate(arguments)
        owner, _, name = args["repository"].partition("/")
        url = f"{self._api.base_url}/repos/{quote(owner, safe='')}/{quote(name, safe='')}/issues"
        data = await self._api.call(
            self.spec,
            http,
            "POST",
            url,
            token=token,
            json_body={"title": args["title"], "body": args["body"]},
            expect=(200, 201),
        )
        if not isinstance(data, Mapping):
            raise _shape_error(self._api)
        return self._finish(
            {
                "number": _int(data.get("number")),
                "html_url": _text(data.get("html_url")),
                "title": _text(data.get("title")),
            },
            token,
        )


class OidcWhoami(_BaseTool):
    """GET the provider's UserInfo endpoint (any OpenID Connect provider).

    Docs: https://openid.net/specs/openid-connect-core-1_0.html#UserInfo (section 5.3: a GET
    with the access token as a Bearer token; the answer is a JSON object of claims).
    """

    CLAIMS: Final = ("sub", "name", "email", "preferred_username")

    def __init__(self, provider: str, userinfo_endpoint: str) -> None:
        if _PROVIDER_RE.fullmatch(provider) is None:
            raise ValueError(f"invalid provider name {provider!r}")
        name = f"{provider.replace('-', '_')}_whoami"
        if _TOOL_NAME_RE.fullmatch(name) is None:  # pragma: no cover - implied by _PROVIDER_RE
            raise ValueError(f"invalid tool name {name!r}")
        endpoint = _check_base_url(
            userinfo_endpoint, f"the {provider} userinfo endpoint", strip=False
        )
        self._api = _Api(label=provider, base_url=endpoint, headers={"Accept": "application/json"})
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
            raise _shape_error(self._api)
        claims = {claim: _text(data.get(claim)) for claim in self.CLAIMS}
        result = {claim: value for claim, value in claims.items() if value is not None}
        if not result:
            raise _shape_error(self._api)
        return self._finish(result, token)


class GoogleCalendarUpcoming(_BaseTool):
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
        self._api = _Api(
            label="Google",
            base_url=_check_base_url(api_base, "the Google API URL"),
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
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 25,
                        "default": 10,
                        "description": "How many events to return (1-25, default 10).",
                    },
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
        items = _mapping(data).get("items", [])
        if not isinstance(data, Mapping) or not isinstance(items, list):
            raise _shape_error(self._api)
        events = []
        for event in (_mapping(item) for item in items[:limit]):
            start, end = _mapping(event.get("start")), _mapping(event.get("end"))
            events.append(
                {
                    "summary": _text(event.get("summary")),
                    "start": _text(start.get("dateTime") or start.get("date")),
                    "end": _text(end.get("dateTime") or end.get("date")),
                    "html_link": _text(event.get("htmlLink")),
                }
            )
        return self._finish({"events": events}, token)


def _graph_api(base_url: str) -> _Api:
    # Calling Microsoft Graph: https://learn.microsoft.com/en-us/graph/call-api
    # Throttling (429 + Retry-After): https://learn.microsoft.com/en-us/graph/throttling
    return _Api(
        label="Microsoft",
        base_url=_check_base_url(base_url, "the Microsoft Graph URL"),
        headers={"Accept": "application/json"},
    )


class MicrosoftMe(_BaseTool):
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
            raise _shape_error(self._api)
        return self._finish(
            {
                "display_name": _text(data.get("displayName")),
                "user_principal_name": _text(data.get("userPrincipalName")),
                "mail": _text(data.get("mail")),
                "id": _text(data.get("id")),
            },
            token,
        )


class MicrosoftMailSubjects(_BaseTool):
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
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 25,
                        "default": 10,
                        "description": "How many messages to return (1-25, default 10).",
                    },
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
        items = _mapping(data).get("value", [])
        if not isinstance(data, Mapping) or not isinstance(items, list):
            raise _shape_error(self._api)
        messages = []
        for message in (_mapping(item) for item in items[:limit]):
            address = _mapping(_mapping(message.get("from")).get("emailAddress"))
            name, mail = _text(address.get("name"), 200), _text(address.get("address"), 254)
            sender = f"{name} <{mail}>" if name and mail and name != mail else (name or mail)
            messages.append(
                {
                    "subject": _text(message.get("subject")),
                    "from": sender,
                    "received": _text(message.get("receivedDateTime")),
                }
            )
        return self._finish({"messages": messages}, token)


def _notes_api(base_url: str) -> _Api:
    return _Api(
        label="Notes",
        base_url=_check_base_url(base_url, "the notes API URL"),
        headers={"Accept": "application/json"},
    )


def _note(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": _text(item.get("id")) if isinstance(item.get("id"), str) else _int(item.get("id")),
        "title": _text(item.get("title")),
        "body": _text(item.get("body")),
        "created_at": _text(item.get("created_at")),
    }


class NotesList(_BaseTool):
    """GET {NOTES_API_URL}/notes -> {"notes": [{"id", "title", "body", "created_at"}]}.

    The local stack's notes resource server (devstack), protected by the local OIDC provider's
    access tokens: the agent's read tool for the approval story.
    """

    def __init__(self, *, api_base: str) -> None:
        self._api = _notes_api(api_base)
        self.spec = ToolSpec(
            name="notes_list",
            description=(
                "List the user's notes (id, title, body, creation time), as the notes service "
                "returns them."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 50,
                        "default": 20,
                        "description": "How many notes to return (1-50, default 20).",
                    },
                },
                "additionalProperties": False,
            },
            provider="notes",
            scopes=NOTES_SCOPES,
            changes_data=False,
        )

    def describe(self, arguments: Mapping[str, Any]) -> str:
        return "list your notes"

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        limit: int = self.validate(arguments)["limit"]
        data = await self._api.call(
            self.spec, http, "GET", f"{self._api.base_url}/notes", token=token
        )
        items = _mapping(data).get("notes")
        if not isinstance(items, list):
            raise _shape_error(self._api)
        notes = [_note(item) for item in (_mapping(item) for item in items[:limit])]
        return self._finish({"notes": notes}, token)


class NotesCreate(_BaseTool):
    """POST {NOTES_API_URL}/notes with {"title", "body"} -> 201 {"id", ...}.

    Changes data: it runs only as an action the user approved in the browser.
    """

    def __init__(self, *, api_base: str) -> None:
        self._api = _notes_api(api_base)
        self.spec = ToolSpec(
            name="notes_create",
            description=(
                "Create a note with a title and a body. Changes data: it runs only after the "
                "user approves it in the browser. Returns the new note's id."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "title": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 200,
                        "description": "The note's title (one line).",
                    },
                    "body": {
                        "type": "string",
                        "minLength": 0,
                        "maxLength": 10000,
                        "default": "",
                        "description": "The note's text (optional).",
                    },
                },
                "required": ["title"],
                "additionalProperties": False,
            },
            provider="notes",
            scopes=NOTES_SCOPES,
            changes_data=True,
        )

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        args = super().validate(arguments)
        _check_title_and_body(args)
        return args

    def describe(self, arguments: Mapping[str, Any]) -> str:
        args = self.validate(arguments)
        return f"create a note titled {json.dumps(args['title'], ensure_ascii=True)}"

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        args = self.validate(arguments)
        data = await self._api.call(
            self.spec,
            http,
            "POST",
            f"{self._api.base_url}/notes",
            token=token,
            json_body={"title": args["title"], "body": args["body"]},
            expect=(200, 201),
        )
        if not isinstance(data, Mapping):
            raise _shape_error(self._api)
        note = _note(data)
        return self._finish(
            {"id": note["id"], "title": note["title"], "created_at": note["created_at"]}, token
        )


# ------------------------------------------------------------------------------------ registry


class ToolRegistry:
    """The tools the agent offers, by name, in a fixed order.

    A tool is registered only if its name is well-formed and unique and its input schema uses
    only what ``validate_arguments`` enforces (``check_input_schema``): ValueError otherwise.
    """

    def __init__(self, tools: Sequence[Tool]) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            name = tool.spec.name
            if _TOOL_NAME_RE.fullmatch(name) is None:
                raise ValueError(f"invalid tool name {name!r}")
            if name in self._tools:
                raise ValueError(f"duplicate tool name {name!r}")
            check_input_schema(name, tool.spec.input_schema)
            self._tools[name] = tool

    def get(self, name: str) -> Tool:
        return self._tools[name]  # KeyError if unknown

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def specs(self) -> list[ToolSpec]:
        return [tool.spec for tool in self._tools.values()]

    def for_providers(self, providers: Collection[str]) -> ToolRegistry:
        """Only the tools whose provider is configured (in ``providers``)."""
        wanted = frozenset(providers)
        return ToolRegistry([t for t in self._tools.values() if t.spec.provider in wanted])


_NO_OIDC: Final[Mapping[str, str]] = MappingProxyType({})


def default_tools(
    *,
    oidc_userinfo: Mapping[str, str] = _NO_OIDC,
    github_api: str = GITHUB_API,
    google_api: str = GOOGLE_API,
    graph_api: str = GRAPH_API,
    notes_api: str | None = None,
) -> list[Tool]:
    """The built-in tools, the notes tools when ``notes_api`` is given, plus one OidcWhoami per
    entry of ``oidc_userinfo`` (name -> URL)."""
    tools: list[Tool] = [
        GithubWhoami(api_base=github_api),
        GithubListRepositories(api_base=github_api),
        GithubCreateIssue(api_base=github_api),
        GoogleCalendarUpcoming(api_base=google_api),
        MicrosoftMe(api_base=graph_api),
        MicrosoftMailSubjects(api_base=graph_api),
    ]
    if notes_api is not None:
        tools += [NotesList(api_base=notes_api), NotesCreate(api_base=notes_api)]
    builtin = {tool.spec.name for tool in tools}
    for provider, endpoint in oidc_userinfo.items():
        tool = OidcWhoami(provider, endpoint)
        if tool.spec.name in builtin:
            raise ValueError(
                f"OIDC provider {provider!r} would define the tool {tool.spec.name!r}, "
                "which is built in"
            )
        tools.append(tool)
    return tools
