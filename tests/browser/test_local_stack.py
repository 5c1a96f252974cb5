"""The local demo in a real browser (Playwright driving Chromium, headless).

The browser is the one `make test` found or installed before any test ran
(tools/ensure_browser.py: Debian's chromium, or Playwright's own); without one this test fails
rather than skips, so CI always runs it.

The stack is started exactly as `make dev` starts it (`python -m devstack`). Screenshots of each
step go to test-artifacts/browser/ (not committed); the chat screenshot the README shows is
docs/screenshot-chat.png, refreshed by `UPDATE_SCREENSHOT=1 make test`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from devstack import aws, procs
from tools import ensure_browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
LOOPBACK_ONLY = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"

playwright_api = pytest.importorskip("playwright.sync_api")


@dataclass
class Stack:
    url: str
    moto: str
    notes: str
    mcp: str  # the local MCP server's origin
    process: subprocess.Popen[str]


def _wait(url: str, process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"make dev exited early: {process.stdout.read() if process.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail("the local stack did not come up")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port, moto_port, notes_port, mcp_port = (procs.free_port() for _ in range(4))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack",
            "--port",
            str(port),
            "--moto-port",
            str(moto_port),
            "--notes-port",
            str(notes_port),
            "--mcp-port",
            str(mcp_port),
            "--logs",
            str(tmp_path_factory.mktemp("devstack-logs")),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{url}/_edge/healthz", process)
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= 5
        yield Stack(
            url=url,
            moto=f"http://127.0.0.1:{moto_port}",
            notes=f"http://127.0.0.1:{notes_port}",
            mcp=f"http://127.0.0.1:{mcp_port}",
            process=process,
        )
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        process.wait(timeout=60)
    assert process.returncode == 0
    time.sleep(0.5)
    assert [c.pid for c in children if c.is_running() and c.status() != "zombie"] == []


@pytest.fixture(scope="module")
def chromium_path() -> str:
    found = ensure_browser.find()
    if found is None:
        pytest.fail("no Chromium runs here: `make test` installs one (tools/ensure_browser.py)")
    return found


@pytest.fixture(scope="module")
def browser(chromium_path: str, stack: Stack) -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=chromium_path,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                LOOPBACK_ONLY,
            ],
        )
        yield chromium
        chromium.close()


def _context(browser: object) -> object:
    context = browser.new_context(viewport={"width": 1100, "height": 820})  # type: ignore[attr-defined]

    def loopback_only(route: object) -> None:
        host = route.request.url.split("/")[2].split(":")[0]  # type: ignore[attr-defined]
        if host in ("127.0.0.1", "localhost"):
            route.continue_()  # type: ignore[attr-defined]
        else:
            route.abort()  # type: ignore[attr-defined]

    context.route("**/*", loopback_only)
    return context


def _login(page: object, url: str, user: str, password: str) -> None:
    page.goto(url)  # type: ignore[attr-defined]
    page.fill("input[name=username]", user)  # type: ignore[attr-defined]
    page.fill("input[name=password]", password)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_selector("#message")  # type: ignore[attr-defined]


def _shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def _vault_secrets(stack: Stack) -> list[str]:
    """Users' token records: `agent-token-vault/{provider}/{user}`. The binder's own MCP client
    registrations (`agent-token-vault/_mcp-client/...`, made when the agent first lists the
    MCP server's tools) are not a user's."""
    client = aws.client("secretsmanager", stack.moto)
    return [
        s["Name"]
        for s in client.list_secrets()["SecretList"]
        if s["Name"].startswith("agent-token-vault/")
        and not s["Name"].startswith("agent-token-vault/_")
    ]


def test_local_demo_end_to_end(stack: Stack, browser: object) -> None:
    from devstack.__main__ import USERS

    context = _context(browser)
    page = context.new_page()  # type: ignore[attr-defined]
    _login(page, stack.url, "alice", USERS["alice"])
    _shot(page, "01-signed-in")

    page.fill("#message", "who am I on demo?")
    page.click("#send")
    connect = page.wait_for_selector("[data-testid=connect-demo]")
    _shot(page, "02-connect-button")

    with page.expect_popup() as popup_info:
        connect.click()
    consent = popup_info.value
    consent.wait_for_selector("button[value='alice@demo.example']")
    _shot(consent, "03-provider-consent")
    consent.click("button[value='alice@demo.example']")
    consent.wait_for_selector("text=Local OIDC provider is connected")
    _shot(consent, "04-connected")
    consent.close()

    page.click("[data-testid=retry]")
    answer = page.wait_for_selector(".msg.assistant >> text=/You are .* on demo/")
    _shot(page, "05-answer")
    assert "alice" in answer.inner_text().lower()
    if os.environ.get("UPDATE_SCREENSHOT") == "1":  # refresh the README's picture on demand
        page.screenshot(path=str(ROOT / "docs" / "screenshot-chat.png"))
    assert len(_vault_secrets(stack)) == 1

    page.goto(f"{stack.url}/oauth2/connections")
    page.wait_for_selector("text=Connected accounts")
    _shot(page, "06-connections")
    page.click("button:has-text('Disconnect')")
    page.wait_for_selector("text=Local OIDC provider was disconnected.")
    _shot(page, "07-disconnected")
    assert _vault_secrets(stack) == []
    context.close()  # type: ignore[attr-defined]


def test_consent_link_opened_by_another_user_is_refused(stack: Stack, browser: object) -> None:
    from devstack.__main__ import USERS

    alice_context = _context(browser)
    alice = alice_context.new_page()  # type: ignore[attr-defined]
    _login(alice, stack.url, "alice", USERS["alice"])
    alice.fill("#message", "who am I on demo?")
    alice.click("#send")
    alice.wait_for_selector("[data-testid=connect-demo]")
    response = alice.request.post(  # what the page itself sent: the same API, same session
        f"{stack.url}/app/chat", data={"message": "who am I on demo?", "history": []}
    )
    authorization_url = response.json()["authorization_required"][0]["authorization_url"]

    bob_context = _context(browser)
    bob = bob_context.new_page()  # type: ignore[attr-defined]
    _login(bob, stack.url, "bob", USERS["bob"])
    bob.goto(authorization_url)
    bob.wait_for_selector("text=This link belongs to someone else")
    _shot(bob, "08-forwarded-link-refused")
    assert _vault_secrets(stack) == []
    # The link is dead for alice too.
    alice.goto(authorization_url)
    alice.wait_for_selector("text=This link was already used")
    assert _vault_secrets(stack) == []
    alice_context.close()  # type: ignore[attr-defined]
    bob_context.close()  # type: ignore[attr-defined]


def _notes_writes(stack: Stack) -> dict[str, int]:
    with urllib.request.urlopen(f"{stack.notes}/_test/writes", timeout=5) as answer:  # noqa: S310
        counts: dict[str, int] = json.loads(answer.read())
    return counts


def test_a_write_runs_once_after_approval_in_the_browser(stack: Stack, browser: object) -> None:
    """Ask for a note, connect the notes service, see every argument on the approval card,
    approve, and get exactly one write; a second confirmation replays the outcome."""
    from devstack.__main__ import USERS

    before = _notes_writes(stack)
    context = _context(browser)
    page = context.new_page()  # type: ignore[attr-defined]
    _login(page, stack.url, "alice", USERS["alice"])
    body = "line one\n" + "x" * 3000
    page.fill("#message", f'create a note "Browser test": {body}')
    with page.expect_response(f"{stack.url}/app/chat") as proposed:
        page.click("#send")
    action_id = proposed.value.json()["approval_required"]["action_id"]
    card = page.wait_for_selector("[data-testid=approval-card]")
    _shot(page, "09-approval-card")
    assert "Browser test" in card.inner_text()
    assert "x" * 3000 in card.inner_text(), "the whole body is on the card"
    assert _notes_writes(stack)["writes"] == before["writes"], "nothing ran before approval"

    # Approving runs it; the first run needs the notes service connected (consent once).
    page.click("[data-testid=approve]")
    connect = page.wait_for_selector("[data-testid=connect-notes]")
    assert _notes_writes(stack)["writes"] == before["writes"]
    with page.expect_popup() as popup_info:
        connect.click()
    consent = popup_info.value
    consent.wait_for_selector("button[value='alice@demo.example']")
    consent.click("button[value='alice@demo.example']")
    consent.wait_for_selector("text=Notes (local API) is connected")
    consent.close()

    page.click("[data-testid=retry]")
    page.wait_for_selector(".msg.assistant >> text=/Done: create a note/")
    _shot(page, "10-approved-and-done")
    assert _notes_writes(stack)["writes"] == before["writes"] + 1
    # Sending the confirmation again (same session) replays the outcome, writes nothing more.
    again = page.request.post(f"{stack.url}/app/chat", data={"confirm_action": action_id})
    assert again.json()["action_result"]["status"] == "succeeded"
    assert again.json()["action_result"]["replayed"] is True
    assert _notes_writes(stack)["writes"] == before["writes"] + 1
    context.close()  # type: ignore[attr-defined]


def _mcp_writes(stack: Stack) -> dict[str, int]:
    with urllib.request.urlopen(f"{stack.mcp}/_test/writes", timeout=5) as answer:  # noqa: S310
        counts: dict[str, int] = json.loads(answer.read())
    return counts


def test_mcp_notes_consent_answer_and_an_approved_write(stack: Stack, browser: object) -> None:
    """The MCP story in the browser: the question, Connect, the MCP authorization server's own
    consent form, back to the answer; then a write to the MCP server, approved on its card,
    which reaches the server exactly once."""
    from devstack.__main__ import USERS

    context = _context(browser)
    page = context.new_page()  # type: ignore[attr-defined]
    _login(page, stack.url, "bob", USERS["bob"])
    page.fill("#message", "What's on my MCP notes?")
    page.click("#send")
    connect = page.wait_for_selector("[data-testid=connect-mcpnotes]")
    _shot(page, "11-mcp-connect-button")

    with page.expect_popup() as popup_info:
        connect.click()
    consent = popup_info.value
    consent.wait_for_selector("text=MCP notes authorization server (local)")
    consent.fill("input[name=sub]", "bob@mcp.example")
    _shot(consent, "12-mcp-authorization-server-consent")
    consent.click("button[value=approve]")
    consent.wait_for_selector("text=MCP notes (local) is connected")
    consent.close()

    page.click("[data-testid=retry]")
    page.wait_for_selector(".msg.assistant >> text=/From the MCP server mcpnotes/")
    _shot(page, "13-mcp-answer")

    before = _mcp_writes(stack)["writes"]
    page.fill("#message", "add an MCP note titled Browser MCP saying hello from Chromium")
    page.click("#send")
    card = page.wait_for_selector("[data-testid=approval-card]")
    _shot(page, "14-mcp-approval-card")
    assert "Browser MCP" in card.inner_text()
    assert "hello from Chromium" in card.inner_text()
    assert _mcp_writes(stack)["writes"] == before, "nothing ran before approval"
    page.click("[data-testid=approve]")
    page.wait_for_selector(".msg.assistant >> text=/Done/")
    _shot(page, "15-mcp-approved-and-done")
    assert _mcp_writes(stack) == {"writes": before + 1, "write_attempts": before + 1}
    context.close()  # type: ignore[attr-defined]
