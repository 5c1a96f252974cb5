"""The MCP story with real processes: the local stack as `make dev` runs it (its MCP server
`mcpnotes` and that server's authorization server), and beside it, on the stack's moto server,
more authorization servers and MCP servers, two binder processes and an agent, each configured
as a platform team would configure another MCP server.

What a user sees goes through the agent's chat API and the edge; what each server received is
read from its local-only counters (`/_test/requests`, `/_test/writes`): never a token, only
parameter names, public values and SHA-256 prefixes.

Cost: one stack (about 7 s to start on the shared host) and 13 more small processes started
together (about 5 s); the module runs in about 40 s.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest

from devstack import aws, mcp_server, procs, services
from devstack.__main__ import USERS
from devstack.running import StackDidNotStart, start

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = f"http://{procs.LOOPBACK}"
PRE_CLIENT = ("pre-registered-binder", "pre-registered-secret-for-tests")
TTL_SECONDS = 3  # the short-lived authorization server's access tokens (refresh test)
REQUEST_ID = re.compile(r'name="request_id" value="([^"]+)"')


def _get(url: str) -> Any:
    response = httpx2.get(url, timeout=10, trust_env=False)
    response.raise_for_status()
    return response.json()


# -- the local stack ------------------------------------------------------------------------------


@dataclass
class Stack:
    edge: str
    moto: str
    mcp: str  # the MCP endpoint, http://127.0.0.1:P/mcp
    mcp_origin: str
    mcp_auth: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("mcp-stack-logs")
    try:
        running = start(("moto-port", "mcp-port", "mcp-auth-port"), logs)
    except StackDidNotStart as exc:
        pytest.fail(str(exc))
    try:
        origin = running.urls["mcp-port"]
        yield Stack(
            edge=running.edge,
            moto=running.urls["moto-port"],
            mcp=origin + mcp_server.PATH,
            mcp_origin=origin,
            mcp_auth=running.urls["mcp-auth-port"],
        )
    finally:
        running.stop()


def _browser(stack: Stack, user: str) -> httpx2.Client:
    client = httpx2.Client(
        base_url=stack.edge,
        timeout=30,
        trust_env=False,
        follow_redirects=False,
        headers={"origin": stack.edge},
    )
    login = {"username": user, "password": USERS[user], "next": "/"}
    assert client.post("/_edge/login", data=login).status_code == 303
    return client


@dataclass
class Browsers:
    alice: httpx2.Client
    bob: httpx2.Client


@pytest.fixture(scope="module")
def browsers(stack: Stack) -> Iterator[Browsers]:
    alice, bob = _browser(stack, "alice"), _browser(stack, "bob")
    try:
        yield Browsers(alice=alice, bob=bob)
    finally:
        alice.close()
        bob.close()


def _approve_at_the_authorization_server(to_as: str, sub: str) -> str:
    """The user's part at the MCP authorization server: its form, then Approve. Returns where
    the server sends the browser back (the binder's callback)."""
    assert to_as.startswith(f"{urlsplit(to_as).scheme}://{urlsplit(to_as).netloc}/authorize?")
    form = httpx2.get(to_as, timeout=10, trust_env=False)
    assert form.status_code == 200, form.text
    match = REQUEST_ID.search(form.text)
    assert match, form.text
    origin = f"{urlsplit(to_as).scheme}://{urlsplit(to_as).netloc}"
    decided = httpx2.post(
        f"{origin}/authorize/decide",
        data={"request_id": match.group(1), "sub": sub, "decision": "approve"},
        timeout=10,
        trust_env=False,
    )
    assert decided.status_code == 302, decided.text
    return decided.headers["location"]


def _mcp_notes_question(client: httpx2.Client) -> dict[str, Any]:
    answer = client.post("/app/chat", json={"message": "What's on my MCP notes?", "history": []})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_discovery_consent_through_the_edge_then_the_answer(
    stack: Stack, browsers: Browsers
) -> None:
    alice = browsers.alice
    first = _mcp_notes_question(alice)
    (needed,) = first["authorization_required"]
    assert needed["provider"] == mcp_server.PROVIDER_NAME
    # The binder found the authorization server from the MCP server's 401 challenge.
    seen = _get(f"{stack.mcp_origin}/_test/requests")
    assert seen["challenges"] >= 1, seen
    assert seen["prm_fetches"] >= 1, seen
    assert seen["accepted"] == 0

    to_as = alice.get(needed["authorization_url"])
    assert to_as.status_code == 302, to_as.text
    assert to_as.headers["location"].startswith(f"{stack.mcp_auth}/authorize?")
    callback = _approve_at_the_authorization_server(to_as.headers["location"], "alice@mcp.example")
    assert callback.startswith(f"{stack.edge}/oauth2/callback/{mcp_server.PROVIDER_NAME}?")
    assert "iss" in parse_qs(urlsplit(callback).query)  # RFC 9207, checked by the binder
    assert alice.get(callback).status_code == 200

    received = _get(f"{stack.mcp_auth}/_test/requests")
    (authorization,) = received["authorization_requests"]
    assert authorization["code_challenge_method"] == "S256"
    assert authorization["has_code_challenge"] is True
    assert authorization["resource"] == stack.mcp
    (exchange,) = received["token_requests"]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["has_code_verifier"] is True
    assert exchange["resource"] == stack.mcp
    assert "error" not in exchange
    # The server supports client metadata documents and sends iss, so the binder is known by
    # this provider's document's URL (http on loopback in the local stack), which the server
    # fetched (through the edge, without a session): no registration.
    assert authorization["client_id"] == (
        f"{stack.edge}/oauth2/client-metadata/{mcp_server.PROVIDER_NAME}.json"
    )
    assert received["registrations"] == 0
    assert received["metadata_document_fetches"] >= 1

    second = _mcp_notes_question(alice)
    assert second["authorization_required"] == []
    assert f"From the MCP server {mcp_server.PROVIDER_NAME}:" in second["reply"], second
    assert '"notes": []' in second["reply"], second["reply"]
    assert _get(f"{stack.mcp_origin}/_test/requests")["accepted"] >= 1


def test_a_forwarded_consent_link_dies_for_another_user(stack: Stack, browsers: Browsers) -> None:
    """Bob's link opened in alice's session (forwarded, or a phishing page) is refused and
    dead for bob too: consent stays bound to the user who asked."""
    before = _get(f"{stack.mcp_auth}/_test/requests")
    asked = _mcp_notes_question(browsers.bob)
    (needed,) = asked["authorization_required"]
    link = urlsplit(needed["authorization_url"])
    path = link.path + (f"?{link.query}" if link.query else "")
    assert browsers.alice.get(path).status_code == 403
    dead = browsers.bob.get(path)
    assert dead.status_code != 302, "the forwarded link still led to the authorization server"
    after = _get(f"{stack.mcp_auth}/_test/requests")
    assert len(after["authorization_requests"]) == len(before["authorization_requests"])
    assert after["tokens_issued"] == before["tokens_issued"]


def test_a_write_goes_through_approval_and_reaches_the_server_once(
    stack: Stack, browsers: Browsers
) -> None:
    alice = browsers.alice
    writes = f"{stack.mcp_origin}/_test/writes"
    before = _get(writes)["writes"]
    proposed = alice.post(
        "/app/chat",
        json={"message": "add an MCP note titled Groceries saying milk and eggs", "history": []},
    )
    assert proposed.status_code == 200, proposed.text
    approval = proposed.json()["approval_required"]
    assert approval, proposed.json()
    assert _get(writes)["writes"] == before, "nothing runs before the user approves"
    path = urlsplit(approval["approval_url"]).path
    assert alice.post(f"{path}/approve").status_code == 303

    def confirm(_: int) -> dict[str, Any]:
        with httpx2.Client(
            base_url=stack.edge, timeout=30, trust_env=False, cookies=alice.cookies
        ) as client:
            answer = client.post("/app/chat", json={"confirm_action": approval["action_id"]})
            assert answer.status_code == 200, answer.text
            result: dict[str, Any] = answer.json()["action_result"]
            return result

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(confirm, range(3)))
    assert {r["status"] for r in results} == {"succeeded"}, results
    assert sorted(r["replayed"] for r in results) == [False, True, True]
    assert _get(writes) == {"writes": before + 1, "write_attempts": before + 1}
    listed = _mcp_notes_question(alice)
    assert "Groceries" in listed["reply"]


def test_the_client_metadata_document_is_public_and_accepted_by_the_server(
    stack: Stack,
) -> None:
    """The provider's Client ID Metadata Document, through the edge with no session, is a
    document the MCP authorization server accepts (it fetches it through the edge itself), and
    names that provider's callback only."""
    url = f"{stack.edge}/oauth2/client-metadata/{mcp_server.PROVIDER_NAME}.json"
    document = httpx2.get(url, timeout=10, trust_env=False)
    assert document.status_code == 200, document.text
    body = document.json()
    callback = f"{stack.edge}/oauth2/callback/{mcp_server.PROVIDER_NAME}"
    assert body["client_id"] == url
    assert body["redirect_uris"] == [callback]
    assert body["token_endpoint_auth_method"] == "none"
    before = _get(f"{stack.mcp_auth}/_test/requests")["metadata_document_fetches"]
    query = {
        "client_id": url,
        "redirect_uri": callback,
        "response_type": "code",
        "code_challenge": "A" * 43,
        "code_challenge_method": "S256",
        "resource": stack.mcp,
        "state": "s",
    }
    form = httpx2.get(f"{stack.mcp_auth}/authorize?{urlencode(query)}", timeout=10)
    assert form.status_code == 200, form.text
    assert "metadata-document" in form.text
    assert _get(f"{stack.mcp_auth}/_test/requests")["metadata_document_fetches"] == before + 1
    # Only GET: the rest of /oauth2/ still wants a session. The old shared document is gone,
    # and a name that is no mcp provider's has none.
    other = httpx2.post(url, timeout=10, trust_env=False, follow_redirects=False)
    assert other.status_code == 302
    for gone in ("/oauth2/client-metadata.json", "/oauth2/client-metadata/nobody.json"):
        answer = httpx2.get(
            f"{stack.edge}{gone}", timeout=10, trust_env=False, follow_redirects=False
        )
        assert answer.status_code in (302, 404), answer.text


# -- beside the stack: more MCP servers, two binders, an agent -------------------------------------


@dataclass
class Server:
    """An MCP server (`url`) and its own authorization server (`auth`)."""

    name: str
    url: str
    origin: str
    auth: str


@dataclass
class Side:
    local: aws.LocalAws
    servers: dict[str, Server]
    binders: list[tuple[str, str]]  # (public, internal)
    agent: str
    alice: str  # Cognito access tokens of this side's user pool
    bob: str
    children: list[procs.Child] = field(default_factory=list)


# name -> the authorization server's flags
SIDE_SERVERS: dict[str, list[str]] = {
    "mcppre": ["--no-dcr", "--no-cimd"],  # pre-registered client only (added below)
    "mcpdcr": ["--no-cimd"],  # dynamic client registration
    "mcpnos256": ["--no-s256"],
    "mcpmixup": ["--metadata-issuer", "http://127.0.0.1:9"],
    "mcpfast": ["--no-cimd", "--access-token-ttl", str(TTL_SECONDS)],
}
AGENT_SERVERS = ("mcppre", "mcpdcr", "mcpnos256", "mcpmixup")


@pytest.fixture(scope="module")
def side(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    logs = tmp_path_factory.mktemp("mcp-side-logs")
    local = aws.bootstrap(
        stack.moto, users=USERS, providers={"mcppre": PRE_CLIENT}, table="mcp-side-sessions"
    )
    py = sys.executable
    binder_ports = [(procs.free_port(), procs.free_port()) for _ in range(2)]
    public = f"{LOOPBACK}:{binder_ports[0][0]}"  # both binders: one public URL, as behind an ALB
    children: list[procs.Child] = []
    waiting: list[tuple[procs.Child, str]] = []

    def launch(name: str, argv: list[str], env: dict[str, str], health: str) -> None:
        child = procs.start(name, argv, env=env, log_dir=logs, cwd=ROOT)
        children.append(child)
        waiting.append((child, health))

    def ready() -> None:
        while waiting:
            procs.wait_http(*waiting.pop(0), timeout=60)

    env = {"PATH": "", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    servers: dict[str, Server] = {}
    try:
        for name, flags in SIDE_SERVERS.items():
            mcp_port, auth_port = procs.free_port(), procs.free_port()
            server = Server(
                name=name,
                url=f"{LOOPBACK}:{mcp_port}{mcp_server.PATH}",
                origin=f"{LOOPBACK}:{mcp_port}",
                auth=f"{LOOPBACK}:{auth_port}",
            )
            servers[name] = server
            extra = list(flags)
            if name == "mcppre":
                client = {
                    "client_id": PRE_CLIENT[0],
                    "client_secret": PRE_CLIENT[1],
                    "redirect_uris": [f"{public}/oauth2/callback/{name}"],
                }
                extra += ["--client", json.dumps(client)]
            launch(
                f"{name}-auth",
                [
                    py,
                    "-m",
                    "devstack.mcp_auth_server",
                    "--port",
                    str(auth_port),
                    "--resource",
                    server.url,
                    *extra,
                ],
                env,
                f"{server.auth}/healthz",
            )
            launch(
                name,
                [py, "-m", "devstack.mcp_server", "--port", str(mcp_port), "--issuer", server.auth],
                env,
                f"{server.origin}/healthz",
            )
        entries = [
            {
                **mcp_server.mcp_provider_entry(s.url),
                "name": s.name,
                "display_name": s.name,
                **(
                    {
                        "client_id": PRE_CLIENT[0],
                        "secret_arn": local.provider_secrets["mcppre"],
                        "authorization_server": s.auth,
                    }
                    if s.name == "mcppre"
                    else {}
                ),
            }
            for s in servers.values()
        ]
        binders = []
        for index, (public_port, internal_port) in enumerate(binder_ports):
            internal = f"{LOOPBACK}:{internal_port}"
            launch(
                f"binder-{index}",
                [py, "-m", "binder"],
                services.binder_env(
                    local,
                    entries,
                    public_port=public_port,
                    internal_port=internal_port,
                    base_url=public,
                    REFRESH_SKEW_SECONDS="0",
                ),
                f"{internal}/healthz",
            )
            binders.append((f"{LOOPBACK}:{public_port}", internal))
        agent_port = procs.free_port()
        launch(
            "agent",
            [py, "-m", "agent"],
            services.agent_env(
                issuer=local.issuer,
                client_id=local.client_id,
                jwks_url=local.jwks_url,
                port=agent_port,
                binder_url=binders[0][1],
                userinfo={},
                AGENT_MCP_SERVERS=json.dumps(
                    [{"name": n, "url": servers[n].url} for n in AGENT_SERVERS]
                ),
            ),
            f"{LOOPBACK}:{agent_port}/healthz",
        )
        ready()
        yield Side(
            local=local,
            servers=servers,
            binders=binders,
            agent=f"{LOOPBACK}:{agent_port}",
            alice=aws.sign_in(local, "alice", USERS["alice"]),
            bob=aws.sign_in(local, "bob", USERS["bob"]),
            children=children,
        )
    finally:
        for child in reversed(children):
            child.stop()


def _token(side: Side, user: str, provider: str, binder: int = 0) -> httpx2.Response:
    """What the agent asks a binder for: the user's token for `provider`."""
    return httpx2.post(
        f"{side.binders[binder][1]}/internal/tokens",
        json={"provider": provider, "scopes": []},
        headers={"authorization": f"Bearer {user}"},
        timeout=30,
        trust_env=False,
    )


def _connect(side: Side, user: str, provider: str, sub: str) -> None:
    """The consent walk on the side binders' public port (the edge's header set by hand)."""
    asked = _token(side, user, provider)
    assert asked.status_code == 403, asked.text
    link = asked.json()["authorization_url"]
    with httpx2.Client(timeout=30, trust_env=False, follow_redirects=False) as browser:
        header = {"x-amzn-oidc-accesstoken": user}
        to_as = browser.get(link, headers=header)
        assert to_as.status_code == 302, to_as.text
        assert to_as.headers["location"].startswith(f"{side.servers[provider].auth}/authorize?")
        callback = _approve_at_the_authorization_server(to_as.headers["location"], sub)
        done = browser.get(callback, headers=header)
        assert done.status_code == 200, done.text


def test_a_pre_registered_client_uses_its_secret_from_secrets_manager(side: Side) -> None:
    _connect(side, side.alice, "mcppre", "alice@mcp.example")
    received = _get(f"{side.servers['mcppre'].auth}/_test/requests")
    (exchange,) = received["token_requests"]
    assert (exchange["client_id"], exchange["client_auth"]) == (
        PRE_CLIENT[0],
        "client_secret_basic",
    )
    assert exchange["resource"] == side.servers["mcppre"].url
    assert received["registrations"] == 0
    assert received["metadata_document_fetches"] == 0
    assert _token(side, side.alice, "mcppre").status_code == 200


def test_dynamic_registration_happens_once_per_provider_across_binders(side: Side) -> None:
    _connect(side, side.alice, "mcpdcr", "alice@mcp.example")
    auth = side.servers["mcpdcr"].auth
    assert _get(f"{auth}/_test/requests")["registrations"] == 1
    # Bob on the other binder process: the stored registration, not a second one.
    asked = _token(side, side.bob, "mcpdcr", binder=1)
    assert asked.status_code == 403, asked.text
    received = _get(f"{auth}/_test/requests")
    assert received["registrations"] == 1
    (authorization,) = received["authorization_requests"]
    assert authorization["client_id"].startswith("dyn-")
    assert authorization["code_challenge_method"] == "S256"
    assert authorization["resource"] == side.servers["mcpdcr"].url
    stored = aws.client("secretsmanager", side.local.endpoint).list_secrets(
        Filters=[{"Key": "name", "Values": [f"{services.VAULT_PREFIX}/_mcp-client/"]}]
    )["SecretList"]
    assert len(stored) >= 1


@pytest.mark.parametrize("provider", ["mcpnos256", "mcpmixup"])
def test_a_server_the_binder_must_refuse_gets_no_token_and_the_user_a_clear_message(
    side: Side, provider: str
) -> None:
    """An authorization server without PKCE S256, and one whose metadata names another issuer
    (mix-up): refused at discovery, before any authorization or token request reaches them."""
    answer = httpx2.post(
        f"{side.agent}/api/chat",
        json={"message": "What's on my MCP notes?", "history": []},
        headers={"authorization": f"Bearer {side.alice}"},
        timeout=60,
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert provider not in {a["provider"] for a in body["authorization_required"]}
    assert f"did not give a token for {provider}" in body["reply"], body["reply"]
    refused = _token(side, side.alice, provider)
    assert refused.status_code == 502, refused.text
    assert refused.json()["code"] == "provider_discovery"
    received = _get(f"{side.servers[provider].auth}/_test/requests")
    assert received["authorization_requests"] == []
    assert received["token_requests"] == []
    assert received["tokens_issued"] == 0


def test_a_token_for_one_server_is_never_sent_to_another(side: Side) -> None:
    """Alice has connected mcppre and mcpdcr (the tests above). The agent lists both servers'
    tools with her tokens: each server received only tokens issued for it."""
    for name in ("mcppre", "mcpdcr"):
        if _token(side, side.alice, name).status_code != 200:
            _connect(side, side.alice, name, "alice@mcp.example")
    answer = httpx2.post(
        f"{side.agent}/api/chat",
        json={"message": "What's on my MCP notes?", "history": []},
        headers={"authorization": f"Bearer {side.alice}"},
        timeout=60,
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    a, b = (_get(f"{side.servers[n].origin}/_test/requests") for n in ("mcppre", "mcpdcr"))
    for counts in (a, b):
        assert counts["accepted"] >= 1, counts
        assert counts["refused"] == {}, counts
    assert not set(a["token_hashes"]) & set(b["token_hashes"])
    # Had one been passed on, the other server would have refused it (here: signed by another
    # authorization server; for the same one, the audience check) and counted it.
    token_a = _token(side, side.alice, "mcppre").json()["access_token"]
    wrong = httpx2.post(
        side.servers["mcpdcr"].url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"authorization": f"Bearer {token_a}", "accept": "application/json"},
        timeout=10,
        trust_env=False,
    )
    assert wrong.status_code == 401
    refused = _get(f"{side.servers['mcpdcr'].origin}/_test/requests")["refused"]
    assert refused == {"unknown_key": 1}


def test_refresh_across_two_binders_is_single_and_never_replayed(side: Side) -> None:
    """Rotating refresh tokens, access tokens of TTL_SECONDS, two binder processes, eight
    concurrent requests at each expiry: one refresh per expiry, no replay, one token for all."""
    _connect(side, side.alice, "mcpfast", "alice@mcp.example")
    auth = f"{side.servers['mcpfast'].auth}/_test/requests"
    first = _token(side, side.alice, "mcpfast").json()["access_token"]
    previous = first
    for expiry in (1, 2):
        time.sleep(TTL_SECONDS + 0.5)
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(lambda i: _token(side, side.alice, "mcpfast", binder=i % 2), range(8))
            )
        assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
        tokens = {a.json()["access_token"] for a in answers}
        assert len(tokens) == 1
        assert previous not in tokens
        previous = tokens.pop()
        counters = _get(auth)
        assert (counters["refreshes"], counters["refresh_replays"]) == (expiry, 0), counters
