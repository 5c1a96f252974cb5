"""MCP benchmarks (issue 13), on loopback, against the local MCP server (devstack.mcp_server,
the official SDK's Streamable HTTP server, a real process):

- tools/list and tools/call overhead through the agent: a chat turn ("what's on my MCP
  notes?") for a user the agent has not listed the server for (token from the binder,
  initialize + tools/list, then initialize + tools/call) and for a user whose listing is cached
  (initialize + tools/call only), each against the same operation made directly with the SDK
  (a new session each time, as the agent opens one per operation) in the same run;
- the agent's resident memory after 1,000 chat turns that each call an MCP tool (target under
  150 MB), and its start time with AGENT_MCP_SERVERS set (median of 3; target under 1.5 s),
  with the time from process start to its first MCP answer beside it (the agent imports the
  MCP SDK in the background once it serves, so the two differ by about that import).

The MCP server's authorization server, Cognito's JWKS and the binder's token endpoint are one
in-process fake (the binder hands out an RFC 9068 token minted for the MCP server), so what is
measured is the agent and the MCP round trips, not consent.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import psutil
from agent_bench import ISSUER, MAX_RSS_MB, MAX_START_SECONDS, _serve_fakes, _start_agent
from joserfc import jwt
from joserfc.jwk import RSAKey
from loadgen import build_request, run_load
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack import mcp_server, procs, services  # noqa: E402

BURST = 1000
ROUNDS = 30  # sequential operations per measure (p50 reported)
SERVER = "mcpbench"
QUESTION = "What's on my MCP notes?"


def _mcp_token(key: RSAKey, issuer: str, mcp_url: str, sub: str) -> str:
    """An RFC 9068 access token for the MCP server, as its authorization server would issue."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": sub,
        "aud": mcp_url,
        "client_id": "bench",
        "scope": mcp_server.SCOPE,
        "iat": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode({"alg": "RS256", "kid": "bench", "typ": "at+jwt"}, claims, key)


def _fakes(key: RSAKey, issuer: str, mcp_url: str) -> Starlette:
    """Cognito's JWKS, the MCP authorization server's metadata and JWKS (one key for both),
    and the binder's token endpoint (a fresh MCP access token per request)."""

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [key.as_dict(private=False)]})

    async def metadata(request: Request) -> JSONResponse:
        return JSONResponse({"issuer": issuer, "jwks_uri": f"{issuer}/jwks.json"})

    async def tokens(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "access_token": _mcp_token(key, issuer, mcp_url, "alice@bench"),
                "token_type": "Bearer",
                "expires_at": None,
                "scopes": [mcp_server.SCOPE],
            }
        )

    return Starlette(
        routes=[
            Route("/jwks.json", jwks),
            Route("/.well-known/oauth-authorization-server", metadata),
            Route("/internal/tokens", tokens, methods=["POST"]),
        ]
    )


def _cognito_token(key: RSAKey, sub: str) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": sub,
        "client_id": "bench",
        "token_use": "access",
        "exp": now + 3600,
        "iat": now,
    }
    return jwt.encode({"alg": "RS256", "kid": "bench"}, claims, key)


async def _direct_rounds(url: str, token: str, rounds: int) -> tuple[list[float], list[float]]:
    """tools/list and tools/call with the SDK directly, interleaved, as the agent makes them: a
    new session per operation (initialize, then the request) over one shared connection pool.
    Milliseconds per operation."""
    import mcp_types
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    call = mcp_types.CallToolRequest(
        params=mcp_types.CallToolRequestParams(name="list_notes", arguments={})
    )
    timings: dict[str, list[float]] = {"list": [], "call": []}
    async with httpx2.AsyncHTTPTransport() as transport:
        for index in range(rounds + 1):  # the first round warms up and is not counted
            for operation in ("list", "call"):
                start = time.perf_counter()
                async with (
                    httpx2.AsyncClient(
                        transport=transport,
                        headers={"authorization": f"Bearer {token}"},
                        timeout=10,
                        trust_env=False,
                    ) as http,
                    streamable_http_client(url, http_client=http) as (read, write),
                    ClientSession(read, write) as session,
                ):
                    await session.initialize()
                    if operation == "list":
                        await session.list_tools()
                    else:
                        await session.send_request(call, mcp_types.CallToolResult)
                if index:
                    timings[operation].append((time.perf_counter() - start) * 1000)
    return timings["list"], timings["call"]


def _p50(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def run() -> dict[str, Any]:
    key = RSAKey.generate_key(2048, parameters={"kid": "bench", "use": "sig"})
    mcp_port, fakes_port = procs.free_port(), procs.free_port()
    fakes = f"http://127.0.0.1:{fakes_port}"
    mcp_url = f"http://127.0.0.1:{mcp_port}{mcp_server.PATH}"
    server, thread = _serve_fakes(_fakes(key, fakes, mcp_url), fakes_port)
    env = services.agent_env(
        issuer=ISSUER,
        client_id="bench",
        jwks_url=f"{fakes}/jwks.json",
        port=0,  # each start sets its own
        binder_url=fakes,
        userinfo={},
        AGENT_MCP_SERVERS=json.dumps([{"name": SERVER, "url": mcp_url}]),
    )
    starts: list[float] = []
    first_answers: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        logs = Path(tmp)
        mcp = procs.start(
            "mcp",
            [
                sys.executable,
                "-m",
                "devstack.mcp_server",
                "--port",
                str(mcp_port),
                "--issuer",
                fakes,
            ],
            env={"PATH": "", "PYTHONPATH": str(ROOT)},
            log_dir=logs,
            cwd=ROOT,
        )
        try:
            procs.wait_http(mcp, f"http://127.0.0.1:{mcp_port}/healthz", timeout=30)
            token = _mcp_token(key, fakes, mcp_url, "alice@bench")
            direct_list, direct_call = asyncio.run(_direct_rounds(mcp_url, token, ROUNDS))

            with httpx2.Client(timeout=30, trust_env=False) as client:

                def turn(port: int, sub: str) -> float:
                    headers = {"authorization": f"Bearer {_cognito_token(key, sub)}"}
                    body = {"message": QUESTION, "history": []}
                    chat = f"http://127.0.0.1:{port}/api/chat"
                    start = time.perf_counter()
                    answer = client.post(chat, json=body, headers=headers)
                    elapsed = (time.perf_counter() - start) * 1000
                    reply = answer.json()
                    if answer.status_code != 200 or not reply["reply"].startswith(
                        f"[offline planner] From the MCP server {SERVER}"
                    ):
                        raise RuntimeError(f"unexpected chat answer: {answer.status_code}")
                    return elapsed

                for i in range(3):
                    port = procs.free_port()
                    child, seconds = _start_agent(env, logs, port)
                    started = time.perf_counter() - seconds
                    starts.append(seconds)
                    # The SDK is imported in the background after start: the first MCP answer
                    # from process start says when MCP tools are really usable.
                    turn(port, f"first-{i}")
                    first_answers.append(time.perf_counter() - started)
                    child.stop()
                port = procs.free_port()
                child, _ = _start_agent(env, logs, port)
                body = {"message": QUESTION, "history": []}
                turn(port, "alice")
                listing_turns: list[float] = []
                call_turns: list[float] = []
                for i in range(ROUNDS):
                    # A new user: the listing is not cached (tools/list, then tools/call).
                    listing_turns.append(turn(port, f"user-{i}"))
                    # alice, listed already: tools/call only.
                    call_turns.append(turn(port, "alice"))
            request = build_request(
                "POST",
                port,
                "/api/chat",
                json.dumps(body).encode(),
                {
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {_cognito_token(key, 'alice')}",
                },
            )
            counters = f"http://127.0.0.1:{mcp_port}/_test/requests"
            calls_before = httpx2.get(counters, trust_env=False).json()["tool_calls"]
            result = asyncio.run(
                run_load(port, request, connections=16, seconds=180, max_requests=BURST)
            )
            calls = httpx2.get(counters, trust_env=False).json()["tool_calls"] - calls_before
            rss_mb = psutil.Process(child.process.pid).memory_info().rss / 1024**2
            child.stop()
        finally:
            mcp.stop()
            server.should_exit = True
            thread.join(10)
    start_s = statistics.median(starts)
    list_ratio = round(_p50(listing_turns) / (_p50(direct_list) + _p50(direct_call)), 2)
    call_ratio = round(_p50(call_turns) / _p50(direct_call), 2)
    return {
        "name": "mcp",
        "description": "MCP tools/list and tools/call through the agent vs the SDK directly; "
        "agent RSS after 1,000 MCP tool calls; agent start with AGENT_MCP_SERVERS",
        "rounds": ROUNDS,
        "direct_list_ms_p50": _p50(direct_list),
        "direct_call_ms_p50": _p50(direct_call),
        "agent_turn_listing_ms_p50": _p50(listing_turns),
        "agent_turn_cached_ms_p50": _p50(call_turns),
        "listing_ratio": list_ratio,
        "call_ratio": call_ratio,
        "start_seconds_median": round(start_s, 3),
        "start_seconds_all": [round(s, 3) for s in starts],
        "start_target_seconds": MAX_START_SECONDS,
        "first_mcp_answer_seconds_median": round(statistics.median(first_answers), 3),
        "burst": result.summary(),
        "burst_statuses": sorted(result.statuses),
        "mcp_tool_calls_in_burst": calls,
        "rss_mb": round(rss_mb, 1),
        "rss_target_mb": MAX_RSS_MB,
        "pass": start_s < MAX_START_SECONDS
        and rss_mb < MAX_RSS_MB
        and result.requests == BURST
        and set(result.statuses) == {200}
        and calls == BURST,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
