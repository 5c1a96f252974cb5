"""mcp discovery: the PRM from the 401 challenge or the well-known URLs, the authorization
server's metadata and its trust checks, and the client, in the MCP spec's order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import boto3
import httpx2
import pytest
from moto import mock_aws

from binder.providers.mcp import (
    as_metadata_urls,
    canonical_resource,
    check_discovered_url,
    internal_address,
    prm_urls,
)
from binder.providers.mcp_discovery import challenge_params, discover
from binder.providers.schema import ProviderDiscoveryError, ResolveContext, parse_entry
from binder.providers.spec import ProviderSpec
from binder.registrations import ClientRegistrations
from binder.vault import Vault
from tests.binder.conftest import HostRouter
from tests.fakes.mcp import FakeAuthServer, FakeMcpServer

AS = "https://auth.test"
BASE = "https://agents.example.com"
ARN = "arn:aws:secretsmanager:us-east-1:111111111111:secret:mcp-client-AbCdEf"
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def vault() -> Iterator[Vault]:
    with mock_aws():
        key = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
        client = boto3.client("secretsmanager", region_name="us-east-1")
        yield Vault(client=client, prefix="vault-test", kms_key_id=key)


def servers(**auth: Any) -> tuple[FakeAuthServer, FakeMcpServer]:
    server = FakeAuthServer(issuer=AS, **auth)
    return server, FakeMcpServer(origin="https://mcp-a.test", auth=server)


def http_for(auth: FakeAuthServer, *mcps: FakeMcpServer) -> httpx2.AsyncClient:
    routes: dict[str, httpx2.AsyncBaseTransport] = {
        "auth.test": httpx2.ASGITransport(app=auth.app())
    }
    for mcp in mcps:
        routes[httpx2.URL(mcp.origin).host] = httpx2.ASGITransport(app=mcp.app())
    return httpx2.AsyncClient(transport=HostRouter(routes))


async def resolve(
    mcp: FakeMcpServer,
    registrations: ClientRegistrations | None = None,
    *,
    base: str = BASE,
    loopback: bool = False,
    **entry: Any,
) -> ProviderSpec:
    parsed = parse_entry({"name": "tools", "kind": "mcp", "url": mcp.url, **entry})
    async with http_for(mcp.auth, mcp) as http:
        context = ResolveContext(
            http=http,
            public_base_url=base,
            registrations=registrations,
            allow_insecure_loopback=loopback,
        )
        return await discover(parsed, context)


async def test_discovery_from_the_401_challenge(vault: Vault) -> None:
    _auth, mcp = servers()
    spec = await resolve(mcp, ClientRegistrations(vault=vault))
    assert spec.resource == "https://mcp-a.test/mcp"
    assert spec.issuer == AS
    assert spec.authorization_endpoint == f"{AS}/authorize"
    assert spec.revocation_endpoint == f"{AS}/revoke"
    assert spec.returns_iss
    assert spec.supports_pkce
    assert not spec.is_oidc
    assert spec.default_scopes == ("mcp:tools",)  # the challenge's scope


async def test_discovery_falls_back_to_the_well_known_prm(vault: Vault) -> None:
    _auth, mcp = servers()
    mcp.challenge = False
    mcp.scopes = ("read", "write")
    spec = await resolve(mcp, ClientRegistrations(vault=vault))
    assert spec.resource == mcp.url
    assert spec.default_scopes == ("read", "write")  # the PRM's scopes_supported


async def test_configured_scopes_win() -> None:
    _auth, mcp = servers()
    spec = await resolve(mcp, client_id="pre", authorization_server=AS, scopes=["files:read"])
    assert spec.default_scopes == ("files:read",)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"metadata_issuer": "https://evil.test"}, "issuer does not equal"),
        ({"metadata_issuer": f"{AS}/"}, "issuer does not equal"),
        ({"s256": False}, "PKCE S256"),
    ],
)
async def test_untrustworthy_authorization_servers_are_refused(
    change: dict[str, Any], problem: str
) -> None:
    _auth, mcp = servers(**change)
    with pytest.raises(ProviderDiscoveryError, match=problem) as refused:
        await resolve(mcp, client_id="pre", authorization_server=AS)
    assert "'tools'" in str(refused.value)


@pytest.mark.parametrize("other", ["https://mcp-b.test/mcp", "https://mcp-a.test/other"])
async def test_a_prm_for_another_resource_is_refused(other: str) -> None:
    _auth, mcp = servers()
    mcp.prm_resource = other
    with pytest.raises(ProviderDiscoveryError, match="another resource"):
        await resolve(mcp, client_id="pre", authorization_server=AS)


async def test_a_prm_differing_only_in_case_and_default_port_is_accepted() -> None:
    _auth, mcp = servers()
    mcp.prm_resource = "HTTPS://MCP-A.test:443/mcp"
    spec = await resolve(mcp, client_id="pre", authorization_server=AS)
    assert spec.resource == "https://mcp-a.test/mcp"


async def test_a_preregistered_client_with_a_secret_is_confidential() -> None:
    auth, mcp = servers()
    spec = await resolve(mcp, client_id="pre", secret_arn=ARN, authorization_server=AS)
    assert (spec.client_id, spec.secret_arn) == ("pre", ARN)
    assert spec.token_endpoint_auth_method == "client_secret_basic"
    assert auth.registrations == []


async def test_a_preregistered_client_without_a_secret_is_public() -> None:
    _auth, mcp = servers(cimd=True)
    spec = await resolve(mcp, client_id="pre", authorization_server=AS)
    assert (spec.client_id, spec.secret_arn, spec.token_endpoint_auth_method) == (
        "pre",
        None,
        "none",
    )


async def test_a_metadata_document_comes_before_registration() -> None:
    auth, mcp = servers(cimd=True)
    spec = await resolve(mcp)
    assert spec.client_id == f"{BASE}/oauth2/client-metadata/tools.json"
    assert spec.token_endpoint_auth_method == "none"
    assert spec.returns_iss  # so the callback requires iss
    assert auth.registrations == []


async def test_a_metadata_document_needs_rfc_9207_iss(vault: Vault) -> None:
    """A server that takes metadata documents but sends no iss gets a registered client with
    this provider's callback only (the mix-up defence: binder.providers.mcp)."""
    auth, mcp = servers(cimd=True, iss_parameter=False)
    spec = await resolve(mcp, ClientRegistrations(vault=vault))
    assert spec.client_id.startswith("dcr-")
    assert not spec.returns_iss
    assert auth.registrations[0]["redirect_uris"] == [f"{BASE}/oauth2/callback/tools"]


@pytest.mark.parametrize(
    ("base", "loopback", "document"),
    [
        ("http://127.0.0.1:8000", True, True),  # the local stack's edge
        ("http://127.0.0.1:8000", False, False),
        ("http://agents.internal", True, False),  # http beyond loopback: never
    ],
)
async def test_a_metadata_document_needs_a_base_url_like_every_other_url(
    base: str, loopback: bool, document: bool
) -> None:
    """https, or http on loopback in the local stack: else the server registers the binder."""
    _auth, mcp = servers(cimd=True, dcr=False)
    if document:
        spec = await resolve(mcp, base=base, loopback=loopback)
        assert spec.client_id == f"{base}/oauth2/client-metadata/tools.json"
    else:
        with pytest.raises(ProviderDiscoveryError, match="neither client metadata documents"):
            await resolve(mcp, base=base, loopback=loopback)


async def test_no_way_to_get_a_client_is_refused() -> None:
    _auth, mcp = servers(dcr=False)
    with pytest.raises(ProviderDiscoveryError, match="neither client metadata documents"):
        await resolve(mcp)


@pytest.mark.usefixtures("atomic_secretsmanager")
async def test_registration_happens_once_under_concurrency_and_survives_a_restart(
    vault: Vault,
) -> None:
    auth, mcp = servers()
    # Five binders (each its own store, as separate processes) resolve at the same time.
    stores = [ClientRegistrations(vault=vault) for _ in range(5)]
    specs: list[ProviderSpec] = []

    async def one(store: ClientRegistrations) -> None:
        specs.append(await resolve(mcp, store))

    async with anyio.create_task_group() as group:
        for store in stores:
            group.start_soon(one, store)
    assert len(auth.registrations) == 1
    assert len({s.client_id for s in specs}) == 1
    assert auth.registrations[0]["redirect_uris"] == [f"{BASE}/oauth2/callback/tools"]
    # A restarted binder reads the stored client instead of registering again.
    again = await resolve(mcp, ClientRegistrations(vault=vault))
    assert again.client_id == specs[0].client_id
    assert len(auth.registrations) == 1
    # The registered client is public ("none" offered), so no secret is stored or referenced.
    assert again.secret_arn is None
    assert again.token_endpoint_auth_method == "none"


async def test_a_confidential_registration_keeps_its_secret_in_the_vault(vault: Vault) -> None:
    _auth, mcp = servers(auth_methods=("client_secret_post",))
    store = ClientRegistrations(vault=vault)
    spec = await resolve(mcp, store)
    assert spec.token_endpoint_auth_method == "client_secret_post"
    assert spec.secret_arn == store.secret_name(AS, "tools")
    value = json.loads(
        boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(
            SecretId=spec.secret_arn
        )["SecretString"]
    )
    assert value["client_id"] == spec.client_id
    assert value["client_secret"]


async def test_a_stale_claim_is_taken_over(vault: Vault) -> None:
    auth, mcp = servers()
    store = ClientRegistrations(vault=vault, claim_seconds=0.0)
    name = store.secret_name(AS, "tools")
    # A binder died after claiming the registration.
    await vault.create_secret(
        name,
        json.dumps({"status": "registering", "issuer": AS, "provider": "tools", "claimed_at": 0}),
        description="claim",
        tags={},
    )
    spec = await resolve(mcp, store)
    assert spec.client_id.startswith("dcr-")
    assert len(auth.registrations) == 1


def test_challenge_parameters() -> None:
    header = 'Bearer error="invalid_token", resource_metadata="https://a.test/x", scope="a b"'
    assert challenge_params(header) == {
        "error": "invalid_token",
        "resource_metadata": "https://a.test/x",
        "scope": "a b",
    }
    assert challenge_params("Basic realm=x") == {}
    assert challenge_params("Bearer " + "x" * 5000) == {}


def test_well_known_urls() -> None:
    assert prm_urls("https://m.test/api/mcp") == (
        "https://m.test/.well-known/oauth-protected-resource/api/mcp",
        "https://m.test/.well-known/oauth-protected-resource",
    )
    assert as_metadata_urls("https://a.test/tenant") == (
        "https://a.test/.well-known/oauth-authorization-server/tenant",
        "https://a.test/.well-known/openid-configuration/tenant",
        "https://a.test/tenant/.well-known/openid-configuration",
    )
    assert canonical_resource("HTTPS://M.test:443/") == "https://m.test"
    assert canonical_resource("https://m.test:8443/mcp#x") == "https://m.test:8443/mcp"


async def test_registrations_are_per_provider_and_checked_on_read(vault: Vault) -> None:
    """Two providers behind one issuer: two clients, each with its own callback, in two
    secrets; a stored value naming another provider is not used as this provider's client."""
    auth, mcp = servers()
    store = ClientRegistrations(vault=vault, wait_seconds=0.2)
    first = await resolve(mcp, store)
    parsed = parse_entry({"name": "notes", "kind": "mcp", "url": mcp.url})
    async with http_for(auth, mcp) as http:
        context = ResolveContext(http=http, public_base_url=BASE, registrations=store)
        second = await discover(parsed, context)
    assert first.client_id != second.client_id
    assert [r["redirect_uris"] for r in auth.registrations] == [
        [f"{BASE}/oauth2/callback/tools"],
        [f"{BASE}/oauth2/callback/notes"],
    ]
    assert [r["client_name"] for r in auth.registrations] == [
        "Secure agents token binder for tools",
        "Secure agents token binder for notes",
    ]
    assert store.secret_name(AS, "tools") != store.secret_name(AS, "notes")
    # "tools"'s secret rewritten to hold notes's client: refused, never handed to tools.
    name = store.secret_name(AS, "tools")
    _value, version = await vault.read_secret(name) or ("", "")
    forged = {
        "status": "registered",
        "issuer": AS,
        "provider": "notes",
        "client_id": second.client_id,
        "token_endpoint_auth_method": "none",
        "redirect_uris": [f"{BASE}/oauth2/callback/tools"],
    }
    await vault.swap_secret(name, json.dumps(forged), expected=version)
    with pytest.raises(ProviderDiscoveryError, match="registration unavailable"):
        await resolve(mcp, ClientRegistrations(vault=vault, wait_seconds=0.2))


async def test_a_failed_registration_leaves_no_secret_behind(vault: Vault) -> None:
    """A registration endpoint that fails (or a server naming a new authorization server at
    each discovery, each failing): the claim is deleted, so failures create no secrets."""
    _auth, mcp = servers(overrides={"registration_endpoint": f"{AS}/missing"})
    store = ClientRegistrations(vault=vault)
    for _ in range(3):
        with pytest.raises(ProviderDiscoveryError, match="client registration answered HTTP"):
            await resolve(mcp, store)
    listed = boto3.client("secretsmanager", region_name="us-east-1").list_secrets()
    assert [s["Name"] for s in listed["SecretList"] if "/_mcp-client/" in s["Name"]] == []
    # The name is free again at once: the next registration (now working) claims it.
    mcp.auth.overrides.clear()
    spec = await resolve(mcp, store)
    assert spec.client_id.startswith("dcr-")


# -- the pinned authorization server ------------------------------------------------------


async def test_a_pinned_authorization_server_must_be_listed_exactly() -> None:
    _auth, mcp = servers()
    spec = await resolve(mcp, client_id="pre", authorization_server=AS)
    assert spec.issuer == AS
    for pinned in ("https://other.test", f"{AS}/"):
        with pytest.raises(ProviderDiscoveryError, match="another authorization server than"):
            await resolve(mcp, client_id="pre", authorization_server=pinned)


async def test_the_pinned_server_is_used_even_when_not_first(vault: Vault) -> None:
    auth, mcp = servers()
    mcp.authorization_servers = ["https://first.test", AS]
    spec = await resolve(mcp, client_id="pre", authorization_server=AS)
    assert spec.issuer == AS
    assert spec.token_endpoint == f"{AS}/token"
    # Unpinned, the first is taken (and here it is unreachable).
    with pytest.raises(ProviderDiscoveryError, match="authorization server metadata"):
        await resolve(mcp, ClientRegistrations(vault=vault))
    assert auth.registrations == []


# -- SSRF ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.0.0.1",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 - a URL host here, not a bind address
        "[::1]",
        "[::]",
        "[fe80::1]",
        "[fd00::1]",
        "[::ffff:169.254.169.254]",
        "localhost",
        "localhost.",
        "metadata.localhost",
        "127.0.0.1.",
        "[2002:a00:1::]",  # 6to4 of 10.0.0.1
        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",  # Teredo
        "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
        "[fe80::1%25eth0]",
        "ip6-localhost",
        "localhost6",
        "[fec0::1]",
    ],
)
def test_discovered_urls_at_internal_addresses_are_refused(host: str) -> None:
    url = f"https://{host}/x"
    with pytest.raises(ProviderDiscoveryError, match="points to an internal address"):
        check_discovered_url("tools", "token_endpoint", url, False)
    # The local stack (every server on loopback) allows them.
    assert check_discovered_url("tools", "token_endpoint", url, True) == url


@pytest.mark.parametrize(
    "host", ["auth.example.com", "8.8.8.8", "[2001:4860:4860::8888]", "100.128.0.1", "10.example"]
)
def test_discovered_urls_at_public_addresses_and_names_pass(host: str) -> None:
    url = f"https://{host}/x"
    assert check_discovered_url("tools", "token_endpoint", url, False) == url
    assert not internal_address(host)


async def test_a_challenge_pointing_to_an_internal_address_is_not_followed() -> None:
    auth, mcp = servers()
    mcp.prm_url = "https://169.254.169.254/latest/meta-data"
    with pytest.raises(ProviderDiscoveryError, match="names an unusable metadata URL"):
        await resolve(mcp, client_id="pre", authorization_server=AS)
    assert auth.authorize_requests == auth.token_requests == []


async def test_a_prm_naming_an_internal_authorization_server_is_refused() -> None:
    _auth, mcp = servers()
    mcp.authorization_servers = ["https://10.0.0.1"]
    with pytest.raises(ProviderDiscoveryError, match="points to an internal address"):
        await resolve(mcp, client_id="pre", authorization_server="https://10.0.0.1")


@pytest.mark.parametrize("endpoint", ["token_endpoint", "registration_endpoint"])
async def test_discovery_refuses_endpoints_at_internal_addresses(
    vault: Vault, endpoint: str
) -> None:
    auth, mcp = servers()
    auth.overrides = {endpoint: "https://192.168.0.10/x"}
    with pytest.raises(ProviderDiscoveryError, match=f"{endpoint} points to an internal address"):
        await resolve(mcp, ClientRegistrations(vault=vault))
    assert auth.registrations == []
