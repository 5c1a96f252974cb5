"""Approval round trip (issue 11): one data-changing tool call, proposed, approved in the
browser and executed once, through the local stack exactly as `make dev` runs it (moto, the
local OIDC provider, the notes API, binder, agent and the edge on 127.0.0.1).

A round is three browser requests through the edge, as the chat page sends them:

1. `POST /app/chat` asking for a note: the offline planner proposes `notes_create`, the agent
   registers the action with the binder (`approval_required`);
2. `POST /oauth2/actions/{id}/approve` with the signed-in session (the approval page's form);
3. `POST /app/chat` with `confirm_action`: the agent reads the action back, gets the token with
   the arguments' hash (approved -> executing), writes the note, records the result.

Baseline, in the same run and stack: a read-only chat turn (`notes_list`: one token request
and one call to the notes API). The report gives the round trip's latency, per step, and its
ratio to the baseline (reported, not a target: a round trip makes about seven DynamoDB calls
through the local moto server, which serializes them, and the baseline none once the token is
cached). The run passes when every round succeeded and wrote exactly one note (the notes API's
write counter). Bounded: ROUNDS rounds, per-request timeouts, one stack start.

Run alone: python bench/approval_bench.py (prints the JSON report).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devstack import running  # noqa: E402

ROUNDS = 12
WARMUP = 2
TIMEOUT_S = 30.0


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _connect_notes(browser: httpx2.Client, plain: httpx2.Client, sub: str) -> None:
    """The consent flow for the notes provider, once, as the browser walks it."""
    asked = browser.post("/app/chat", json={"message": "what's on my notes", "history": []})
    (needed,) = [a for a in asked.json()["authorization_required"] if a["provider"] == "notes"]
    to_provider = browser.get(needed["authorization_url"])
    consented = plain.post(to_provider.headers["location"], data={"sub": sub})
    done = browser.get(consented.headers["location"])
    if done.status_code != 200:
        raise RuntimeError(f"consent for notes failed: {done.status_code}")


def _round(browser: httpx2.Client, index: int) -> dict[str, float]:
    t0 = time.perf_counter()
    proposed = browser.post(
        "/app/chat", json={"message": f'create a note "bench {index}": hello', "history": []}
    )
    approval = proposed.json().get("approval_required")
    if proposed.status_code != 200 or not approval:
        raise RuntimeError(f"round {index}: no approval_required ({proposed.status_code})")
    t1 = time.perf_counter()
    approved = browser.post(f"{urlsplit(approval['approval_url']).path}/approve")
    if approved.status_code not in (200, 303):
        raise RuntimeError(f"round {index}: approve answered {approved.status_code}")
    t2 = time.perf_counter()
    executed = browser.post("/app/chat", json={"confirm_action": approval["action_id"]})
    result = executed.json().get("action_result") or {}
    if executed.status_code != 200 or result.get("status") != "succeeded":
        raise RuntimeError(f"round {index}: the confirmed action did not succeed: {result}")
    t3 = time.perf_counter()
    return {"propose": t1 - t0, "approve": t2 - t1, "execute": t3 - t2, "total": t3 - t0}


def _read_turn(browser: httpx2.Client) -> float:
    start = time.perf_counter()
    answer = browser.post("/app/chat", json={"message": "what's on my notes", "history": []})
    if answer.status_code != 200 or answer.json()["authorization_required"]:
        raise RuntimeError(f"the read turn failed: {answer.status_code}")
    return time.perf_counter() - start


def run(rounds: int = ROUNDS) -> dict[str, Any]:
    from devstack.__main__ import PROVIDER, USERS

    with tempfile.TemporaryDirectory(prefix="approval-bench-") as tmp:
        # Without the local MCP server: its Connect item would be in every turn's answer, and
        # this measures the notes API's approval round trip (bench/mcp_bench.py measures MCP).
        stack = running.start(("moto-port", "notes-port"), Path(tmp), timeout=120, mcp=False)
        urls = stack.urls
        try:
            edge = stack.edge
            browser = httpx2.Client(
                base_url=edge,
                timeout=TIMEOUT_S,
                trust_env=False,
                follow_redirects=False,
                headers={"origin": edge},  # a same-origin form post, as the page sends it
            )
            plain = httpx2.Client(timeout=TIMEOUT_S, trust_env=False, follow_redirects=False)
            with browser, plain:
                login = {"username": "alice", "password": USERS["alice"], "next": "/"}
                if browser.post("/_edge/login", data=login).status_code != 303:
                    raise RuntimeError("sign-in at the edge failed")
                _connect_notes(browser, plain, f"alice@{PROVIDER}.example")
                before = plain.get(f"{urls['notes-port']}/_test/writes").json()["writes"]
                for index in range(WARMUP):
                    _round(browser, -1 - index)
                    _read_turn(browser)
                samples = []
                reads = []
                for index in range(rounds):  # alternate, so host noise hits both alike
                    samples.append(_round(browser, index))
                    reads.append(_read_turn(browser))
                after = plain.get(f"{urls['notes-port']}/_test/writes").json()["writes"]
        finally:
            stack.stop()
    totals = [s["total"] for s in samples]
    read_median = statistics.median(reads)
    ratio = round(statistics.median(totals) / read_median, 2)
    writes = after - before
    return {
        "description": "proposal -> approval -> execution of notes_create through the local "
        "stack, against a read-only chat turn in the same run",
        "rounds": rounds,
        "round_trip_ms": {
            "p50": _ms(statistics.median(totals)),
            "p99": _ms(_percentile(totals, 99)),
            **{
                phase: _ms(statistics.median(s[phase] for s in samples))
                for phase in ("propose", "approve", "execute")
            },
        },
        "read_turn_ms_p50": _ms(read_median),
        "ratio": ratio,
        "writes": writes,
        "writes_expected": rounds + WARMUP,
        "pass": writes == rounds + WARMUP,
    }


if __name__ == "__main__":
    report = run()
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["pass"] else 1)
