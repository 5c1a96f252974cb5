"""The local MCP server and its authorization server (devstack/mcp_server.py,
devstack/mcp_auth_server.py), as real processes on loopback, driven as an MCP client would:
discovery from the 401, each way of registering (dynamic, metadata document, pre-registered),
PKCE S256 + `resource` + RFC 9207 `iss`, the official SDK's client listing and calling tools,
audience binding, rotating refresh tokens, and the switches that break the server on purpose.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.server
import json
import re
import secrets
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from devstack import mcp_server, procs

ROOT = Path(__file__).resolve().parents[2]
REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: the test reads the Location header
PRE_ID = "binder-preregistered"
PRE_SECRET = secrets.token_urlsafe(24)
ALICE = "alice@mcp.example"
BOB = "bob@mcp.example"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}


@dataclass
class Servers:
    auth: str  # the authorization server's issuer
    mcp: str  # the MCP server's resource URL (.../mcp)
    other: str  # another resource the same issuer serves (a second MCP server)
    broken: str  # an authorization server with every test switch on
    documents: dict[str, dict[str, Any]]  # client metadata documents served by path
    document_base: str


class _Documents(http.server.BaseHTTPRequestHandler):
    documents: ClassVar[dict[str, dict[str, Any]]] = {}

    def do_GET(self) -> None:
        document = self.documents.get(self.path)
        body = json.dumps(document).encode()
        self.send_response(200 if document is not None else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    logs = tmp_path_factory.mktemp("mcp-logs")
    auth_port, mcp_port, broken_port = (procs.free_port() for _ in range(3))
    auth = f"http://{procs.LOOPBACK}:{auth_port}"
    mcp = f"http://{procs.LOOPBACK}:{mcp_port}/mcp"
    other = f"http://{procs.LOOPBACK}:{procs.free_port()}/mcp"
    broken = f"http://{procs.LOOPBACK}:{broken_port}"
    documents: dict[str, dict[str, Any]] = {}
    handler = type("Handler", (_Documents,), {"documents": documents})
    document_server = http.server.ThreadingHTTPServer((procs.LOOPBACK, 0), handler)
    threading.Thread(target=document_server.serve_forever, daemon=True).start()
    py = sys.executable
    env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    pre = json.dumps(
        {"client_id": PRE_ID, "client_secret": PRE_SECRET, "redirect_uris": [REDIRECT]}
    )
    commands = {
        "mcp-auth": [
            *(py, "-m", "devstack.mcp_auth_server", "--port", str(auth_port)),
            *("--resource", mcp, "--resource", other, "--user", ALICE, "--user", BOB),
            *("--client", pre),
        ],
        "mcp": [py, "-m", "devstack.mcp_server", "--port", str(mcp_port), "--issuer", auth],
        "mcp-auth-broken": [
            *(py, "-m", "devstack.mcp_auth_server", "--port", str(broken_port)),
            *("--no-s256", "--metadata-issuer", "http://127.0.0.1:1", "--no-dcr", "--no-cimd"),
        ],
    }
    children = [
        procs.start(name, argv, env=env, log_dir=logs, cwd=ROOT) for name, argv in commands.items()
    ]
    try:
        for child, url in zip(children, (auth, mcp, broken), strict=True):
            health = urllib.parse.urljoin(url, "/healthz")
            procs.wait_http(child, health, timeout=60)
        host, port = document_server.server_address[:2]
        yield Servers(
            auth=auth,
            mcp=mcp,
            other=other,
            broken=broken,
            documents=documents,
            document_base=f"http://{host!s}:{port}",
        )
    finally:
        for child in children:
            child.stop()
        document_server.shutdown()
        document_server.server_close()
        for child in children:  # nothing secret in what the servers logged
            text = child.log_path.read_text()
            assert PRE_SECRET not in text
            assert "eyJ" not in text  # no JWT


def _http() -> httpx2.Client:
    return httpx2.Client(timeout=30, trust_env=False, follow_redirects=False)


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _query(location: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def _authorize(
    auth: str,
    client_id: str,
    challenge: str,
    *,
    resource: str,
    user: str = ALICE,
    method: str = "S256",
    state: str = "st-1",
) -> httpx2.Response:
    """The authorization request and the sign-in form's answer: the final redirect (or page)."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": method,
        "resource": resource,
        "scope": "notes",
        "state": state,
    }
    with _http() as client:
        page = client.get(f"{auth}/authorize", params=params)
        if page.status_code != 200:
            return page
        match = re.search(r'name="request_id" value="([^"]+)"', page.text)
        assert match, page.text
        return client.post(
            f"{auth}/authorize/decide",
            data={"request_id": match.group(1), "sub": user, "decision": "approve"},
        )


def _tokens(
    auth: str,
    client_id: str,
    *,
    resource: str,
    user: str = ALICE,
    secret: str | None = None,
    token_resource: str | None = None,
) -> dict[str, Any]:
    """Drive the whole flow; returns the token response."""
    verifier, challenge = _pkce()
    redirect = _authorize(auth, client_id, challenge, resource=resource, user=user)
    assert redirect.status_code == 302, redirect.text
    result = _query(redirect.headers["location"])
    assert result["iss"] == auth
    assert result["state"] == "st-1"
    form = {
        "grant_type": "authorization_code",
        "code": result["code"],
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "resource": token_resource or resource,
        "client_id": client_id,
    }
    with _http() as client:
        if secret is None:
            response = client.post(f"{auth}/token", data=form)
        else:
            response = client.post(f"{auth}/token", data=form, auth=(client_id, secret))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return dict(response.json())


def _register(auth: str) -> str:
    with _http() as client:
        response = client.post(
            f"{auth}/register",
            json={
                "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "client_name": "test client",
            },
        )
    assert response.status_code == 201, response.text
    assert "client_secret" not in response.json()
    return str(response.json()["client_id"])


async def _use_tools(url: str, token: str, add: dict[str, str] | None) -> dict[str, Any]:
    """The official SDK's client: list the tools, add a note if asked, then list the notes."""
    headers = {"authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30, trust_env=False) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = {t.name: t for t in (await session.list_tools()).tools}
        added = None
        if add is not None:
            added = await session.call_tool("add_note", add)
            assert not added.is_error, added
        listed = await session.call_tool("list_notes", {})
        assert not listed.is_error
        return {"tools": tools, "added": added, "notes": listed.structured_content}


def test_the_authorization_server_publishes_what_an_mcp_client_needs(servers: Servers) -> None:
    with _http() as client:
        rfc8414 = client.get(f"{servers.auth}/.well-known/oauth-authorization-server").json()
        oidc = client.get(f"{servers.auth}/.well-known/openid-configuration").json()
    assert rfc8414 == oidc
    a = servers.auth
    assert rfc8414["issuer"] == a
    assert rfc8414["authorization_endpoint"] == f"{a}/authorize"
    assert rfc8414["token_endpoint"] == f"{a}/token"
    assert rfc8414["registration_endpoint"] == f"{a}/register"
    assert rfc8414["jwks_uri"] == f"{a}/jwks"
    assert rfc8414["code_challenge_methods_supported"] == ["S256"]
    assert rfc8414["client_id_metadata_document_supported"] is True
    assert rfc8414["authorization_response_iss_parameter_supported"] is True
    assert "refresh_token" in rfc8414["grant_types_supported"]


def test_the_broken_authorization_server_advertises_what_a_client_must_refuse(
    servers: Servers,
) -> None:
    with _http() as client:
        document = client.get(f"{servers.broken}/.well-known/oauth-authorization-server").json()
        registration = client.post(f"{servers.broken}/register", json={"redirect_uris": [REDIRECT]})
        _, challenge = _pkce()
    assert document["issuer"] == "http://127.0.0.1:1" != servers.broken
    assert "code_challenge_methods_supported" not in document
    assert "registration_endpoint" not in document
    assert document["client_id_metadata_document_supported"] is False
    assert registration.status_code == 404
    page = _authorize(
        servers.broken, f"{servers.document_base}/doc.json", challenge, resource=servers.mcp
    )
    assert page.status_code == 400
    assert "not supported" in page.text


def test_no_token_or_a_bad_one_gets_401_pointing_at_the_resource_metadata(
    servers: Servers,
) -> None:
    prm = mcp_server.prm_url(servers.mcp)
    assert prm.endswith("/.well-known/oauth-protected-resource/mcp")
    with _http() as client:
        bare = client.post(servers.mcp, json=INITIALIZE, headers={"accept": "application/json"})
        forged = client.post(
            servers.mcp,
            json=INITIALIZE,
            headers={"accept": "application/json", "authorization": "Bearer a.b.c"},
        )
        metadata = client.get(prm).json()
        root = client.get(urllib.parse.urljoin(prm, "/.well-known/oauth-protected-resource"))
    for response in (bare, forged):
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        assert f'resource_metadata="{prm}"' in challenge
    assert 'error="invalid_token"' in forged.headers["www-authenticate"]
    assert metadata["resource"] == servers.mcp
    assert metadata["authorization_servers"] == [servers.auth]
    assert metadata["scopes_supported"] == ["notes"]
    assert metadata["bearer_methods_supported"] == ["header"]
    assert root.json()["resource"] == servers.mcp


def test_dynamic_registration_pkce_and_resource_give_a_token_the_sdk_client_uses(
    servers: Servers,
) -> None:
    with _http() as client:
        client.delete(f"{servers.auth}/_test/requests")
        writes_before = client.get(servers.mcp.replace("/mcp", "/_test/writes")).json()
    client_id = _register(servers.auth)
    tokens = _tokens(servers.auth, client_id, resource=servers.mcp)
    result = asyncio.run(
        _use_tools(servers.mcp, tokens["access_token"], {"title": "Hi", "body": "x"})
    )
    tools = result["tools"]
    assert set(tools) == {"list_notes", "add_note"}
    assert tools["list_notes"].annotations.read_only_hint is True
    assert tools["add_note"].annotations.read_only_hint is False
    assert tools["add_note"].annotations.destructive_hint is False
    assert [n["title"] for n in result["notes"]["notes"]] == ["Hi"]
    with _http() as client:
        writes = client.get(servers.mcp.replace("/mcp", "/_test/writes")).json()
        seen = client.get(f"{servers.auth}/_test/requests")
    assert writes["writes"] == writes_before["writes"] + 1
    received = seen.json()
    (authorization,) = received["authorization_requests"]
    assert authorization["code_challenge_method"] == "S256"
    assert authorization["resource"] == servers.mcp
    assert authorization["client_id"] == client_id
    (token_request,) = received["token_requests"]
    assert token_request["resource"] == servers.mcp
    assert token_request["has_code_verifier"] is True
    assert received["registrations"] == 1
    for secret in (tokens["access_token"], tokens["refresh_token"]):
        assert secret not in seen.text


def test_a_client_id_metadata_document_registers_the_client(servers: Servers) -> None:
    client_id = f"{servers.document_base}/client.json"
    servers.documents["/client.json"] = {
        "client_id": client_id,
        "client_name": "binder",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
    }
    tokens = _tokens(servers.auth, client_id, resource=servers.mcp, user=BOB)
    result = asyncio.run(_use_tools(servers.mcp, tokens["access_token"], None))
    assert result["notes"] == {"notes": []}  # Bob does not see Alice's notes

    _, challenge = _pkce()
    impostor = f"{servers.document_base}/impostor.json"
    servers.documents["/impostor.json"] = {**servers.documents["/client.json"]}  # names client.json
    other_redirect = f"{servers.document_base}/other.json"
    servers.documents["/other.json"] = {
        "client_id": other_redirect,
        "redirect_uris": ["http://127.0.0.1:9/elsewhere"],
    }
    refused = _authorize(servers.auth, impostor, challenge, resource=servers.mcp)
    unregistered = _authorize(servers.auth, other_redirect, challenge, resource=servers.mcp)
    assert refused.status_code == 400
    assert "another client_id" in refused.text
    assert unregistered.status_code == 400
    assert "redirect_uri" in unregistered.text
    assert "location" not in refused.headers
    assert "location" not in unregistered.headers


def test_a_pre_registered_client_must_authenticate(servers: Servers) -> None:
    tokens = _tokens(servers.auth, PRE_ID, resource=servers.mcp, secret=PRE_SECRET)
    assert tokens["token_type"] == "Bearer"
    verifier, challenge = _pkce()
    code = _query(
        _authorize(servers.auth, PRE_ID, challenge, resource=servers.mcp).headers["location"]
    )["code"]
    with _http() as client:
        response = client.post(
            f"{servers.auth}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth=(PRE_ID, "wrong"),
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_pkce_is_s256_and_checked(servers: Servers) -> None:
    client_id = _register(servers.auth)
    verifier, challenge = _pkce()
    plain = _authorize(servers.auth, client_id, verifier, resource=servers.mcp, method="plain")
    assert plain.status_code == 302
    error = _query(plain.headers["location"])
    assert error["error"] == "invalid_request"
    assert error["iss"] == servers.auth
    redirect = _authorize(servers.auth, client_id, challenge, resource=servers.mcp)
    code = _query(redirect.headers["location"])["code"]
    with _http() as client:
        response = client.post(
            f"{servers.auth}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": secrets.token_urlsafe(48),  # not the one of the challenge
                "client_id": client_id,
            },
        )
    assert response.json()["error"] == "invalid_grant"


def test_a_token_for_another_resource_is_refused(servers: Servers) -> None:
    client_id = _register(servers.auth)
    other = _tokens(servers.auth, client_id, resource=servers.other)
    with _http() as client:
        response = client.post(
            servers.mcp,
            json=INITIALIZE,
            headers={
                "accept": "application/json, text/event-stream",
                "authorization": f"Bearer {other['access_token']}",
            },
        )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    # Nor can a token request swap the resource the user consented to.
    verifier, challenge = _pkce()
    redirect = _authorize(servers.auth, client_id, challenge, resource=servers.other)
    with _http() as client:
        swapped = client.post(
            f"{servers.auth}/token",
            data={
                "grant_type": "authorization_code",
                "code": _query(redirect.headers["location"])["code"],
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
                "client_id": client_id,
                "resource": servers.mcp,
            },
        )
    assert swapped.json()["error"] == "invalid_target"


def test_refresh_tokens_rotate_and_a_replay_is_refused_and_counted(servers: Servers) -> None:
    client_id = _register(servers.auth)
    first = _tokens(servers.auth, client_id, resource=servers.mcp)
    with _http() as client:
        before = client.get(f"{servers.auth}/_test/requests").json()

        def refresh(token: str) -> httpx2.Response:
            return client.post(
                f"{servers.auth}/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": token,
                    "client_id": client_id,
                    "resource": servers.mcp,
                },
            )

        second = refresh(first["refresh_token"])
        assert second.status_code == 200
        rotated = second.json()
        assert rotated["refresh_token"] != first["refresh_token"]
        replay = refresh(first["refresh_token"])
        after_replay = refresh(rotated["refresh_token"])  # the family died with the replay
        after = client.get(f"{servers.auth}/_test/requests").json()
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert after_replay.json()["error"] == "invalid_grant"
    assert after["refreshes"] == before["refreshes"] + 1
    assert after["refresh_replays"] == before["refresh_replays"] + 1
    # The rotated access token is a self-contained JWT: the MCP server accepts it until it
    # expires (RFC 9068), whatever happened to the refresh token family since.
    result = asyncio.run(_use_tools(servers.mcp, rotated["access_token"], None))
    assert "list_notes" in result["tools"]


def test_the_provider_entry_is_what_the_binder_accepts() -> None:
    url = "http://127.0.0.1:8123/mcp"
    assert mcp_server.mcp_provider_entry(url) == {
        "name": "mcpnotes",
        "kind": "mcp",
        "url": url,
        "display_name": "MCP notes (local)",
    }
    issuer = "http://127.0.0.1:8124"
    entry = mcp_server.mcp_provider_entry(
        url, client_id="c", secret_arn="arn:x", authorization_server=issuer
    )
    assert entry["client_id"] == "c"
    assert entry["secret_arn"] == "arn:x"
    assert entry["authorization_server"] == issuer
    with pytest.raises(ValueError, match="secret_arn without client_id"):
        mcp_server.mcp_provider_entry(url, secret_arn="arn:x")
    # A pre-registered client belongs to one authorization server: the binder wants it named.
    with pytest.raises(ValueError, match="client_id without authorization_server"):
        mcp_server.mcp_provider_entry(url, client_id="c")
