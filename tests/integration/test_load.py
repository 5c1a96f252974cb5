"""The load and concurrency run of bench/load.py (issue 6), small: 12 users, two binder
processes, one moto server, a provider that rotates refresh tokens, every user's token crossing
expiry once. Every invariant of the full run must hold here too.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import load  # noqa: E402

USERS = 12
REQUESTS_PER_USER = 4


def test_load_run_holds_every_invariant() -> None:
    report = load.run(users=USERS, requests_per_user=REQUESTS_PER_USER, time_limit_s=90)
    context = {k: v for k, v in report.items() if k != "log_tails"}

    assert not report["timed_out"], context
    assert report["flows_completed"] == USERS, context
    assert report["token_requests"] == 2 * USERS * REQUESTS_PER_USER, context
    assert report["token_requests_ok"] == report["token_requests"], context
    assert report["five_xx"] == 0, context
    assert report["transport_errors"] == 0, context
    assert report["failures"] == {}, context
    # One expiry crossed per user: exactly one upstream refresh each, none replayed.
    assert report["upstream_refreshes_per_user"] == {"1": USERS}, context
    assert report["refreshes_for_unknown_subjects"] == 0, context
    assert report["refreshes_during_phase1"] == 0, context
    assert report["replayed_refresh_tokens"] == 0, context
    # Two tokens per user (before and after the refresh), each the asking user's.
    assert report["tokens_checked"] == 2 * USERS, context
    assert report["tokens_unverified"] == 0, context
    assert report["cross_user_tokens"] == 0, context
    assert report["pre_expiry_tokens_served_after_expiry"] == 0, context
    assert report["vault_entries"] == USERS, context
    assert report["lost_or_corrupted_vault_entries"] == 0, context
    assert report["latency_ms"]["p99"] is not None, context
    assert report["pass"] is True, report
