"""No secret of a full local flow reaches any log file of the local stack.

The stack is started exactly as `make dev` starts it (`python -m devstack`), and the story is
walked over HTTP as a browser and the agent would (no browser needed): sign-in at the dev edge,
a chat turn and a token request that answer `consent_required`, the consent link, consent at
the provider, the callback, a token issued by the binder, a chat turn that uses it, the local MCP
server's consent at its authorization server and a turn that lists its notes, disconnect.
Every secret seen on the way is captured: the password, the edge's session cookie, the Cognito
tokens moto issued (the edge session's included), the authorization session id, `state`,
`nonce`, the PKCE challenge and verifier, the authorization code, the provider's access and
refresh tokens, the MCP server's access and refresh tokens, the provider client secret. After
the stack stopped (so every line is flushed), no log file written by any of its processes may
hold any of them, nor anything shaped like a JWT (the provider's ID token, which the binder
validates and never stores, among them) or an OAuth parameter with its value.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from devstack import aws
from devstack.running import StackDidNotStart, start

ROOT = Path(__file__).resolve().parents[2]
PROVIDER = "demo"
VAULT_PREFIX = "agent-token-vault/"
# Every process `make dev` starts writes one log file named after it.
PROCESSES = {"moto", "provider", "notes", "mcp-auth", "mcp", "binder", "agent", "edge"}
MCP_PROVIDER = "mcpnotes"
# Anything shaped like a secret, whatever its value: a JWT, or an OAuth/PKCE parameter with a
# value in a URL, a form or a JSON log field.
SECRET_SHAPES = re.compile(
    r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]*"
    r"|\b(?:code|state|nonce|code_verifier|code_challenge|access_token|refresh_token|id_token"
    r"|client_secret|password)(?:=|\"\s*:\s*\")[^&\s\"]{6,}",
    re.IGNORECASE,
)


@dataclass
class Secrets:
    """Secret values by kind (a kind may hold several values)."""

    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, *found: object) -> None:
        for value in found:
            if isinstance(value, str) and len(value) >= 8:
                self.values.setdefault(kind, set()).add(value)


@dataclass
class Stack:
    process: subprocess.Popen[str]
    edge: str
    moto: str
    provider: str
    binder_internal: str
    logs: Path


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    try:
        running = start(("moto-port", "provider-port", "binder-internal-port"), tmp_path / "logs")
    except StackDidNotStart as exc:
        pytest.fail(str(exc))
    try:
        yield Stack(
            process=running.process,
            edge=running.edge,
            moto=running.urls["moto-port"],
            provider=running.urls["provider-port"],
            binder_internal=running.urls["binder-internal-port"],
            logs=running.logs,
        )
    finally:
        running.stop()


def _stop(stack: Stack) -> None:
    """Stop the stack as Ctrl-C does, so every child has flushed and closed its log."""
    stack.process.send_signal(signal.SIGINT)
    stack.process.wait(timeout=60)
    assert stack.process.returncode == 0


def _cognito_tokens(stack: Stack) -> dict[str, set[str]]:
    """Every token moto's user pools issued so far (the edge session's among them)."""
    data = httpx2.get(f"{stack.moto}/moto-api/data.json", timeout=10, trust_env=False).json()
    pools: list[dict[str, Any]] = data["cognitoidp"]["CognitoIdpUserPool"]
    return {
        kind: {token for pool in pools for token in pool[kind]}
        for kind in ("access_tokens", "refresh_tokens", "id_tokens")
    }


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def _vault_entries(sm: Any, provider: str) -> list[dict[str, Any]]:
    """The vault's records of one provider (`{prefix}{provider}/{user}`)."""
    entries: list[dict[str, Any]] = sm.list_secrets()["SecretList"]
    return [s for s in entries if s["Name"].startswith(f"{VAULT_PREFIX}{provider}/")]


def _walk_the_story(stack: Stack, found: Secrets) -> None:
    from devstack.__main__ import USERS

    password = USERS["alice"]
    found.add("password", *USERS.values())
    sm = aws.client("secretsmanager", stack.moto)
    for entry in sm.list_secrets()["SecretList"]:
        if entry["Name"].startswith("provider-credentials/"):
            value = json.loads(sm.get_secret_value(SecretId=entry["ARN"])["SecretString"])
            found.add("provider client secret", value["client_secret"])
    browser = httpx2.Client(
        base_url=stack.edge,
        timeout=30,
        trust_env=False,
        follow_redirects=False,
        headers={"origin": stack.edge},  # the edge's and the binder's same-origin checks
    )
    internal = httpx2.Client(base_url=stack.binder_internal, timeout=30, trust_env=False)
    provider = httpx2.Client(timeout=30, trust_env=False, follow_redirects=False)
    with browser, internal, provider:
        # Sign-in at the edge (the ALB's Cognito sign-in).
        assert browser.get("/").status_code == 302
        signed_in = browser.post(
            "/_edge/login", data={"username": "alice", "password": password, "next": "/"}
        )
        assert signed_in.status_code == 303, signed_in.text
        found.add("edge session cookie", browser.cookies.get("edge_session"))
        cognito = _cognito_tokens(stack)
        (access_token,) = cognito["access_tokens"]  # the edge session's

        # A chat turn: the agent's token request answers consent_required.
        ask = {"message": f"who am I on {PROVIDER}?", "history": []}
        first = browser.post("/app/chat", json=ask)
        assert first.status_code == 200, first.text
        # Each turn also lists the local MCP server's tools: it asks for its consent too.
        needs = {n["provider"]: n for n in first.json()["authorization_required"]}
        assert set(needs) == {PROVIDER, MCP_PROVIDER}, needs
        needed = needs[PROVIDER]
        # The same token request, made at the binder's internal API as the agent makes it.
        bearer = {"authorization": f"Bearer {access_token}"}
        request = {"provider": PROVIDER, "scopes": ["openid", "profile"]}
        consent = internal.post("/internal/tokens", json=request, headers=bearer)
        assert consent.status_code == 403, consent.text
        assert consent.json()["error"] == "consent_required"
        for link in (needed["authorization_url"], consent.json()["authorization_url"]):
            found.add("authorization session id", link.rsplit("/", 1)[-1])
        found.add("authorization session id", consent.json()["session_id"])

        # Authorize: the binder sends the browser to the provider.
        to_provider = browser.get(needed["authorization_url"])
        assert to_provider.status_code == 302, to_provider.text
        location = to_provider.headers["location"]
        assert location.startswith(f"{stack.provider}/")
        params = _query(location)
        found.add("state", params["state"])
        found.add("nonce", params.get("nonce"))
        found.add("PKCE challenge", params["code_challenge"])
        table = aws.client("dynamodb", stack.moto).scan(TableName="binder-sessions")["Items"]
        for item in table:
            found.add("PKCE verifier", item.get("code_verifier", {}).get("S"))
            found.add("nonce", item.get("nonce", {}).get("S"))
        assert found.values.get("PKCE verifier"), "the pending authorization holds a verifier"

        # Consent at the provider, then its redirect back to the callback through the edge.
        assert provider.get(location).status_code == 200
        consented = provider.post(location, data={"sub": f"alice@{PROVIDER}.example"})
        assert consented.status_code == 302, consented.text
        callback = consented.headers["location"]
        assert callback.startswith(f"{stack.edge}/oauth2/callback/{PROVIDER}?")
        found.add("authorization code", _query(callback)["code"])
        done = browser.get(callback)
        assert done.status_code == 200, done.text
        assert "Local OIDC provider is connected" in done.text

        # The vault holds the provider's tokens; the binder issues the access token.
        (vault_entry,) = _vault_entries(sm, PROVIDER)
        record = json.loads(sm.get_secret_value(SecretId=vault_entry["ARN"])["SecretString"])
        found.add("provider access token", record.get("access_token"))
        found.add("provider refresh token", record.get("refresh_token"))
        found.add("provider ID token", record.get("id_token"))
        issued = internal.post("/internal/tokens", json=request, headers=bearer)
        assert issued.status_code == 200, issued.text
        found.add("provider access token", issued.json()["access_token"])

        # A chat turn that uses the token (the agent calls the provider's userinfo).
        answer = browser.post("/app/chat", json=ask)
        assert answer.status_code == 200, answer.text
        assert [n["provider"] for n in answer.json()["authorization_required"]] == [MCP_PROVIDER]
        assert "You are alice" in answer.json()["reply"]

        # The MCP server's consent: through the edge to its authorization server's form.
        to_mcp_auth = browser.get(needs[MCP_PROVIDER]["authorization_url"])
        assert to_mcp_auth.status_code == 302, to_mcp_auth.text
        location = to_mcp_auth.headers["location"]
        params = _query(location)
        found.add("state", params["state"])
        found.add("PKCE challenge", params["code_challenge"])
        form = provider.get(location)
        assert form.status_code == 200, form.text
        request_id = re.search(r'name="request_id" value="([^"]+)"', form.text)
        assert request_id
        approved = provider.post(
            location.split("/authorize?")[0] + "/authorize/decide",
            data={
                "request_id": request_id.group(1),
                "sub": "alice@mcp.example",
                "decision": "approve",
            },
        )
        assert approved.status_code == 302, approved.text
        found.add("authorization code", _query(approved.headers["location"])["code"])
        assert browser.get(approved.headers["location"]).status_code == 200
        (mcp_entry,) = _vault_entries(sm, MCP_PROVIDER)
        record = json.loads(sm.get_secret_value(SecretId=mcp_entry["ARN"])["SecretString"])
        found.add("MCP access token", record.get("access_token"))
        found.add("MCP refresh token", record.get("refresh_token"))
        listed = browser.post(
            "/app/chat", json={"message": "what's on my MCP notes?", "history": []}
        )
        assert listed.status_code == 200, listed.text
        assert "From the MCP server" in listed.json()["reply"]

        # Disconnect from the connections page.
        gone = browser.post(f"/oauth2/connections/{PROVIDER}/disconnect")
        assert gone.status_code == 303, gone.text
        assert not _vault_entries(sm, PROVIDER)
        for kind, tokens in _cognito_tokens(stack).items():
            found.add(f"Cognito {kind.removesuffix('s').replace('_', ' ')}", *tokens)


def test_a_full_local_flow_leaves_no_secret_in_any_log(stack: Stack) -> None:
    found = Secrets()
    _walk_the_story(stack, found)
    _stop(stack)

    files = sorted(p for p in stack.logs.rglob("*") if p.is_file())
    assert {p.stem for p in files} >= PROCESSES, [p.name for p in files]
    expected = {
        "password",
        "edge session cookie",
        "provider client secret",
        "authorization session id",
        "state",
        "nonce",
        "PKCE challenge",
        "PKCE verifier",
        "authorization code",
        "provider access token",
        "provider refresh token",
        "MCP access token",
        "MCP refresh token",
        "Cognito access token",
        "Cognito refresh token",
        "Cognito id token",
    }
    assert expected <= set(found.values), sorted(expected - set(found.values))
    leaks: list[str] = []
    for path in files:
        text = path.read_text(errors="replace")
        for kind, values in sorted(found.values.items()):
            lines = sorted(
                {n for n, line in enumerate(text.splitlines(), 1) for v in values if v in line}
            )
            if lines:
                leaks.append(f"{path.name}: {kind} on line(s) {lines[:5]}")
        for n, line in enumerate(text.splitlines(), 1):
            match = SECRET_SHAPES.search(line)
            if match:
                leaks.append(f"{path.name}:{n}: shaped like a secret: {match.group(0)[:40]}...")
    assert leaks == [], "\n".join(leaks)
