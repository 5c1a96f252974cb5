"""Agent benchmarks (issue 4), on loopback:

- start time: from process start to `/healthz` answering (median of 3; target under 1.5 s);
- resident memory after a burst of 1,000 chat requests with the offline planner (target under
  150 MB). Each request runs the whole path: JWT verification, the planner, a binder call for a
  delegated token and the provider's userinfo endpoint, against small loopback fakes.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from loadgen import build_request, run_load
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack import procs, services  # noqa: E402

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_BENCH"
MAX_START_SECONDS = 1.5
MAX_RSS_MB = 150
BURST = 1000


def _fakes(key: RSAKey) -> Starlette:
    """Cognito's JWKS, the binder's token endpoint and a provider's userinfo, in one app."""

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [key.as_dict(private=False)]})

    async def tokens(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "access_token": "bench-provider-token",
                "token_type": "Bearer",
                "expires_at": None,
                "scopes": ["openid", "profile"],
            }
        )

    async def userinfo(request: Request) -> JSONResponse:
        return JSONResponse({"sub": "alice@bench", "name": "Alice", "email": "a@bench"})

    return Starlette(
        routes=[
            Route("/jwks.json", jwks),
            Route("/internal/tokens", tokens, methods=["POST"]),
            Route("/userinfo", userinfo),
        ]
    )


def _serve_fakes(app: Starlette, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    return server, thread


def _start_agent(env: dict[str, str], logs: Path, port: int) -> tuple[procs.Child, float]:
    start = time.perf_counter()
    child = procs.start(
        "agent",
        [sys.executable, "-m", "agent"],
        env={**env, "PORT": str(port)},
        log_dir=logs,
        cwd=ROOT,
    )
    import urllib.request

    url = f"http://127.0.0.1:{port}/healthz"
    while True:
        if not child.alive():
            raise RuntimeError(f"agent exited: {child.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return child, time.perf_counter() - start
        except OSError:
            if time.perf_counter() - start > 30:
                raise RuntimeError("agent did not start in 30 s") from None
            time.sleep(0.005)


def run() -> dict[str, Any]:
    key = RSAKey.generate_key(2048, parameters={"kid": "bench", "use": "sig"})
    fakes_port = procs.free_port()
    server, thread = _serve_fakes(_fakes(key), fakes_port)
    fakes = f"http://127.0.0.1:{fakes_port}"
    now = int(time.time())
    token = jwt.encode(
        {"alg": "RS256", "kid": "bench"},
        {
            "iss": ISSUER,
            "sub": "alice",
            "client_id": "bench",
            "token_use": "access",
            "exp": now + 3600,
            "iat": now,
        },
        key,
    )
    env = services.agent_env(
        issuer=ISSUER,
        client_id="bench",
        jwks_url=f"{fakes}/jwks.json",
        port=0,  # each start sets its own
        binder_url=fakes,
        userinfo={"bench": f"{fakes}/userinfo"},
    )
    starts: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        try:
            for _ in range(3):
                child, seconds = _start_agent(env, Path(tmp), procs.free_port())
                starts.append(seconds)
                child.stop()
            port = procs.free_port()
            child, _ = _start_agent(env, Path(tmp), port)
            body = json.dumps({"message": "who am I on bench?", "history": []}).encode()
            request = build_request(
                "POST",
                port,
                "/api/chat",
                body,
                {
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {token}",
                },
            )
            result = asyncio.run(
                run_load(port, request, connections=16, seconds=120, max_requests=BURST)
            )
            rss_mb = psutil.Process(child.process.pid).memory_info().rss / 1024**2
            child.stop()
        finally:
            server.should_exit = True
            thread.join(10)
    start_s = statistics.median(starts)
    return {
        "name": "agent",
        "description": "agent start to /healthz; RSS after 1,000 offline-planner chat requests",
        "start_seconds_median": round(start_s, 3),
        "start_seconds_all": [round(s, 3) for s in starts],
        "start_target_seconds": MAX_START_SECONDS,
        "burst": result.summary(),
        "burst_statuses": sorted(result.statuses),
        "rss_mb": round(rss_mb, 1),
        "rss_target_mb": MAX_RSS_MB,
        "pass": start_s < MAX_START_SECONDS
        and rss_mb < MAX_RSS_MB
        and result.requests == BURST
        and set(result.statuses) == {200},
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
