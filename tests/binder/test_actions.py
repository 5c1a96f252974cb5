"""Approval-bound actions: what an attacker (a prompt-injected agent, another signed-in user, a
cross-site page) would try against proposal, approval, execution and the recorded outcome.

Names follow the threats, so docs/threat-model.md can point at them.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import re
import time
from html import escape
from pathlib import Path
from typing import Any

import anyio
import boto3
import httpx2
import pytest
import rfc8785

from binder.actions import MAX_ARGUMENTS_BYTES
from svc_common.jsonlog import JsonFormatter, quiet_third_party
from tests.binder.conftest import BASE, INTERNAL, PUBLIC, REGION, Cognito, Harness, running_binder

ROOT = Path(__file__).resolve().parents[2]
ARGS: dict[str, Any] = {"repo": "acme/widgets", "title": "Fix the build", "body": "It fails."}
NO_ACTION = {"error": "not_found", "message": "no such action"}


# -- helpers: the agent's calls (bearer, internal port) and the browser's (ALB header) ----------


def propose(
    binder: Harness,
    token: str,
    arguments: Any = None,
    **fields: Any,
) -> httpx2.Response:
    body = {
        "provider": "fake",
        "tool": "create_issue",
        "arguments": ARGS if arguments is None else arguments,
        "turn_id": "turn-1",
        **fields,
    }
    return binder.client.post(
        f"{INTERNAL}/internal/actions", json=body, headers={"authorization": f"Bearer {token}"}
    )


def proposed(binder: Harness, token: str, arguments: Any = None) -> dict[str, Any]:
    response = propose(binder, token, arguments)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def internal(
    binder: Harness, token: str, method: str, path: str, body: Any = None
) -> httpx2.Response:
    return binder.client.request(
        method,
        f"{INTERNAL}/internal/actions{path}",
        json=body,
        headers={"authorization": f"Bearer {token}"},
    )


def action_token(
    binder: Harness, token: str, action: dict[str, Any], sha: str | None = None
) -> httpx2.Response:
    return internal(
        binder,
        token,
        "POST",
        f"/{action['action_id']}/token",
        {"arguments_sha256": sha or action["arguments_sha256"]},
    )


def record(binder: Harness, token: str, action_id: str, **body: Any) -> httpx2.Response:
    outcome = {"status": "succeeded", "upstream_status": 201, "summary": "created #7", **body}
    return internal(binder, token, "POST", f"/{action_id}/result", outcome)


def status_of(binder: Harness, token: str, action_id: str) -> str:
    response = internal(binder, token, "GET", f"/{action_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def browser(
    binder: Harness,
    token: str | None,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    follow: bool = False,
) -> httpx2.Response:
    sent = {"origin": BASE} if method == "POST" else {}
    if token is not None:
        sent["x-amzn-oidc-accesstoken"] = token
    sent.update(headers or {})
    return binder.client.request(method, f"{PUBLIC}{path}", headers=sent, follow_redirects=follow)


def page(binder: Harness, token: str | None, action_id: str, **kwargs: Any) -> httpx2.Response:
    return browser(binder, token, "GET", f"/oauth2/actions/{action_id}", **kwargs)


def approve(binder: Harness, token: str | None, action_id: str, **kwargs: Any) -> httpx2.Response:
    return browser(binder, token, "POST", f"/oauth2/actions/{action_id}/approve", **kwargs)


def deny(binder: Harness, token: str | None, action_id: str, **kwargs: Any) -> httpx2.Response:
    return browser(binder, token, "POST", f"/oauth2/actions/{action_id}/deny", **kwargs)


def approved(binder: Harness, token: str, arguments: Any = None) -> dict[str, Any]:
    action = proposed(binder, token, arguments)
    response = approve(binder, token, action["action_id"])
    assert response.status_code == 303, response.text
    return action


def expire(action_id: str) -> None:
    """Move the action's deadline into the past (DynamoDB's TTL attribute stays ahead)."""
    boto3.client("dynamodb", region_name=REGION).update_item(
        TableName="sessions",
        Key={"pk": {"S": f"action#{action_id}"}},
        UpdateExpression="SET deadline = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [dict(getattr(r, "fields", {})) for r in caplog.records if r.name == "binder.audit"]


def refused(response: httpx2.Response, reason: str) -> dict[str, Any]:
    assert response.status_code == 409, response.text
    answer: dict[str, Any] = response.json()
    assert answer["error"] == "action_refused"
    assert answer["reason"] == reason
    return answer


# -- proposal -----------------------------------------------------------------------------------


def test_a_proposal_is_stored_pending_with_the_hash_of_its_canonical_arguments(
    binder: Harness,
) -> None:
    alice = binder.cognito.token("alice")
    arguments: dict[str, Any] = {"title": "Ünïcode", "n": 1.0, "nested": {"b": [1, 2], "a": None}}
    before = int(time.time())
    action = proposed(binder, alice, arguments)
    canonical = rfc8785.dumps(arguments)
    assert action["arguments_sha256"] == hashlib.sha256(canonical).hexdigest()
    assert len(action["action_id"]) >= 32
    assert action["approval_url"] == f"{BASE}/oauth2/actions/{action['action_id']}"
    assert before + 600 <= action["expires_at"] <= int(time.time()) + 600
    stored = internal(binder, alice, "GET", f"/{action['action_id']}").json()
    assert stored == {
        "action_id": action["action_id"],
        "status": "pending",
        "provider": "fake",
        "tool": "create_issue",
        "arguments": json.loads(canonical),
        "arguments_sha256": action["arguments_sha256"],
        "turn_id": "turn-1",
        "expires_at": action["expires_at"],
    }
    # The same arguments in another key order and spacing: the same canonical hash.
    reordered = {"nested": {"a": None, "b": [1, 2]}, "n": 1, "title": "Ünïcode"}
    assert proposed(binder, alice, reordered)["arguments_sha256"] == action["arguments_sha256"]
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName="sessions", Key={"pk": {"S": f"action#{action['action_id']}"}}
    )["Item"]
    assert item["arguments"]["S"] == canonical.decode()
    # Kept a day past the deadline (DynamoDB TTL), so the outcome stays readable.
    assert int(item["expires_at"]["N"]) == action["expires_at"] + 86400


def test_the_whole_round_trip_runs_once_and_reports_its_outcome(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    action = proposed(binder, alice)
    action_id = action["action_id"]
    shown = page(binder, alice, action_id)
    assert shown.status_code == 200
    assert f'action="/oauth2/actions/{action_id}/approve"' in shown.text
    # What the chat page's fetch() does: POST, follow the 303 to the page.
    answer = approve(binder, alice, action_id, follow=True)
    assert answer.status_code == 200
    assert answer.history[0].status_code == 303
    assert answer.history[0].headers["location"] == f"/oauth2/actions/{action_id}"
    assert "Approved." in answer.text
    assert "/approve" not in answer.text
    plain = binder.request_token(alice).json()
    token = action_token(binder, alice, action)
    assert token.status_code == 200, token.text
    assert set(token.json()) == set(plain) == {"access_token", "token_type", "expires_at", "scopes"}
    assert token.headers["cache-control"] == "no-store"
    assert status_of(binder, alice, action_id) == "executing"
    again = refused(action_token(binder, alice, action), "already_executed")
    assert again["status"] == "executing"
    assert "result" not in again
    done = record(binder, alice, action_id)
    assert done.status_code == 200, done.text
    result = done.json()["result"]
    assert done.json() == {"action_id": action_id, "status": "done", "result": result}
    assert result["status"] == "succeeded"
    assert result["upstream_status"] == 201
    # A retried confirmation reads the stored outcome and gets no token.
    retried = refused(action_token(binder, alice, action), "already_executed")
    assert retried["status"] == "done"
    assert retried["result"] == result
    assert internal(binder, alice, "GET", f"/{action_id}").json()["result"] == result
    assert "Done: it succeeded" in page(binder, alice, action_id).text


def test_open_proposals_per_user_are_bounded(aws: dict[str, Any], cognito: Cognito) -> None:
    with running_binder(aws, cognito, MAX_ACTIONS_PER_USER="2") as binder:
        alice, bob = cognito.token("alice"), cognito.token("bob")
        proposed(binder, alice)
        proposed(binder, alice)
        over = propose(binder, alice)
        assert over.status_code == 429, over.text
        assert over.json()["code"] == "too_many_actions"
        assert 0 < int(over.headers["retry-after"]) <= 600
        proposed(binder, bob)  # per user


# -- approval: only the signed-in browser, same origin, its own user ----------------------------


def test_approval_with_a_bearer_token_is_refused(
    binder: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="binder.audit")
    alice = binder.cognito.token("alice")
    action_id = proposed(binder, alice)["action_id"]
    bearer = {"authorization": f"Bearer {alice}"}
    # Only a bearer token (what the agent holds), or a bearer token next to the ALB's header.
    for token in (None, alice):
        for attempt in (approve, deny, page):
            response = attempt(binder, token, action_id, headers=bearer)
            assert response.status_code == 401, response.text
            assert "Approvals come from your browser only" in response.text
    assert status_of(binder, alice, action_id) == "pending"
    reasons = [f.get("reason") for f in audit_lines(caplog) if f["audit"] == "request_rejected"]
    assert reasons.count("bearer_on_approval_route") == 6
    # And no identity at all.
    assert approve(binder, None, action_id).status_code == 401
    assert status_of(binder, alice, action_id) == "pending"


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null", "sec-fetch-site": "cross-site"},
        {"origin": "https://agents.example.com.evil.example"},
        {"origin": "", "sec-fetch-site": "same-site"},
    ],
    ids=["foreign", "null-cross-site", "lookalike", "same-site"],
)
def test_approval_from_a_foreign_origin_is_refused(
    binder: Harness, headers: dict[str, str]
) -> None:
    alice = binder.cognito.token("alice")
    action_id = proposed(binder, alice)["action_id"]
    for attempt in (approve, deny):
        response = attempt(binder, alice, action_id, headers=headers)
        assert response.status_code == 403, response.text
    assert status_of(binder, alice, action_id) == "pending"
    # The same-origin answers a browser gives are accepted.
    same = {"origin": "null", "sec-fetch-site": "same-origin"}
    assert approve(binder, alice, action_id, headers=same).status_code == 303


def test_another_user_opening_the_approval_page_kills_the_action(
    binder: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="binder.audit")
    alice, mallory = binder.cognito.token("alice"), binder.cognito.token("mallory")
    binder.connect(alice)
    action = proposed(binder, alice)
    forwarded = page(binder, mallory, action["action_id"])
    assert forwarded.status_code == 403
    assert "belongs to someone else" in forwarded.text
    assert "acme/widgets" not in forwarded.text  # nothing of the action is shown
    # Dead for both: the owner can no longer approve, the agent can no longer run it.
    assert status_of(binder, alice, action["action_id"]) == "denied"
    assert approve(binder, alice, action["action_id"]).status_code == 409
    refused(action_token(binder, alice, action), "denied")
    lines = audit_lines(caplog)
    rejected = [f for f in lines if f["audit"] == "binding_rejected"]
    assert rejected
    assert rejected[0]["reason"] == "action_by_other_user"
    assert rejected[0]["action_id"] == action["action_id"]
    assert any(
        f["audit"] == "action_denied" and f["reason"] == "action_by_other_user" for f in lines
    )


def test_another_user_posting_an_approval_kills_the_action(binder: Harness) -> None:
    alice, mallory = binder.cognito.token("alice"), binder.cognito.token("mallory")
    action = approved(binder, alice)  # even after the owner approved it
    assert approve(binder, mallory, action["action_id"]).status_code == 403
    assert status_of(binder, alice, action["action_id"]) == "denied"
    other = proposed(binder, alice)
    assert deny(binder, mallory, other["action_id"]).status_code == 403
    assert status_of(binder, alice, other["action_id"]) == "denied"


def test_unknown_and_foreign_action_ids_are_the_same_404(binder: Harness) -> None:
    alice, bob = binder.cognito.token("alice"), binder.cognito.token("bob")
    action = approved(binder, alice)
    unknown = {**action, "action_id": "A" * 43}
    for probe in (unknown, {**action, "action_id": "short"}, action):
        for response in (
            internal(binder, bob, "GET", f"/{probe['action_id']}"),
            action_token(binder, bob, probe),
            record(binder, bob, probe["action_id"]),
        ):
            assert response.status_code == 404, response.text
            assert response.json() == NO_ACTION
    assert status_of(binder, alice, action["action_id"]) == "approved"  # bob changed nothing
    assert page(binder, bob, "A" * 43).status_code == 404
    assert page(binder, bob, "not-an-id").status_code == 404


# -- execution: once, approved, unexpired, these arguments ---------------------------------------


@pytest.mark.usefixtures("atomic_dynamodb")
def test_concurrent_token_calls_get_exactly_one_token(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    action = approved(binder, alice)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: action_token(binder, alice, action), range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 7, [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["reason"] == "already_executed"
            assert "access_token" not in answer.text


def test_changed_arguments_are_refused(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    action = approved(binder, alice)
    changed = {**ARGS, "repo": "acme/public-mirror"}
    other_sha = hashlib.sha256(rfc8785.dumps(changed)).hexdigest()
    answer = refused(action_token(binder, alice, action, other_sha), "arguments_changed")
    assert "access_token" not in answer
    assert status_of(binder, alice, action["action_id"]) == "approved"
    assert action_token(binder, alice, action).status_code == 200


def test_an_action_that_is_not_approved_cannot_run(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    action = proposed(binder, alice)
    refused(action_token(binder, alice, action), "not_approved")
    assert deny(binder, alice, action["action_id"]).status_code == 303
    refused(action_token(binder, alice, action), "denied")
    assert approve(binder, alice, action["action_id"]).status_code == 409
    assert status_of(binder, alice, action["action_id"]) == "denied"
    # Denying an approved action before it runs withdraws the approval.
    second = approved(binder, alice)
    assert deny(binder, alice, second["action_id"]).status_code == 303
    refused(action_token(binder, alice, second), "denied")
    # Once it runs, it can no longer be denied.
    third = approved(binder, alice)
    assert action_token(binder, alice, third).status_code == 200
    assert deny(binder, alice, third["action_id"]).status_code == 409
    assert status_of(binder, alice, third["action_id"]) == "executing"


def test_an_action_not_approved_within_its_expiry_cannot_run(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    late = proposed(binder, alice)
    expire(late["action_id"])
    shown = page(binder, alice, late["action_id"])
    assert shown.status_code == 410
    assert "Expired." in shown.text
    assert "/approve" not in shown.text
    assert approve(binder, alice, late["action_id"]).status_code == 410
    assert deny(binder, alice, late["action_id"]).status_code == 410
    assert status_of(binder, alice, late["action_id"]) == "expired"
    refused(action_token(binder, alice, late), "expired")
    # Approved in time, but not run in time.
    slow = approved(binder, alice)
    expire(slow["action_id"])
    refused(action_token(binder, alice, slow), "expired")
    assert status_of(binder, alice, slow["action_id"]) == "expired"


def test_a_short_action_ttl_setting_is_honoured(aws: dict[str, Any], cognito: Cognito) -> None:
    with running_binder(aws, cognito, ACTION_TTL_SECONDS="10") as binder:
        alice = cognito.token("alice")
        action = proposed(binder, alice)
        assert action["expires_at"] <= int(time.time()) + 10


def test_consent_required_leaves_the_action_approved(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    action = approved(binder, alice)  # never connected
    answer = action_token(binder, alice, action)
    assert answer.status_code == 403, answer.text
    plain = binder.request_token(alice)
    assert set(answer.json()) == set(plain.json())
    assert answer.json()["error"] == "consent_required"
    assert answer.json()["reason"] == "no_connection"
    assert status_of(binder, alice, action["action_id"]) == "approved"


def test_the_outcome_is_recorded_once(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    binder.connect(alice)
    action = approved(binder, alice)
    refused(record(binder, alice, action["action_id"]), "not_executing")
    assert action_token(binder, alice, action).status_code == 200
    first = record(binder, alice, action["action_id"], status="failed", upstream_status=None)
    assert first.status_code == 200
    second = refused(
        record(binder, alice, action["action_id"], summary="a different story"),
        "already_recorded",
    )
    assert second["status"] == "done"
    assert second["result"] == first.json()["result"]
    assert second["result"]["status"] == "failed"
    assert second["result"]["upstream_status"] is None
    pending = proposed(binder, alice)
    refused(record(binder, alice, pending["action_id"]), "not_executing")


# -- the approval page: everything, whole, visible -----------------------------------------------


def test_a_10000_character_argument_appears_complete_on_the_page(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    body = "".join(f'line {i:05d} <b>&amp;</b> "quoted"\n' for i in range(400))
    body = (body + "x" * 10000)[:9990] + "END-MARKER"
    assert len(body) == 10000
    action = proposed(binder, alice, {**ARGS, "body": body})
    shown = page(binder, alice, action["action_id"])
    assert shown.status_code == 200
    assert escape(body) in shown.text
    assert "<b>" not in shown.text
    assert "text, 10000 characters" in shown.text
    assert "<pre class=arg>" in shown.text
    assert "<script" not in shown.text.lower()
    assert "default-src 'none'" in shown.headers["content-security-policy"]
    assert action["arguments_sha256"] in shown.text


def test_bidi_and_zero_width_characters_are_shown_as_escapes_and_flagged(
    binder: Harness,
) -> None:
    alice = binder.cognito.token("alice")
    arguments = {
        "repo": "acme/\u200bpublic",
        "title": "Quarterly report \u202etxt.exe",
        "body": "a\u2066b\u2069c\ufeffd\u200d",
        "la\u200ebel": "x",
        "tag": "\U000e0041",
    }
    shown = page(binder, alice, proposed(binder, alice, arguments)["action_id"])
    text = shown.text
    for char in "\u200b\u202e\u2066\u2069\ufeff\u200d\u200e\U000e0041":
        assert char not in text
    for code in ("\\u200b", "\\u202e", "\\u2066", "\\u2069", "\\ufeff", "\\u200d", "\\u200e"):
        assert f">{code}</span>" in text
    assert "<span class=fmt" in text
    assert ">\\U000e0041</span>" in text
    assert "contain 8 invisible formatting or control character(s)" in text
    assert text.index("class=flag") < text.index("Arguments, complete")
    plain = page(binder, alice, proposed(binder, alice)["action_id"]).text
    assert "class=flag" not in plain


def test_variation_selectors_and_fillers_are_shown_as_escapes_and_flagged(
    binder: Harness,
) -> None:
    """256 variation selectors carry a byte each behind one emoji; fillers draw nothing."""
    alice = binder.cognito.token("alice")
    secret = "".join(chr(0xFE00 + (b >> 4)) + chr(0xFE00 + (b & 15)) for b in b"ghp_x")
    arguments = {"title": "Meeting notes \U0001f600" + secret, "body": "a\u3164b\u034fc\U000e0100"}
    text = page(binder, alice, proposed(binder, alice, arguments)["action_id"]).text
    assert "class=flag" in text
    for code in ("\\ufe06", "\\ufe07", "\\u3164", "\\u034f", "\\U000e0100"):
        assert f">{code}</span>" in text
    # An emoji's own presentation selector is how emoji are typed: shown as it is.
    plain = page(binder, alice, proposed(binder, alice, {"title": "ok \u2764\ufe0f"})["action_id"])
    assert "class=flag" not in plain.text


def test_target_arguments_are_shown_first(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    arguments = {"body": "the-body", "title": "t", "repo": "acme/widgets", "channel": "#general"}
    text = page(binder, alice, proposed(binder, alice, arguments)["action_id"]).text
    target = text[text.index(">Target<") : text.index("Arguments, complete")]
    assert "acme/widgets" in target
    assert "#general" in target
    assert "the-body" not in target
    names = re.findall(r"<th class=name>([^<]+)</th>", text[text.index("Arguments, complete") :])
    assert names[:2] == ["repo", "channel"]
    assert set(names) == set(arguments)
    none = page(binder, alice, proposed(binder, alice, {"note": "n"})["action_id"]).text
    assert "none named in the arguments" in none


# -- audit --------------------------------------------------------------------------------------


def test_no_argument_values_or_tokens_in_audit_lines(
    binder: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_third_party()
    caplog.set_level(logging.DEBUG)
    alice, mallory = binder.cognito.token("alice"), binder.cognito.token("mallory")
    binder.connect(alice)
    values = ["secret-repo-name-7f3a", "PRIVATE BODY 91c2", "subject-line-e5d4"]
    arguments = {"repo": values[0], "body": values[1], "title": values[2]}
    action = approved(binder, alice, arguments)
    issued = action_token(binder, alice, action).json()
    record(binder, alice, action["action_id"], summary="summary-text-0b7e")
    action_token(binder, alice, action)  # refused: already_executed
    killed = proposed(binder, alice, arguments)
    page(binder, mallory, killed["action_id"])
    formatter = JsonFormatter("binder")
    lines = [formatter.format(r) for r in caplog.records]
    for line in lines:
        for value in [*values, "summary-text-0b7e", issued["access_token"], alice]:
            assert value not in line
    events = {
        f["audit"]: f for f in audit_lines(caplog) if f.get("action_id") == action["action_id"]
    }
    for event in ("action_proposed", "action_approved", "action_executed", "action_refused"):
        assert events[event]["action_id"] == action["action_id"]
        assert events[event]["arguments_sha256"] == action["arguments_sha256"]
        assert events[event]["tool"] == "create_issue"
        assert events[event]["turn_id"] == "turn-1"
        assert events[event]["provider"] == "fake"
        assert "request_id" in events[event]
        assert "user_hash" in events[event]
    assert events["action_executed"]["upstream_status"] == 201
    assert events["action_refused"]["reason"] == "already_executed"
    denied = [f for f in audit_lines(caplog) if f["audit"] == "action_denied"]
    assert [f["action_id"] for f in denied] == [killed["action_id"]]


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"provider": 7}, "provider"),
        ({"tool": "Create-Issue"}, "tool"),
        ({"tool": "x" * 65}, "tool"),
        ({"tool": "ok\n"}, "tool"),
        ({"turn_id": ""}, "turn_id"),
        ({"turn_id": "t" * 129}, "turn_id"),
        ({"turn_id": "tür"}, "turn_id"),
        ({"turn_id": "a\nb"}, "turn_id"),
        ({"turn_id": None}, "turn_id"),
        ({"arguments": ["not", "an", "object"]}, "arguments"),
        ({"arguments": {"n": 2**60}}, "arguments"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_proposals_are_400_naming_the_field(
    binder: Harness, fields: dict[str, Any], field: str
) -> None:
    alice = binder.cognito.token("alice")
    response = propose(binder, alice, **fields)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


def test_unrepresentable_or_oversized_arguments_are_refused_by_name(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    headers = {"authorization": f"Bearer {alice}", "content-type": "application/json"}
    body = (
        b'{"provider":"fake","tool":"t","turn_id":"x","arguments":{"a":"\\ud800"}}',
        b'{"provider":"fake","tool":"t","turn_id":"x","arguments":{"\\udc00":"a"}}',
    )
    for raw in body:
        answer = binder.client.post(f"{INTERNAL}/internal/actions", content=raw, headers=headers)
        assert answer.status_code == 400, answer.text
        assert answer.json()["field"] == "arguments"
    unknown = propose(binder, alice, provider="nowhere")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_provider"
    # Just under the limit in canonical form, sent with every character escaped as \uXXXX
    # (Python's json.dumps does; the body is twelve times MAX_BODY_BYTES): accepted.
    text = "é" * ((MAX_ARGUMENTS_BYTES - 64) // 2)

    def send(arguments: dict[str, Any]) -> httpx2.Response:
        raw = json.dumps({"provider": "fake", "tool": "t", "turn_id": "x", "arguments": arguments})
        return binder.client.post(f"{INTERNAL}/internal/actions", content=raw, headers=headers)

    assert send({"body": text}).status_code == 201
    over = send({"body": text + "é" * 40})
    assert over.status_code == 413, over.text
    assert over.json()["field"] == "arguments"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "ok", "upstream_status": 200, "summary": ""}, "status"),
        ({"status": "succeeded", "upstream_status": "200", "summary": ""}, "upstream_status"),
        ({"status": "succeeded", "upstream_status": True, "summary": ""}, "upstream_status"),
        ({"status": "succeeded", "upstream_status": 99, "summary": ""}, "upstream_status"),
        ({"status": "succeeded", "upstream_status": 200, "summary": "s" * 2001}, "summary"),
        ({"status": "succeeded", "upstream_status": 200}, "summary"),
        ({"status": "succeeded", "summary": "", "extra": 1}, "extra"),
    ],
)
def test_bad_results_are_400_naming_the_field(
    binder: Harness, body: dict[str, Any], field: str
) -> None:
    alice = binder.cognito.token("alice")
    action_id = proposed(binder, alice)["action_id"]
    response = internal(binder, alice, "POST", f"/{action_id}/result", body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "arguments_sha256"),
        ({"arguments_sha256": "ABC"}, "arguments_sha256"),
        ({"arguments_sha256": "A" * 64}, "arguments_sha256"),
        ({"arguments_sha256": "a" * 64, "scopes": "read"}, "scopes"),
        ({"arguments_sha256": "a" * 64, "return_url": "https://evil.example/"}, "return_url"),
        ({"arguments_sha256": "a" * 64, "provider": "fake"}, "provider"),
    ],
)
def test_bad_token_requests_are_400_naming_the_field(
    binder: Harness, body: dict[str, Any], field: str
) -> None:
    alice = binder.cognito.token("alice")
    action_id = approved(binder, alice)["action_id"]
    response = internal(binder, alice, "POST", f"/{action_id}/token", body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert status_of(binder, alice, action_id) == "approved"


def test_the_internal_action_routes_need_a_token_and_are_not_public(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    action_id = proposed(binder, alice)["action_id"]
    assert binder.client.get(f"{INTERNAL}/internal/actions/{action_id}").status_code == 401
    assert binder.client.post(f"{INTERNAL}/internal/actions", json={}).status_code == 401
    public = binder.client.get(
        f"{PUBLIC}/internal/actions/{action_id}", headers={"authorization": f"Bearer {alice}"}
    )
    assert public.status_code == 404
    internal_page = binder.client.get(
        f"{INTERNAL}/oauth2/actions/{action_id}", headers={"x-amzn-oidc-accesstoken": alice}
    )
    assert internal_page.status_code == 404


def test_actions_use_only_the_session_tables_granted_operations() -> None:
    """The table's grant and endpoint policy follow the operations sessions.py calls
    (tests/infra/test_edge_network.py); actions.py must need none beyond them."""

    def operations(path: str) -> set[str]:
        return set(re.findall(r'_call\(\s*"([a-z_]+)"', (ROOT / path).read_text()))

    used = operations("services/binder/binder/actions.py")
    assert used
    assert used <= operations("services/binder/binder/sessions.py")


def test_user_hash_in_items_is_the_verified_users(binder: Harness) -> None:
    alice = binder.cognito.token("alice")
    action_id = proposed(binder, alice)["action_id"]
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName="sessions", Key={"pk": {"S": f"action#{action_id}"}}
    )["Item"]
    user_hash = anyio.run(binder.services.verifier.verify, alice).user_hash
    assert item["user_hash"]["S"] == user_hash
