"""The agent's MCP client: one short Streamable HTTP session per operation, with one token.

Built on the official SDK (``mcp.client.streamable_http`` + ``ClientSession``), over an httpx2
client made for that one session, so what it sends is under this module's control:

- the only credential on the wire is the token the caller passes (the user's token for *this*
  server, from the binder): a fresh client per session carries it as its Authorization header,
  with an empty cookie jar; the SDK follows redirects only within the server's origin;
- every response body is counted as it is read (``_CappedTransport``), and a body past
  ``max_response_bytes`` aborts the read: the SDK reads JSON answers whole (``aread``), so
  without this a server could make the agent buffer 50 MB. Compressed answers are refused
  (``Accept-Encoding: identity`` is asked for), since decoding happens after the count;
- every operation has one overall deadline (``anyio.fail_after``) besides httpx2's timeouts;
- every failure becomes an ``McpFailure`` with a fixed-text message for the user (kind:
  unreachable, timeout, too_large, unauthorized, server_error, protocol_error), never an
  SDK exception, a stack trace or the token.

The SDK is imported on first use, not with this module: importing it costs about a second of
CPU, which would double the agent's start (bench/mcp_bench.py). ``load_sdk`` imports it; the
agent runs it in a worker thread at start and before its first listing (mcp_toolbox.py), so
the event loop never waits for the import.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import httpx2

from agent.settings import McpServer
from agent.text import redact
from agent.tools.base import upstream_status

if TYPE_CHECKING:
    import mcp_types
    from mcp.client.session import ClientSession

logger = logging.getLogger("agent.mcp")

USER_AGENT: Final = "secure-agents-on-ecs-agent/0.1 (mcp)"
MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024  # one HTTP answer of an MCP server, as read
MAX_LIST_PAGES: Final = 8  # tools/list pages read per listing
MAX_LISTED_TOOLS: Final = 1024  # tools read per listing (more are counted as "more")
_T = TypeVar("_T")


def load_sdk() -> None:
    """Import the MCP SDK (idempotent; thread-safe through the import lock)."""
    import mcp.client.session
    import mcp.client.streamable_http
    import mcp.shared.exceptions  # noqa: F401
    import mcp_types  # noqa: F401


class McpFailure(Exception):
    """An MCP operation failed; ``message`` is safe to show the user and the model."""

    def __init__(self, kind: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status


class ResponseTooLarge(httpx2.StreamError):
    """Raised by the capped stream: the SDK turns a StreamError into a JSON-RPC error."""


@dataclass
class _Record:
    """What the transport saw during one session (the SDK's own errors say less)."""

    statuses: list[int] = field(default_factory=list)
    failure: str | None = None  # unreachable | timeout | too_large | compressed


class _CappedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, limit: int, record: _Record) -> None:
        self._inner = inner
        self._limit = limit
        self._record = record

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self._inner:
            size += len(chunk)
            if size > self._limit:
                self._record.failure = "too_large"
                raise ResponseTooLarge("the MCP server's answer is too large")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _CappedTransport(httpx2.AsyncBaseTransport):
    """Counts and caps every response body; records statuses and transport failures.

    It wraps the agent's shared transport and never closes it (its owner does)."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, *, limit: int, record: _Record) -> None:
        self._inner = inner
        self._limit = limit
        self._record = record

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except httpx2.TimeoutException:
            self._record.failure = "timeout"
            raise
        except httpx2.TransportError:
            self._record.failure = "unreachable"
            raise
        self._record.statuses.append(response.status_code)
        declared = response.headers.get("content-length", "")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        problem = None
        if declared.isdigit() and int(declared) > self._limit:
            problem = "too_large"
        elif encoding not in ("", "identity"):
            problem = "compressed"  # decoded after this count: a small body could inflate
        if problem is not None:
            self._record.failure = problem
            await response.aclose()
            raise ResponseTooLarge("the MCP server's answer was refused unread")
        if not isinstance(response.stream, httpx2.AsyncByteStream):
            raise ResponseTooLarge("the transport answered without an async body")
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_CappedStream(response.stream, self._limit, self._record),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        """The shared transport stays open: the agent's lifespan closes it."""


@dataclass(frozen=True, kw_only=True)
class Listing:
    tools: tuple[mcp_types.Tool, ...]
    complete: bool  # False: the server has more tools than were read


class McpClient:
    """Lists and calls one MCP server's tools, one session per operation (see module doc)."""

    def __init__(
        self,
        *,
        transport: httpx2.AsyncBaseTransport,
        timeout: float = 10.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._transport = transport
        self._timeout = timeout
        self._limit = max_response_bytes

    async def list_tools(self, server: McpServer, token: str) -> Listing:
        """``initialize`` then ``tools/list`` (at most MAX_LIST_PAGES pages, MAX_LISTED_TOOLS)."""
        import mcp_types

        async def listing(session: ClientSession) -> Listing:
            tools: list[mcp_types.Tool] = []
            cursor: str | None = None
            for _ in range(MAX_LIST_PAGES):
                params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                page = await session.list_tools(params=params)
                tools.extend(page.tools[: MAX_LISTED_TOOLS - len(tools)])
                cursor = page.next_cursor
                if not cursor or len(tools) >= MAX_LISTED_TOOLS:
                    break
            return Listing(tools=tuple(tools), complete=cursor is None)

        return await self._run(server, token, "tools/list", listing)

    async def call_tool(
        self, server: McpServer, name: str, arguments: dict[str, Any], token: str
    ) -> mcp_types.CallToolResult:
        """``initialize`` then ``tools/call``; a tool-level error comes back with isError.

        Sent with ``send_request``: ``ClientSession.call_tool`` first lists every tool again to
        check structured output against its schema, and the agent uses text content only."""
        import mcp_types

        async def call(session: ClientSession) -> mcp_types.CallToolResult:
            request = mcp_types.CallToolRequest(
                params=mcp_types.CallToolRequestParams(name=name, arguments=arguments)
            )
            return await session.send_request(request, mcp_types.CallToolResult)

        return await self._run(server, token, "tools/call", call)

    # ------------------------------------------------------------------------------ plumbing

    @contextlib.asynccontextmanager
    async def _session(
        self, server: McpServer, token: str, record: _Record
    ) -> AsyncIterator[ClientSession]:
        from mcp.client.session import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        headers = {
            "authorization": f"Bearer {token}",
            "accept-encoding": "identity",
            "user-agent": USER_AGENT,
        }
        transport = _CappedTransport(self._transport, limit=self._limit, record=record)
        async with (
            httpx2.AsyncClient(
                transport=transport,
                headers=headers,
                timeout=self._timeout,
                follow_redirects=False,
                trust_env=False,
            ) as http,
            streamable_http_client(
                server.url, http_client=http, max_sse_event_size=self._limit
            ) as (read, write),
            ClientSession(read, write, read_timeout_seconds=self._timeout) as session,
        ):
            await session.initialize()
            yield session

    async def _run(
        self,
        server: McpServer,
        token: str,
        operation: str,
        body: Callable[[ClientSession], Awaitable[_T]],
    ) -> _T:
        record = _Record()
        try:
            with anyio.fail_after(self._timeout):
                async with self._session(server, token, record) as session:
                    result = await body(session)
        except Exception as exc:  # the SDK's errors arrive wrapped in exception groups
            failure = _classify(server, record, exc, token)
            logger.warning(
                "mcp operation failed",
                extra={
                    "fields": {
                        "server": server.name,
                        "operation": operation,
                        "kind": failure.kind,
                        "http_status": failure.status,
                    }
                },
            )
            raise failure from None
        upstream_status.set(record.statuses[-1] if record.statuses else None)
        return result


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, bounded."""
    found: list[BaseException] = []
    stack = [exc]
    while stack and len(found) < 32:
        current = stack.pop()
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        else:
            found.append(current)
    return found


def _classify(server: McpServer, record: _Record, exc: Exception, token: str) -> McpFailure:
    """A fixed-text failure: the transport's record first, then the SDK's exception."""
    from mcp.shared.exceptions import MCPError

    name = server.name
    leaves = _leaves(exc)
    if record.failure in ("too_large", "compressed"):
        return McpFailure(
            "too_large",
            f"The MCP server {name} sent an answer larger than the agent accepts "
            f"({MAX_RESPONSE_BYTES // (1024 * 1024)} MB) or compressed; it was not read.",
        )
    if record.failure == "timeout" or any(isinstance(e, TimeoutError) for e in leaves):
        return McpFailure("timeout", f"The MCP server {name} did not answer in time.")
    if record.failure == "unreachable":
        return McpFailure("unreachable", f"The MCP server {name} could not be reached.")
    refused = [s for s in record.statuses if s in (401, 403)]
    if refused:
        return McpFailure(
            "unauthorized",
            f"The MCP server {name} refused the access (HTTP {refused[0]}): the connection may "
            "have expired or been revoked, so you may need to connect it again.",
            status=refused[0],
        )
    failed = [s for s in record.statuses if s >= 500]
    if failed:
        return McpFailure(
            "server_error",
            f"The MCP server {name} is failing (HTTP {failed[0]}); try again later.",
            status=failed[0],
        )
    errors = [e for e in leaves if isinstance(e, MCPError)]
    detail = ""
    if errors:
        # The server's own words are untrusted: the caller cleans them (tools/mcp.py); here
        # they are only cut short and the token is taken out.
        detail = ": " + redact(errors[0].error.message[:200], token)
    return McpFailure(
        "protocol_error",
        f"The MCP server {name} did not answer as an MCP server should{detail}",
        status=record.statuses[-1] if record.statuses else None,
    )
