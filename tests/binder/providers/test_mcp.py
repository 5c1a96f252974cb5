"""The mcp kind through the whole binder: consent, code exchange, refresh and the audience
rule, against a fake MCP server and authorization server (tests/fakes/mcp.py)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx2
import pytest
from starlette.testclient import TestClient

from binder.providers.registry import ProviderRegistry
from binder.providers.schema import ProviderConfigError
from binder.vault import TokenRecord, Vault
from tests.binder.conftest import (
    BASE,
    PROVIDER_SECRET,
    PUBLIC,
    Cognito,
    Harness,
    running_binder,
)
from tests.fakes.mcp import FakeAuthServer, FakeMcpServer

AS = "https://auth.test"
OTHER_AS = "https://other-auth.test"
ARN = "arn:aws:secretsmanager:us-east-1:111111111111:secret:mcp-client-AbCdEf"


@contextlib.contextmanager
def two_as_binder(
    aws: dict[str, Any],
    cognito: Cognito,
    auths: list[FakeAuthServer],
    servers: list[FakeMcpServer],
    entries: list[dict[str, Any]] | None = None,
    **env: str,
) -> Iterator[Harness]:
    """A binder whose providers are `servers` (named mcp-a, mcp-b, ...) and a github entry,
    each server behind its own authorization server among `auths`."""
    if entries is None:
        entries = [
            {"name": f"mcp-{chr(97 + i)}", "kind": "mcp", "url": s.url}
            for i, s in enumerate(servers)
        ]
        entries.append({"name": "fake", "kind": "github", "client_id": "gh"})
    routes: dict[str, httpx2.AsyncBaseTransport] = {
        httpx2.URL(a.issuer).host: httpx2.ASGITransport(app=a.app()) for a in auths
    }
    for server in servers:
        routes[httpx2.URL(server.origin).host] = httpx2.ASGITransport(app=server.app())
    env["PROVIDERS"] = json.dumps(entries)
    with running_binder(aws, cognito, None, routes=routes, **env) as h:
        # The authorization servers fetch the binder's metadata documents from its public port.
        for auth in auths:
            auth.cimd_transport = httpx2.ASGITransport(app=h.app)
        yield h


@contextlib.contextmanager
def mcp_binder(
    aws: dict[str, Any],
    cognito: Cognito,
    auth: FakeAuthServer,
    *servers: FakeMcpServer,
    entries: list[dict[str, Any]] | None = None,
    **env: str,
) -> Iterator[Harness]:
    """A binder whose providers are `servers` (named mcp-a, mcp-b, ...), all behind `auth`."""
    if entries is None:
        entries = [
            {"name": f"mcp-{chr(97 + i)}", "kind": "mcp", "url": s.url}
            for i, s in enumerate(servers)
        ]
    with two_as_binder(aws, cognito, [auth], list(servers), entries, **env) as h:
        yield h


def authorize_at(auth: FakeAuthServer, location: str) -> httpx2.Response:
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == auth.issuer
    with TestClient(auth.app(), base_url=auth.issuer) as browser:
        return browser.get(f"{parts.path}?{parts.query}", follow_redirects=False)


def connect(h: Harness, auth: FakeAuthServer, token: str, provider: str) -> httpx2.Response:
    """The consent flow for `provider`; the binder's callback answer."""
    first = h.request_token(token, provider=provider, scopes=[])
    assert first.status_code == 403, first.text
    redirect = h.open_authorization(token, first.json()["authorization_url"])
    assert redirect.status_code == 302, redirect.text
    consented = authorize_at(auth, redirect.headers["location"])
    assert consented.status_code == 302, consented.text
    return h.callback(token, consented.headers["location"])


def call_mcp(server: FakeMcpServer, access_token: str) -> int:
    async def call() -> int:
        transport = httpx2.ASGITransport(app=server.app())
        async with httpx2.AsyncClient(transport=transport) as http:
            response = await http.post(
                server.url, headers={"authorization": f"Bearer {access_token}"}, json={}
            )
            return response.status_code

    return anyio.run(call)


def test_consent_flow_with_a_registered_client_binds_tokens_to_the_server(
    aws: dict[str, Any], cognito: Cognito
) -> None:
    auth = FakeAuthServer(issuer=AS)
    server = FakeMcpServer(origin="https://mcp-a.test", auth=auth)
    alice = cognito.token("alice")
    with mcp_binder(aws, cognito, auth, server) as h:
        done = connect(h, auth, alice, "mcp-a")
        assert done.status_code == 200, done.text
        assert len(auth.registrations) == 1
        sent = auth.authorize_requests[0]
        assert sent["code_challenge_method"] == "S256"
        assert sent["code_challenge"]
        assert sent["resource"] == server.url
        assert sent["redirect_uri"] == f"{BASE}/oauth2/callback/mcp-a"
        exchange = auth.token_requests[0]
        assert exchange["grant_type"] == "authorization_code"
        assert exchange["resource"] == server.url
        assert exchange["code_verifier"]
        issued = h.request_token(alice, provider="mcp-a", scopes=[])
        assert issued.status_code == 200, issued.text
        assert call_mcp(server, issued.json()["access_token"]) == 200
        user_hash = _user_hash(h, alice)
        record = h.client.portal.call(  # type: ignore[union-attr]
            lambda: h.services.vault.get(user_hash, "mcp-a", cached=False)
        )
        assert record is not None
        stored = json.loads(record.to_json())
        assert (stored["issuer"], stored["resource"]) == (AS, server.url)


def _user_hash(h: Harness, token: str) -> str:
    async def verify() -> str:
        user = await h.services.verifier.verify(token)
        return user.user_hash

    return h.client.portal.call(verify)  # type: ignore[union-attr]


def test_refresh_sends_the_resource_and_rotates(aws: dict[str, Any], cognito: Cognito) -> None:
    auth = FakeAuthServer(issuer=AS)
    server = FakeMcpServer(origin="https://mcp-a.test", auth=auth)
    alice = cognito.token("alice")
    # A skew as long as the tokens' life: every token request refreshes.
    with mcp_binder(aws, cognito, auth, server, REFRESH_SKEW_SECONDS="3600") as h:
        assert connect(h, auth, alice, "mcp-a").status_code == 200
        first = h.request_token(alice, provider="mcp-a", scopes=[]).json()["access_token"]
        second = h.request_token(alice, provider="mcp-a", scopes=[]).json()["access_token"]
        refreshes = [r for r in auth.token_requests if r["grant_type"] == "refresh_token"]
        assert len(refreshes) == 2
        assert first != second
        assert all(r["resource"] == server.url for r in refreshes)
        # The second refresh used the rotated token (the fake refuses a reused one).
        assert refreshes[0]["refresh_token"] != refreshes[1]["refresh_token"]
        assert call_mcp(server, second) == 200


def test_an_iss_other_than_the_issuer_is_refused(aws: dict[str, Any], cognito: Cognito) -> None:
    auth = FakeAuthServer(issuer=AS, callback_iss="https://evil.test")
    server = FakeMcpServer(origin="https://mcp-a.test", auth=auth)
    alice = cognito.token("alice")
    with mcp_binder(aws, cognito, auth, server) as h:
        refused = connect(h, auth, alice, "mcp-a")
        assert refused.status_code == 400
        assert auth.token_requests == []  # the code was never exchanged


def test_a_missing_iss_is_refused_when_advertised(aws: dict[str, Any], cognito: Cognito) -> None:
    auth = FakeAuthServer(issuer=AS)
    server = FakeMcpServer(origin="https://mcp-a.test", auth=auth)
    alice = cognito.token("alice")
    with mcp_binder(aws, cognito, auth, server) as h:
        first = h.request_token(alice, provider="mcp-a", scopes=[])
        redirect = h.open_authorization(alice, first.json()["authorization_url"])
        location = authorize_at(auth, redirect.headers["location"]).headers["location"]
        parts = urlsplit(location)
        query = {k: v[0] for k, v in parse_qs(parts.query).items() if k != "iss"}
        stripped = f"{parts.scheme}://{parts.netloc}{parts.path}?" + "&".join(
            f"{k}={v}" for k, v in query.items()
        )
        assert h.callback(alice, stripped).status_code == 400
        assert auth.token_requests == []


def test_a_token_for_one_server_is_never_sent_to_another(
    aws: dict[str, Any], cognito: Cognito
) -> None:
    auth = FakeAuthServer(issuer=AS)
    a = FakeMcpServer(origin="https://mcp-a.test", auth=auth)
    b = FakeMcpServer(origin="https://mcp-b.test", auth=auth)
    alice = cognito.token("alice")
    with mcp_binder(aws, cognito, auth, a, b) as h:
        assert connect(h, auth, alice, "mcp-a").status_code == 200
        # Connected to A only: B asks for its own consent instead of getting A's token.
        for_b = h.request_token(alice, provider="mcp-b", scopes=[])
        assert for_b.status_code == 403
        assert for_b.json()["error"] == "consent_required"
        assert connect(h, auth, alice, "mcp-b").status_code == 200
        token_a = h.request_token(alice, provider="mcp-a", scopes=[]).json()["access_token"]
        token_b = h.request_token(alice, provider="mcp-b", scopes=[]).json()["access_token"]
        assert token_a != token_b
        assert (auth.access_tokens[token_a], auth.access_tokens[token_b]) == (a.url, b.url)
        # One registration per provider, each with its own callback only (same issuer).
        assert sorted(r["redirect_uris"] for r in auth.registrations) == [
            [f"{BASE}/oauth2/callback/mcp-a"],
            [f"{BASE}/oauth2/callback/mcp-b"],
        ]
        resources = {r["resource"] for r in auth.token_requests}
        assert resources == {a.url, b.url}


def test_a_stored_token_for_another_resource_is_not_handed_out(
    aws: dict[str, Any], cognito: Cognito
) -> None:
    auth = FakeAuthServer(issuer=AS)
    server = FakeMcpServer(origin="https://mcp-a.test", auth=auth)
    alice = cognito.token("alice")
    with mcp_binder(aws, cognito, auth, server) as h:
        assert connect(h, auth, alice, "mcp-a").status_code == 200
        vault = h.services.vault
        user_hash = _user_hash(h, alice)

        async def repoint() -> None:
            record = await vault.get(user_hash, "mcp-a", cached=False)
            assert isinstance(record, TokenRecord)
            await vault.put(user_hash, "mcp-a", replace(record, resource="https://old.test/mcp"))

        h.client.portal.call(repoint)  # type: ignore[union-attr]
        answer = h.request_token(alice, provider="mcp-a", scopes=[])
        assert answer.status_code == 403
        assert answer.json()["reason"] == "audience_mismatch"


def test_a_forwarded_authorization_link_dies(aws: dict[str, Any], cognito: Cognito) -> None:
    auth = FakeAuthServer(issuer=AS)
    server = FakeMcpServer(origin="https://mcp-a.test", auth=auth)
    alice, mallory = cognito.token("alice"), cognito.token("mallory")
    with mcp_binder(aws, cognito, auth, server) as h:
        link = h.request_token(alice, provider="mcp-a", scopes=[]).json()["authorization_url"]
        assert h.open_authorization(mallory, link).status_code == 403
        # The session is dead for its own user too.
        assert h.open_authorization(alice, link).status_code == 409
        assert auth.authorize_requests == []


def test_the_metadata_document_flow(aws: dict[str, Any], cognito: Cognito) -> None:
    auth = FakeAuthServer(issuer=AS, cimd=True, dcr=False)
    server = FakeMcpServer(origin="https://mcp-a.test", auth=auth)
    alice = cognito.token("alice")
    with mcp_binder(aws, cognito, auth, server) as h:
        assert connect(h, auth, alice, "mcp-a").status_code == 200
        assert auth.cimd_fetches == 1
        client_id = f"{BASE}/oauth2/client-metadata/mcp-a.json"
        assert auth.authorize_requests[0]["client_id"] == client_id
        assert auth.token_requests[0]["client_id"] == client_id
        # The document itself: served without a sign-in, public client, this one callback.
        doc = h.client.get(f"{PUBLIC}/oauth2/client-metadata/mcp-a.json")
        assert doc.status_code == 200
        assert doc.headers["cache-control"] == "public, max-age=300"
        assert doc.json() == {
            "client_id": client_id,
            # The consent screen says which server the binder asks for.
            "client_name": "Secure agents token binder for mcp-a",
            "redirect_uris": [f"{BASE}/oauth2/callback/mcp-a"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }


def test_a_preregistered_confidential_client(aws: dict[str, Any], cognito: Cognito) -> None:
    # The conftest's provider secret holds {"client_secret": "provider-client-secret-value"}.
    auth = FakeAuthServer(issuer=AS, preregistered={"binder-client": PROVIDER_SECRET})
    server = FakeMcpServer(origin="https://mcp-a.test", auth=auth)
    alice = cognito.token("alice")
    entries = [
        {
            "name": "mcp-a",
            "kind": "mcp",
            "url": server.url,
            "client_id": "binder-client",
            "secret_arn": aws["secret_arn"],
            "authorization_server": AS,
        }
    ]
    with mcp_binder(aws, cognito, auth, server, entries=entries) as h:
        assert connect(h, auth, alice, "mcp-a").status_code == 200
        assert auth.registrations == []


def test_no_metadata_document_without_mcp_providers(binder: Harness) -> None:
    for path in ("/oauth2/client-metadata.json", "/oauth2/client-metadata/fake.json"):
        assert binder.client.get(f"{PUBLIC}{path}").status_code == 404


def test_a_metadata_document_only_for_an_mcp_provider_that_resolved_to_it(
    aws: dict[str, Any], cognito: Cognito
) -> None:
    """mcp-a's server takes metadata documents and sends iss: its document is served (the
    request resolves it). mcp-b's server does not send iss, so mcp-b registered instead: no
    document. Unknown names, other kinds and the old shared path: the same 404."""
    auth = FakeAuthServer(issuer=AS, cimd=True)
    other = FakeAuthServer(issuer=OTHER_AS, cimd=True, iss_parameter=False)
    a = FakeMcpServer(origin="https://mcp-a.test", auth=auth)
    b = FakeMcpServer(origin="https://mcp-b.test", auth=other)
    with two_as_binder(aws, cognito, [auth, other], [a, b]) as h:
        served = h.client.get(f"{PUBLIC}/oauth2/client-metadata/mcp-a.json")
        assert served.status_code == 200
        assert served.json()["redirect_uris"] == [f"{BASE}/oauth2/callback/mcp-a"]
        refused = [
            h.client.get(f"{PUBLIC}{path}")
            for path in (
                "/oauth2/client-metadata/mcp-b.json",
                "/oauth2/client-metadata/fake.json",  # a github provider
                "/oauth2/client-metadata/nobody.json",
                "/oauth2/client-metadata/mcp-a.json.json",
                "/oauth2/client-metadata/.json",
                "/oauth2/client-metadata/a/b.json",
                "/oauth2/client-metadata/",
                "/oauth2/client-metadata.json",
            )
        ]
        assert [r.status_code for r in refused] == [404] * 8
        # Under the prefix (what the edge passes without a sign-in), one answer for all.
        assert {r.content for r in refused[:7]} == {b'{"error":"not_found"}'}
        assert other.registrations[0]["redirect_uris"] == [f"{BASE}/oauth2/callback/mcp-b"]


def test_a_metadata_document_of_a_failing_discovery_is_404_and_fetched_once(
    aws: dict[str, Any], cognito: Cognito
) -> None:
    auth = FakeAuthServer(issuer=AS, cimd=True, s256=False)
    server = FakeMcpServer(origin="https://mcp-a.test", auth=auth)
    with mcp_binder(aws, cognito, auth, server) as h:
        for _ in range(5):
            assert h.client.get(f"{PUBLIC}/oauth2/client-metadata/mcp-a.json").status_code == 404
        assert server.challenges == 1  # discovery tried once in the failure window


def test_a_failing_discovery_is_a_502_naming_nothing(
    aws: dict[str, Any], cognito: Cognito, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller learns only that discovery failed; the operator's log says why."""
    auth = FakeAuthServer(issuer=AS, s256=False)
    server = FakeMcpServer(origin="https://mcp-a.test", auth=auth)
    with (
        caplog.at_level(logging.WARNING, logger="binder.broker"),
        mcp_binder(aws, cognito, auth, server) as h,
    ):
        answer = h.request_token(cognito.token("alice"), provider="mcp-a", scopes=[])
        assert answer.status_code == 502
        assert answer.json()["code"] == "provider_discovery"
        assert "S256" not in answer.text
    (line,) = [r.getMessage() for r in caplog.records if r.name == "binder.broker"]
    assert "provider discovery refused: provider 'mcp-a'" in line
    assert "S256" in line


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"url": "http://mcp.example.com/mcp"}, "url must be an https URL"),
        ({}, "url is required"),
        ({"url": "https://mcp.example.com/mcp", "secret_arn": ARN}, "only allowed with client_id"),
        ({"url": "https://mcp.example.com/mcp", "issuer": AS}, "not used by kind"),
        (
            {"url": "https://mcp.example.com/mcp", "client_id": "c"},
            "authorization_server is required with client_id",
        ),
        (
            {
                "url": "https://mcp.example.com/mcp",
                "client_id": "c",
                "authorization_server": "http://auth.example.com",
            },
            "authorization_server must be an https URL",
        ),
        (
            {
                "url": "https://mcp.example.com/mcp",
                "client_id": "c",
                "authorization_server": "https://auth.example.com?tenant=a",
            },
            "authorization_server must not contain a query",
        ),
        (
            {"name": "team--notes", "url": "https://mcp.example.com/mcp"},
            "name must not contain '--'",
        ),
    ],
)
def test_bad_entries_are_refused(entry: dict[str, Any], problem: str) -> None:
    with pytest.raises(ProviderConfigError, match=problem):
        ProviderRegistry.from_json(json.dumps([{"name": "tools", "kind": "mcp"} | entry]))


def test_loopback_needs_the_switch() -> None:
    entry = [{"name": "tools", "kind": "mcp", "url": "http://127.0.0.1:9000/mcp"}]
    with pytest.raises(ProviderConfigError):
        ProviderRegistry.from_json(json.dumps(entry))
    registry = ProviderRegistry.from_json(json.dumps(entry), allow_insecure_loopback=True)
    assert registry.listings()[0].kind == "mcp"


def _forwarded(location: str, to: FakeAuthServer, **changes: str) -> str:
    """What a malicious authorization server does with the binder's authorization request:
    the same parameters (state, PKCE challenge, redirect_uri), sent to another server."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    return f"{to.issuer}/authorize?{urlencode(query | changes)}"


@pytest.mark.parametrize("b_claims_iss", [False, True])
def test_mix_up_through_a_malicious_authorization_server_is_refused(
    aws: dict[str, Any], cognito: Cognito, b_claims_iss: bool
) -> None:
    """Provider mcp-a's authorization server A is honest and takes metadata documents but
    sends no RFC 9207 iss; mcp-b's server B is malicious (with or without claiming iss). B
    forwards alice's authorization request for mcp-b to A, with every client_id the binder
    could have at A, hoping A sends a code to the binder's mcp-b callback, which the binder
    would redeem at B's token endpoint with the PKCE verifier."""
    honest = FakeAuthServer(issuer=AS, cimd=True, iss_parameter=False)
    evil = FakeAuthServer(issuer=OTHER_AS, cimd=True, iss_parameter=b_claims_iss)
    a = FakeMcpServer(origin="https://mcp-a.test", auth=honest)
    b = FakeMcpServer(origin="https://mcp-b.test", auth=evil)
    alice = cognito.token("alice")
    doc_a = f"{BASE}/oauth2/client-metadata/mcp-a.json"
    doc_b = f"{BASE}/oauth2/client-metadata/mcp-b.json"
    with two_as_binder(aws, cognito, [honest, evil], [a, b]) as h:
        assert connect(h, honest, alice, "mcp-a").status_code == 200
        a_client = honest.authorize_requests[0]["client_id"]
        asked = h.request_token(alice, provider="mcp-b", scopes=[])
        to_b = h.open_authorization(alice, asked.json()["authorization_url"])
        assert to_b.status_code == 302
        location = to_b.headers["location"]

        statuses = []
        for client_id in (a_client, doc_a, doc_b):
            at_a = authorize_at(honest, _forwarded(location, honest, client_id=client_id))
            statuses.append(at_a.status_code)
            if at_a.status_code == 302:
                # A accepted (mcp-b's real document names mcp-b's callback) and sent its code
                # there without iss; mcp-b's server said it sends iss: refused, not redeemed.
                back = at_a.headers["location"]
                assert back.startswith(f"{BASE}/oauth2/callback/mcp-b?")
                assert "iss" not in parse_qs(urlsplit(back).query)
                answer = h.callback(alice, back)
                assert answer.status_code == 400
                assert "lacks its issuer" in answer.text
        # A's client (registered: A sends no iss) and A's document (none) never cover mcp-b's
        # callback; mcp-b's document exists only if B claimed iss.
        assert statuses == [400, 400, 302 if b_claims_iss else 400]
        assert evil.token_requests == []
        assert [r["grant_type"] for r in honest.token_requests] == ["authorization_code"]

        (registered,) = honest.registrations
        assert registered["redirect_uris"] == [f"{BASE}/oauth2/callback/mcp-a"]
        assert h.client.get(f"{PUBLIC}/oauth2/client-metadata/mcp-a.json").status_code == 404
        document = h.client.get(f"{PUBLIC}/oauth2/client-metadata/mcp-b.json")
        if b_claims_iss:
            assert parse_qs(urlsplit(location).query)["client_id"] == [doc_b]
            assert document.json()["redirect_uris"] == [f"{BASE}/oauth2/callback/mcp-b"]
        else:
            assert document.status_code == 404
            (b_registered,) = evil.registrations
            assert b_registered["redirect_uris"] == [f"{BASE}/oauth2/callback/mcp-b"]


def test_a_refresh_never_sends_a_token_bound_elsewhere(
    aws: dict[str, Any], cognito: Cognito
) -> None:
    """Another binder task rewrote alice's record for another resource after this task cached
    it: the refresh re-reads it, finds it bound elsewhere, and sends its refresh token nowhere;
    alice is asked to consent again."""
    auth = FakeAuthServer(issuer=AS)
    server = FakeMcpServer(origin="https://mcp-a.test", auth=auth)
    alice = cognito.token("alice")
    # A skew as long as the tokens' life: every token request refreshes.
    with mcp_binder(aws, cognito, auth, server, REFRESH_SKEW_SECONDS="3600") as h:
        assert connect(h, auth, alice, "mcp-a").status_code == 200
        vault = h.services.vault
        user_hash = _user_hash(h, alice)
        other_task = Vault(
            client=vault._client,
            prefix=vault._prefix,
            kms_key_id=vault._kms_key_id,
        )

        async def repoint() -> None:
            record = await vault.get(user_hash, "mcp-a")  # cached in this task
            assert isinstance(record, TokenRecord)
            await other_task.put(
                user_hash, "mcp-a", replace(record, resource="https://old.test/mcp")
            )

        h.client.portal.call(repoint)  # type: ignore[union-attr]
        before = len(auth.token_requests)
        answer = h.request_token(alice, provider="mcp-a", scopes=[])
        assert answer.status_code == 403
        assert answer.json()["reason"] == "audience_mismatch"
        assert len(auth.token_requests) == before  # no refresh grant was sent
