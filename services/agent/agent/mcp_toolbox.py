"""Which MCP tools one user has this turn: each configured server listed with that user's token.

For each server of AGENT_MCP_SERVERS (concurrently): a token for the server's binder provider
(``POST /internal/tokens``; ``consent_required`` is handed back for the chat's
``authorization_required`` item), then ``initialize`` + ``tools/list`` (mcp_client.py), then
the listing adapted (tools/mcp.py). The adapted tools are kept per (user, server) for ``ttl``
seconds in a bounded LRU cache, so a conversation lists each server about once a minute.
Failures are not kept per user, with one exception: a server that could not be reached or did
not answer in time, or whose discovery the binder failed (or the binder did not answer), is
left alone by every user's turns for ``DOWN_SECONDS``, so that a hung server costs one timeout
per window rather than one per turn (a 401, a 5xx, a binder refusal, a refused refresh or a
429 depends on the user's token or the request, so one user's failure never hides a server
from the others: ``_server_wide``).
Every failure becomes a notice for the reply, never an exception: a server that is down costs
the user its tools for that turn, nothing else.

The MCP SDK is imported in a worker thread (``start_loading`` at the agent's start, and before
the first listing if that has not finished), never on the event loop: it takes about a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import anyio

from agent.binder_client import BinderClient, BinderRefused, BinderUnavailable, ConsentNeeded
from agent.mcp_client import McpClient, McpFailure, load_sdk
from agent.settings import McpServer
from agent.text import clean_untrusted
from agent.tools.mcp import McpTool, adapt_listing

logger = logging.getLogger("agent.mcp")

LISTING_TTL_SECONDS = 60.0
MAX_CACHED_LISTINGS = 1024
DOWN_SECONDS = 15.0
_DOWN_KINDS = frozenset({"unreachable", "timeout"})


@dataclass
class Discovery:
    """This turn's MCP tools, the consents they wait for, and what the user should be told."""

    tools: list[McpTool] = field(default_factory=list)
    consent: list[ConsentNeeded] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Entry:
    stored_at: float
    tools: tuple[McpTool, ...]
    notices: tuple[str, ...]


def _server_wide(exc: BinderUnavailable) -> bool:
    """Whether the binder's failure is the same for every user of this server: its discovery
    of the server failed (`provider_discovery`), or the binder did not answer at all. A 429 is
    this user's rate limit, and a refresh the provider refused or one still running (502
    `provider_*`, 503 `refresh_busy`) is this user's token: those never hide the server from
    the others."""
    if exc.reason is not None:
        return exc.reason == "provider_discovery"
    return exc.code != "binder_429"


class McpToolbox:
    def __init__(
        self,
        *,
        servers: Sequence[McpServer],
        binder: BinderClient,
        client: McpClient,
        reserved: Collection[str] = (),
        ttl: float = LISTING_TTL_SECONDS,
        max_entries: int = MAX_CACHED_LISTINGS,
        down_seconds: float = DOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``reserved``: the built-in tools' names, which no MCP tool may take."""
        self.servers = tuple(servers)
        self._binder = binder
        self._client = client
        self._reserved = frozenset(reserved)
        self._ttl = ttl
        self._down_seconds = down_seconds
        # server name -> (when it failed, the notice): servers that did not answer (see doc).
        self._down: dict[str, tuple[float, str]] = {}
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._sdk_loaded = threading.Event()

    def _load_sdk(self) -> None:
        load_sdk()
        self._sdk_loaded.set()

    def start_loading(self) -> None:
        """Import the SDK in the background; the agent serves meanwhile."""
        if not self._sdk_loaded.is_set():
            threading.Thread(target=self._background_load, name="mcp-sdk", daemon=True).start()

    def _background_load(self) -> None:
        try:
            self._load_sdk()
        except Exception as exc:  # retried (and reported per server) at the first listing
            logger.warning("mcp sdk import failed", extra={"fields": {"error": type(exc).__name__}})

    def server(self, provider: str) -> McpServer | None:
        return next((s for s in self.servers if s.name == provider), None)

    async def discover(self, *, user_hash: str, user_token: str, request_id: str) -> Discovery:
        """Every server's tools for this user (see the module doc); never raises."""
        found: dict[str, tuple[Sequence[McpTool], Sequence[str], ConsentNeeded | None]] = {}
        if not self._sdk_loaded.is_set():
            try:
                await anyio.to_thread.run_sync(self._load_sdk)
            except Exception as exc:  # a broken image: every server's tools, not the turn
                logger.warning(
                    "mcp sdk import failed", extra={"fields": {"error": type(exc).__name__}}
                )
                return Discovery(
                    notices=[
                        f"The tools of the MCP server {server.name} are unavailable right now."
                        for server in self.servers
                    ]
                )

        async def one(server: McpServer) -> None:
            try:
                found[server.name] = await self._server(server, user_hash, user_token, request_id)
            except Exception as exc:  # a bug must cost this server's tools, not the turn
                logger.warning(
                    "mcp listing failed unexpectedly",
                    extra={"fields": {"server": server.name, "error": type(exc).__name__}},
                )
                notice = f"The tools of the MCP server {server.name} are unavailable right now."
                found[server.name] = ((), (notice,), None)

        async with anyio.create_task_group() as group:
            for server in self.servers:
                group.start_soon(one, server)
        discovery = Discovery()
        names: set[str] = set()
        for server in self.servers:  # configuration order, whatever finished first
            tools, notices, consent = found[server.name]
            discovery.notices.extend(notices)
            if consent is not None:
                discovery.consent.append(consent)
            for tool in tools:
                if tool.spec.name in names:  # two servers' names met after sanitising
                    discovery.notices.append(
                        f"The MCP tool {tool.spec.name} of {server.name} was left out: another "
                        "server has a tool of that name."
                    )
                    continue
                names.add(tool.spec.name)
                discovery.tools.append(tool)
        return discovery

    async def _server(
        self, server: McpServer, user_hash: str, user_token: str, request_id: str
    ) -> tuple[Sequence[McpTool], Sequence[str], ConsentNeeded | None]:
        key = (user_hash, server.name)
        now = self._clock()
        entry = self._cache.get(key)
        if entry is not None and now - entry.stored_at < self._ttl:
            self._cache.move_to_end(key)
            return entry.tools, entry.notices, None
        down = self._down.get(server.name)
        if down is not None and now - down[0] < self._down_seconds:
            return (), (down[1],), None
        try:
            grant = await self._binder.token(
                user_token, provider=server.name, scopes=server.scopes, request_id=request_id
            )
        except (BinderUnavailable, BinderRefused) as exc:
            logger.warning(
                "mcp token refused",
                extra={"fields": {"server": server.name, "error": str(exc)[:64]}},
            )
            notice = f"The token service did not give a token for {server.name}."
            if isinstance(exc, BinderUnavailable) and _server_wide(exc):
                self._down[server.name] = (self._clock(), notice)
            return (), (notice,), None
        if isinstance(grant, ConsentNeeded):
            notice = (
                f"To use the tools of the MCP server {server.name}, connect it first "
                "(the Connect button), then ask again."
            )
            return (), (notice,), grant
        try:
            listing = await self._client.list_tools(server, grant.access_token)
        except McpFailure as exc:
            # The message may carry the server's own words (mcp_client._classify): untrusted.
            message = clean_untrusted(exc.message, 400)
            notice = f"{message} Its tools are not available in this reply."
            if exc.kind in _DOWN_KINDS:
                self._down[server.name] = (self._clock(), notice)
            return (), (notice,), None
        self._down.pop(server.name, None)
        tools, notices = adapt_listing(
            server,
            listing.tools,
            self._client.call_tool,
            reserved=self._reserved,
            complete=listing.complete,
        )
        self._cache[key] = _Entry(now, tuple(tools), tuple(notices))
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return tools, notices, None
