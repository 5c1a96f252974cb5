"""`make dev` wires the notes API: consent for provider `notes` at the local OIDC provider, a
token from the binder, and that token accepted by the notes server (real processes).

The stack is started exactly as `make dev` starts it (`python -m devstack`), with the notes
port chosen here so the test can read the write counter (GET /_test/writes, local only).
"""

from __future__ import annotations

import signal
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from devstack.running import StackDidNotStart, start

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    process: subprocess.Popen[str]
    edge: str
    moto: str
    provider: str
    notes: str
    binder_internal: str
    logs: Path


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    try:
        running = start(
            ("moto-port", "provider-port", "notes-port", "binder-internal-port"), tmp_path / "logs"
        )
    except StackDidNotStart as exc:
        pytest.fail(str(exc))
    try:
        yield Stack(
            process=running.process,
            edge=running.edge,
            moto=running.urls["moto-port"],
            provider=running.urls["provider-port"],
            notes=running.urls["notes-port"],
            binder_internal=running.urls["binder-internal-port"],
            logs=running.logs,
        )
    finally:
        running.stop()


def _cognito_access_token(stack: Stack) -> str:
    data = httpx2.get(f"{stack.moto}/moto-api/data.json", timeout=10, trust_env=False).json()
    pools: list[dict[str, Any]] = data["cognitoidp"]["CognitoIdpUserPool"]
    (token,) = [t for pool in pools for t in pool["access_tokens"]]
    return str(token)


def test_consent_for_notes_yields_a_token_the_notes_api_accepts(stack: Stack) -> None:
    from devstack.__main__ import NOTES_PROVIDER, PROVIDER, USERS

    browser = httpx2.Client(
        base_url=stack.edge,
        timeout=30,
        trust_env=False,
        follow_redirects=False,
        headers={"origin": stack.edge},
    )
    internal = httpx2.Client(base_url=stack.binder_internal, timeout=30, trust_env=False)
    plain = httpx2.Client(timeout=30, trust_env=False, follow_redirects=False)
    with browser, internal, plain:
        assert plain.get(f"{stack.notes}/_test/writes").json() == {
            "writes": 0,
            "write_attempts": 0,
        }
        signed_in = browser.post(
            "/_edge/login", data={"username": "alice", "password": USERS["alice"], "next": "/"}
        )
        assert signed_in.status_code == 303, signed_in.text
        cognito = {"authorization": f"Bearer {_cognito_access_token(stack)}"}

        # The binder knows provider `notes` and sends the user to the local provider for it.
        request = {"provider": NOTES_PROVIDER, "scopes": ["notes"]}
        consent = internal.post("/internal/tokens", json=request, headers=cognito)
        assert consent.status_code == 403, consent.text
        assert consent.json()["error"] == "consent_required"
        to_provider = browser.get(consent.json()["authorization_url"])
        assert to_provider.status_code == 302, to_provider.text
        location = to_provider.headers["location"]
        assert location.startswith(f"{stack.provider}/oauth2/authorize?")
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        assert query["client_id"] == "secure-agents-notes"
        assert query["scope"].split() == ["openid", "notes"]
        assert query["redirect_uri"] == f"{stack.edge}/oauth2/callback/{NOTES_PROVIDER}"

        # A bearer token alone does not get the browser routes anywhere (no session).
        assert plain.get(consent.json()["authorization_url"], headers=cognito).status_code == 302

        consented = plain.post(location, data={"sub": f"alice@{PROVIDER}.example"})
        assert consented.status_code == 302, consented.text
        done = browser.get(consented.headers["location"])
        assert done.status_code == 200, done.text

        issued = internal.post("/internal/tokens", json=request, headers=cognito)
        assert issued.status_code == 200, issued.text
        token = {"authorization": f"Bearer {issued.json()['access_token']}"}

        # The notes API accepts it: one write, read back; the counter sees exactly that.
        note = {"title": "From the local stack", "body": "x" * 10_000}
        created = plain.post(f"{stack.notes}/notes", json=note, headers=token)
        assert created.status_code == 201, created.text
        listed = plain.get(f"{stack.notes}/notes", headers=token).json()["notes"]
        assert [(n["title"], n["body"]) for n in listed] == [(note["title"], note["body"])]
        assert plain.post(f"{stack.notes}/notes", json=note).status_code == 401
        assert plain.get(f"{stack.notes}/_test/writes").json() == {
            "writes": 1,
            "write_attempts": 2,
        }
        # The user's Cognito token is not a notes token.
        assert plain.get(f"{stack.notes}/notes", headers=cognito).status_code == 401

    stack.process.send_signal(signal.SIGINT)
    stack.process.wait(timeout=60)
    notes_log = (stack.logs / "notes.log").read_text()
    assert "POST /notes created" in notes_log
    assert issued.json()["access_token"] not in notes_log
    assert note["title"] not in notes_log
