"""Tests for the provider registry (binder.providers)."""

# S105/S106 read token_endpoint="https://..." and the like as hard-coded passwords; here they
# are endpoint URLs, method names and deliberately fake values.

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import pytest

from binder import providers
from binder.providers import (
    MICROSOFT_CONSUMERS_TENANT_ID,
    PendingOidc,
    ProviderConfigError,
    ProviderDiscoveryError,
    ProviderRegistry,
    ProviderSpec,
    builtin,
    discover_oidc,
    generic_oauth2,
    request_scopes,
    validate_scopes,
)

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:binder/providers/github-AbCdEf"
ISSUER = "https://sso.example.com/realms/corp"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def hosts(spec: ProviderSpec) -> set[str]:
    urls = [
        spec.authorization_endpoint,
        spec.token_endpoint,
        spec.revocation_endpoint,
        spec.userinfo_endpoint,
        spec.jwks_uri,
    ]
    found = set()
    for url in urls:
        if url is None:
            continue
        parts = urlsplit(url)
        assert parts.scheme == "https", url
        found.add(parts.hostname or "")
    return found


# --- built-ins ----------------------------------------------------------------------------


def test_github() -> None:
    spec = builtin("github", name="github", client_id="Ov23liAbC.123", secret_arn=ARN)
    assert spec.authorization_endpoint == "https://github.com/login/oauth/authorize"
    assert spec.token_endpoint == "https://github.com/login/oauth/access_token"
    assert hosts(spec) == {"github.com", "api.github.com"}
    assert spec.tokens_expire is False
    assert spec.revocation_style == "github"
    assert spec.revocation_endpoint == ("https://api.github.com/applications/Ov23liAbC.123/token")
    assert spec.is_oidc is False
    assert spec.returns_iss is False
    assert spec.supports_pkce is True
    assert spec.secret_arn == ARN


def test_google() -> None:
    spec = builtin("google", name="google", client_id="123-abc.apps.googleusercontent.com")
    assert hosts(spec) == {
        "accounts.google.com",
        "oauth2.googleapis.com",
        "openidconnect.googleapis.com",
        "www.googleapis.com",
    }
    assert spec.revocation_endpoint == "https://oauth2.googleapis.com/revoke"
    assert spec.revocation_style == "rfc7009"
    assert dict(spec.extra_authorize_params) == {
        "access_type": "offline",
        "prompt": "consent",
        "include_granted_scopes": "true",
    }
    assert spec.is_oidc is True
    assert "openid" in spec.default_scopes
    assert spec.refresh_scope is None
    assert spec.issuer_matches("https://accounts.google.com")
    assert spec.issuer_matches("accounts.google.com")
    assert not spec.issuer_matches("https://accounts.google.com/")
    assert not spec.issuer_matches("https://accounts.google.com.evil.com")


@pytest.mark.parametrize("tenant", ["common", "organizations", "consumers", TENANT])
def test_microsoft_tenant_in_endpoints(tenant: str) -> None:
    spec = builtin("microsoft", name="m365", client_id="11111111-2222", tenant=tenant)
    assert spec.authorization_endpoint == (
        f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"
    )
    assert spec.token_endpoint == f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
    assert spec.jwks_uri == f"https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"
    assert hosts(spec) == {"login.microsoftonline.com", "graph.microsoft.com"}
    assert spec.refresh_scope == "offline_access"
    assert spec.revocation_style == "none"
    assert spec.revocation_endpoint is None
    assert spec.is_oidc is True


def test_microsoft_defaults_to_common_and_normalises_guid() -> None:
    assert builtin("microsoft", name="m", client_id="c").tenant == "common"
    spec = builtin("microsoft", name="m", client_id="c", tenant=TENANT.upper())
    assert spec.tenant == TENANT
    assert TENANT in spec.token_endpoint


@pytest.mark.parametrize("tenant", ["common", "organizations"])
def test_microsoft_multi_tenant_issuer(tenant: str) -> None:
    spec = builtin("microsoft", name="m", client_id="c", tenant=tenant)
    assert spec.issuer_matches(f"https://login.microsoftonline.com/{TENANT}/v2.0")
    assert spec.issuer_matches(f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0")
    refused = [
        f"https://login.microsoftonline.com.evil.com/{TENANT}/v2.0",
        f"https://evil.example.com/{TENANT}/v2.0",
        f"http://login.microsoftonline.com/{TENANT}/v2.0",
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0",
        "https://login.microsoftonline.com/common/v2.0",
        "https://login.microsoftonline.com/{tenantid}/v2.0",
        f"https://login.microsoftonline.com/{TENANT.upper()}/v2.0",
        f"https://sts.windows.net/{TENANT}/",
        f"https://login.microsoftonline.com/{TENANT}/v2.0/",
        f"https://login.microsoftonline.com/{TENANT}/v2.0?x=1",
        "",
    ]
    for iss in refused:
        assert not spec.issuer_matches(iss), iss


def test_microsoft_personal_accounts_tenant() -> None:
    consumer_iss = f"https://login.microsoftonline.com/{MICROSOFT_CONSUMERS_TENANT_ID}/v2.0"
    common = builtin("microsoft", name="m", client_id="c", tenant="common")
    organizations = builtin("microsoft", name="m", client_id="c", tenant="organizations")
    consumers = builtin("microsoft", name="m", client_id="c", tenant="consumers")
    assert common.issuer_matches(consumer_iss)
    assert not organizations.issuer_matches(consumer_iss)
    assert consumers.issuer_matches(consumer_iss)
    assert not consumers.issuer_matches(f"https://login.microsoftonline.com/{TENANT}/v2.0")


def test_microsoft_single_tenant_issuer_is_exact() -> None:
    spec = builtin("microsoft", name="m", client_id="c", tenant=TENANT)
    assert spec.issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert spec.issuer_matches(f"https://login.microsoftonline.com/{TENANT}/v2.0")
    assert not spec.issuer_matches(f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0")


@pytest.mark.parametrize("tenant", ["contoso.onmicrosoft.com", "", "common/../x", "72f988bf"])
def test_microsoft_bad_tenant_refused(tenant: str) -> None:
    with pytest.raises(ProviderConfigError, match=r"provider 'm': tenant"):
        builtin("microsoft", name="m", client_id="c", tenant=tenant)


def test_salesforce() -> None:
    spec = builtin("salesforce", name="sfdc", client_id="3MVG9_abc.def")
    assert hosts(spec) == {"login.salesforce.com"}
    assert spec.token_endpoint == "https://login.salesforce.com/services/oauth2/token"
    assert spec.revocation_endpoint == "https://login.salesforce.com/services/oauth2/revoke"
    assert spec.default_expires_in is not None
    assert 0 < spec.default_expires_in <= 7200
    assert spec.tokens_expire is True
    assert spec.refresh_scope == "refresh_token"
    assert spec.supports_pkce is True


@pytest.mark.parametrize(
    ("tenant", "host"),
    [
        ("login", "login.salesforce.com"),
        ("test", "test.salesforce.com"),
        ("acme.my.salesforce.com", "acme.my.salesforce.com"),
        ("acme--uat.sandbox.my.salesforce.com", "acme--uat.sandbox.my.salesforce.com"),
    ],
)
def test_salesforce_hosts(tenant: str, host: str) -> None:
    spec = builtin("salesforce", name="sfdc", client_id="c", tenant=tenant)
    assert hosts(spec) == {host}


@pytest.mark.parametrize("tenant", ["evil.com", "acme.my.salesforce.com.evil.com", "a b"])
def test_salesforce_bad_host_refused(tenant: str) -> None:
    with pytest.raises(ProviderConfigError, match="tenant"):
        builtin("salesforce", name="sfdc", client_id="c", tenant=tenant)


def test_atlassian() -> None:
    spec = builtin("atlassian", name="jira", client_id="abc123")
    assert hosts(spec) == {"auth.atlassian.com", "api.atlassian.com"}
    assert dict(spec.extra_authorize_params) == {
        "audience": "api.atlassian.com",
        "prompt": "consent",
    }
    assert spec.refresh_scope == "offline_access"
    assert spec.rotates_refresh_tokens is True


def test_slack() -> None:
    spec = builtin("slack", name="slack", client_id="1234.5678")
    assert hosts(spec) == {"slack.com"}
    assert spec.scope_param == "user_scope"
    assert spec.scope_separator == ","
    assert spec.token_response_path == "authed_user"
    assert spec.revocation_style == "slack"
    assert spec.revocation_endpoint == "https://slack.com/api/auth.revoke"
    assert spec.token_endpoint_auth_method == "client_secret_basic"


def test_tenant_only_for_microsoft_and_salesforce() -> None:
    with pytest.raises(ProviderConfigError, match=r"provider 'gh': tenant"):
        builtin("github", name="gh", client_id="c", tenant="common")


def test_builtin_refuses_bad_inputs() -> None:
    with pytest.raises(ProviderConfigError, match="kind"):
        builtin("oidc", name="x", client_id="c")
    with pytest.raises(ProviderConfigError, match="name"):
        builtin("github", name="GitHub!", client_id="c")
    with pytest.raises(ProviderConfigError, match="client_id"):
        builtin("github", name="gh", client_id="")
    with pytest.raises(ProviderConfigError, match="client_id"):
        builtin("github", name="gh", client_id="has space")
    with pytest.raises(ProviderConfigError, match="secret_arn"):
        builtin("github", name="gh", client_id="c", secret_arn="not-an-arn")


def test_callback_url() -> None:
    spec = builtin("github", name="github", client_id="c")
    assert spec.callback_url("https://agents.example.com") == (
        "https://agents.example.com/oauth2/callback/github"
    )
    assert spec.callback_url("https://agents.example.com/") == (
        "https://agents.example.com/oauth2/callback/github"
    )


def test_extra_params_cannot_override_protocol_params() -> None:
    spec = builtin("google", name="google", client_id="c")
    fields = {f: getattr(spec, f) for f in spec.__dataclass_fields__}
    fields["extra_authorize_params"] = {"redirect_uri": "https://evil.example.com"}
    with pytest.raises(ProviderConfigError, match="extra_authorize_params"):
        ProviderSpec(**fields)


def test_spec_is_immutable() -> None:
    params = {"audience": "api.atlassian.com"}
    spec = builtin("atlassian", name="jira", client_id="c")
    fields = {f: getattr(spec, f) for f in spec.__dataclass_fields__}
    fields["extra_authorize_params"] = params
    copy = ProviderSpec(**fields)
    params["prompt"] = "none"
    assert "prompt" not in copy.extra_authorize_params
    with pytest.raises(TypeError):
        copy.extra_authorize_params["x"] = "y"  # type: ignore[index]
    hash(copy)


# --- generic OAuth 2.0 --------------------------------------------------------------------


def test_generic_oauth2() -> None:
    spec = generic_oauth2(
        name="crm",
        client_id="c",
        secret_arn=None,
        authorization_endpoint="https://crm.example.com/oauth/authorize",
        token_endpoint="https://crm.example.com/oauth/token",
        revocation_endpoint="https://crm.example.com/oauth/revoke",
        scopes=["read", "read", "write"],
    )
    assert spec.kind == "oauth2"
    assert spec.default_scopes == ("read", "write")
    assert spec.revocation_style == "rfc7009"
    assert spec.token_endpoint_auth_method == "client_secret_basic"
    assert spec.supports_pkce is True
    assert spec.is_oidc is False
    no_revoke = generic_oauth2(
        name="crm",
        client_id="c",
        secret_arn=None,
        authorization_endpoint="https://crm.example.com/a",
        token_endpoint="https://crm.example.com/t",
    )
    assert no_revoke.revocation_style == "none"


@pytest.mark.parametrize(
    "url",
    [
        "http://crm.example.com/token",
        "ftp://crm.example.com/token",
        "https:///token",
        "/token",
        "https://user:pass@crm.example.com/token",
        "https://crm.example.com/token#frag",
        "https://crm.example.com/to ken",
        "https://crm.exämple.com/token",
        "https://crm.example.com/token\n",
        "https://crm.example.com:99999/token",
    ],
)
def test_generic_oauth2_refuses_bad_urls(url: str) -> None:
    with pytest.raises(ProviderConfigError, match=r"provider 'crm': token_endpoint"):
        generic_oauth2(
            name="crm",
            client_id="c",
            secret_arn=None,
            authorization_endpoint="https://crm.example.com/authorize",
            token_endpoint=url,
        )


def test_error_messages_never_echo_values() -> None:
    with pytest.raises(ProviderConfigError) as excinfo:
        generic_oauth2(
            name="crm",
            client_id="c",
            secret_arn=None,
            authorization_endpoint="https://crm.example.com/authorize",
            token_endpoint="https://me:hunter2@crm.example.com/token",
        )
    assert "hunter2" not in str(excinfo.value)
    assert "crm" in str(excinfo.value)


# --- PROVIDERS (from_json) ----------------------------------------------------------------


def providers_json(*entries: dict[str, Any]) -> str:
    return json.dumps(list(entries))


def test_from_json_happy_path() -> None:
    text = providers_json(
        {"name": "github", "kind": "github", "client_id": "gh-client", "secret_arn": ARN},
        {"name": "m365", "kind": "microsoft", "client_id": "ms-client", "tenant": TENANT},
        {"name": "corp-sso", "kind": "oidc", "client_id": "corp", "issuer": ISSUER},
        {
            "name": "crm",
            "kind": "oauth2",
            "client_id": "crm",
            "authorization_endpoint": "https://crm.example.com/a",
            "token_endpoint": "https://crm.example.com/t",
            "revocation_endpoint": None,
            "scopes": ["read"],
        },
        {"name": "slack", "kind": "slack", "client_id": "1.2", "tenant": None},
    )
    registry = ProviderRegistry.from_json(text)
    assert registry.names() == ("github", "m365", "corp-sso", "crm", "slack")
    assert "corp-sso" in registry
    assert "github" in registry
    assert "nope" not in registry
    assert 42 not in registry


def test_from_json_empty_list() -> None:
    assert ProviderRegistry.from_json("[]").names() == ()


@pytest.mark.parametrize(
    ("entries", "pattern"),
    [
        (
            [
                {"name": "gh", "kind": "github", "client_id": "a"},
                {"name": "gh", "kind": "google", "client_id": "b"},
            ],
            r"provider 'gh': name is configured more than once",
        ),
        ([{"name": "x", "kind": "gitlab", "client_id": "a"}], r"provider 'x': kind"),
        ([{"name": "x", "client_id": "a"}], r"provider 'x': kind"),
        ([{"name": "gh", "kind": "github"}], r"provider 'gh': client_id is required"),
        ([{"name": "gh", "kind": "github", "client_id": ""}], r"provider 'gh': client_id"),
        ([{"name": "gh", "kind": "github", "client_id": 7}], r"provider 'gh': client_id"),
        ([{"kind": "github", "client_id": "a"}], r"PROVIDERS\[0\]: name"),
        ([{"name": "Bad Name", "kind": "github", "client_id": "a"}], r"PROVIDERS\[0\]: name"),
        (
            [{"name": "gh", "kind": "github", "client_id": "a", "tennant": "x"}],
            r"provider 'gh': 'tennant' is not a known field",
        ),
        (
            [{"name": "gh", "kind": "github", "client_id": "a", "issuer": ISSUER}],
            r"provider 'gh': issuer is not used by kind 'github'",
        ),
        ([{"name": "sso", "kind": "oidc", "client_id": "a"}], r"provider 'sso': issuer"),
        (
            [{"name": "sso", "kind": "oidc", "client_id": "a", "issuer": "http://sso.example.com"}],
            r"provider 'sso': issuer must be an https URL",
        ),
        (
            [
                {
                    "name": "crm",
                    "kind": "oauth2",
                    "client_id": "a",
                    "authorization_endpoint": "https://crm.example.com/a",
                }
            ],
            r"provider 'crm': token_endpoint is required",
        ),
        (
            [
                {
                    "name": "crm",
                    "kind": "oauth2",
                    "client_id": "a",
                    "authorization_endpoint": "http://crm.example.com/a",
                    "token_endpoint": "https://crm.example.com/t",
                }
            ],
            r"provider 'crm': authorization_endpoint must be an https URL",
        ),
        (
            [{"name": "gh", "kind": "github", "client_id": "a", "scopes": "repo"}],
            r"provider 'gh': scopes is not used",
        ),
        (
            [{"name": "gh", "kind": "github", "client_id": "a", "allowed_scopes": "repo"}],
            r"provider 'gh': allowed_scopes must be a list",
        ),
        (
            [{"name": "gh", "kind": "github", "client_id": "a", "allowed_scopes": ["a b"]}],
            r"provider 'gh': allowed_scopes is invalid",
        ),
        (["github"], r"PROVIDERS\[0\] must be a JSON object"),
    ],
)
def test_from_json_errors(entries: list[Any], pattern: str) -> None:
    with pytest.raises(ProviderConfigError, match=pattern):
        ProviderRegistry.from_json(json.dumps(entries))


@pytest.mark.parametrize("text", ["", "{", '{"name": "gh"}', "null", "[" * 100_000])
def test_from_json_refuses_non_list(text: str) -> None:
    with pytest.raises(ProviderConfigError, match="PROVIDERS"):
        ProviderRegistry.from_json(text)


def loopback_oauth2(url: str) -> str:
    return providers_json(
        {
            "name": "mock",
            "kind": "oauth2",
            "client_id": "local",
            "authorization_endpoint": url + "/authorize",
            "token_endpoint": url + "/token",
        }
    )


@pytest.mark.parametrize(
    "base", ["http://127.0.0.1:9400", "http://localhost:9400", "http://[::1]:9400"]
)
def test_http_loopback_needs_the_flag(base: str) -> None:
    with pytest.raises(ProviderConfigError, match="must be an https URL"):
        ProviderRegistry.from_json(loopback_oauth2(base))
    registry = ProviderRegistry.from_json(loopback_oauth2(base), allow_insecure_loopback=True)
    assert registry.names() == ("mock",)


@pytest.mark.parametrize(
    "base",
    [
        "http://localhost.evil.com",
        "http://127.0.0.1.evil.com",
        "http://127.0.0.2:9400",
        "http://10.0.0.5",
        "http://evil.com",
        "http://127.0.0.1@evil.com",
        "http://localhost:9400@evil.com",
    ],
)
def test_http_non_loopback_refused_even_with_flag(base: str) -> None:
    with pytest.raises(ProviderConfigError, match="authorization_endpoint"):
        ProviderRegistry.from_json(loopback_oauth2(base), allow_insecure_loopback=True)


def test_oidc_loopback_issuer_allowed_with_flag() -> None:
    text = providers_json(
        {"name": "mock", "kind": "oidc", "client_id": "local", "issuer": "http://127.0.0.1:9400"}
    )
    with pytest.raises(ProviderConfigError, match="issuer"):
        ProviderRegistry.from_json(text)
    assert "mock" in ProviderRegistry.from_json(text, allow_insecure_loopback=True)


# --- OIDC discovery -----------------------------------------------------------------------


def discovery_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
        "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
        "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs",
        "userinfo_endpoint": f"{ISSUER}/protocol/openid-connect/userinfo",
        "revocation_endpoint": f"{ISSUER}/protocol/openid-connect/revoke",
        "scopes_supported": ["openid", "profile", "offline_access"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "authorization_response_iss_parameter_supported": True,
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


Handler = (
    Callable[[httpx2.Request], httpx2.Response]
    | Callable[[httpx2.Request], Coroutine[None, None, httpx2.Response]]
)


def client(handler: Handler) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


def serve(doc: Any, status: int = 200) -> tuple[Handler, list[str]]:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(status, json=doc)

    return handler, seen


async def discover(handler: Handler, **kwargs: Any) -> ProviderSpec:
    async with client(handler) as http:
        args: dict[str, Any] = {
            "name": "corp-sso",
            "issuer": ISSUER,
            "client_id": "corp",
            "secret_arn": None,
        }
        args.update(kwargs)
        return await discover_oidc(http=http, **args)


@pytest.mark.anyio
async def test_discover_oidc_happy_path() -> None:
    handler, seen = serve(discovery_doc())
    spec = await discover(handler, scopes=["profile"])
    assert seen == [f"{ISSUER}/.well-known/openid-configuration"]
    assert spec.kind == "oidc"
    assert spec.is_oidc is True
    assert spec.issuer == ISSUER
    assert spec.issuer_matches(ISSUER)
    assert not spec.issuer_matches(ISSUER + "/")
    assert spec.authorization_endpoint == f"{ISSUER}/protocol/openid-connect/auth"
    assert spec.token_endpoint == f"{ISSUER}/protocol/openid-connect/token"
    assert spec.jwks_uri == f"{ISSUER}/protocol/openid-connect/certs"
    assert spec.revocation_endpoint == f"{ISSUER}/protocol/openid-connect/revoke"
    assert spec.revocation_style == "rfc7009"
    assert spec.returns_iss is True
    assert spec.supports_pkce is True
    assert spec.default_scopes == ("openid", "offline_access", "profile")
    assert spec.token_endpoint_auth_method == "client_secret_basic"


@pytest.mark.anyio
async def test_discover_oidc_trailing_slash_issuer() -> None:
    handler, seen = serve(discovery_doc(issuer="https://sso.example.com/"))
    spec = await discover(handler, issuer="https://sso.example.com/")
    assert seen == ["https://sso.example.com/.well-known/openid-configuration"]
    assert spec.issuer == "https://sso.example.com/"


@pytest.mark.anyio
async def test_discover_oidc_minimal_document_defaults() -> None:
    doc = discovery_doc(
        revocation_endpoint=None,
        userinfo_endpoint=None,
        scopes_supported=None,
        code_challenge_methods_supported=None,
        token_endpoint_auth_methods_supported=None,
        authorization_response_iss_parameter_supported=None,
    )
    spec = await discover(serve(doc)[0])
    assert spec.default_scopes == ("openid",)
    assert spec.supports_pkce is True  # absent: assumed (see discover_oidc)
    assert spec.returns_iss is False
    assert spec.revocation_style == "none"
    assert spec.revocation_endpoint is None
    assert spec.token_endpoint_auth_method == "client_secret_basic"


@pytest.mark.anyio
async def test_discover_oidc_capabilities_taken_at_their_word() -> None:
    doc = discovery_doc(
        code_challenge_methods_supported=["plain"],
        token_endpoint_auth_methods_supported=["client_secret_post", "private_key_jwt"],
        authorization_response_iss_parameter_supported=False,
    )
    spec = await discover(serve(doc)[0])
    assert spec.supports_pkce is False
    assert spec.token_endpoint_auth_method == "client_secret_post"
    assert spec.returns_iss is False


@pytest.mark.anyio
@pytest.mark.parametrize(
    "issuer",
    ["https://evil.example.com/realms/corp", ISSUER + "/", ISSUER.upper(), None, 42],
)
async def test_discover_oidc_issuer_mismatch_refused(issuer: Any) -> None:
    doc = discovery_doc()
    doc["issuer"] = issuer
    with pytest.raises(ProviderDiscoveryError, match="issuer does not equal"):
        await discover(serve(doc)[0])


@pytest.mark.anyio
@pytest.mark.parametrize("status", [201, 301, 302, 404, 500])
async def test_discover_oidc_non_200_refused(status: int) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            status, json=discovery_doc(), headers={"Location": "https://evil.example.com/"}
        )

    with pytest.raises(ProviderDiscoveryError, match=f"HTTP {status}"):
        await discover(handler)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"[" * 100_000, "not valid JSON"),
        (b" " * (providers.MAX_DISCOVERY_BYTES + 1), "too large"),
    ],
)
async def test_discover_oidc_bad_documents(body: bytes, pattern: str) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body)

    with pytest.raises(ProviderDiscoveryError, match=pattern):
        await discover(handler)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "overrides",
    [
        {"token_endpoint": "http://sso.example.com/token"},
        {"authorization_endpoint": None},
        {"jwks_uri": None},
        {"userinfo_endpoint": "https://user:pw@sso.example.com/userinfo"},
        {"scopes_supported": "openid offline_access"},
        {"token_endpoint_auth_methods_supported": ["private_key_jwt"]},
    ],
)
async def test_discover_oidc_refuses_untrustworthy_fields(overrides: dict[str, Any]) -> None:
    with pytest.raises(ProviderDiscoveryError, match=r"provider 'corp-sso'"):
        await discover(serve(discovery_doc(**overrides))[0])


@pytest.mark.anyio
async def test_discover_oidc_loopback_only_with_flag() -> None:
    issuer = "http://127.0.0.1:9400"
    doc = discovery_doc(
        issuer=issuer,
        authorization_endpoint=f"{issuer}/authorize",
        token_endpoint=f"{issuer}/token",
        jwks_uri=f"{issuer}/jwks",
        userinfo_endpoint=None,
        revocation_endpoint=None,
    )
    with pytest.raises(ProviderConfigError, match="issuer"):
        await discover(serve(doc)[0], issuer=issuer)
    spec = await discover(serve(doc)[0], issuer=issuer, allow_insecure_loopback=True)
    assert spec.token_endpoint == f"{issuer}/token"


@pytest.mark.anyio
async def test_discover_oidc_transport_error() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    with pytest.raises(ProviderDiscoveryError, match="ConnectError"):
        await discover(handler)


@pytest.mark.anyio
async def test_discover_oidc_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "DISCOVERY_TIMEOUT_SECONDS", 0.05)

    async def handler(request: httpx2.Request) -> httpx2.Response:
        await anyio.sleep(5)
        return httpx2.Response(200, json=discovery_doc())

    with pytest.raises(ProviderDiscoveryError, match="timed out"):
        await discover(handler)


# --- registry get() -----------------------------------------------------------------------


def oidc_registry() -> ProviderRegistry:
    return ProviderRegistry.from_json(
        providers_json(
            {"name": "github", "kind": "github", "client_id": "gh"},
            {
                "name": "corp-sso",
                "kind": "oidc",
                "client_id": "corp",
                "issuer": ISSUER,
                "scopes": ["profile"],
                "allowed_scopes": ["email"],
            },
        )
    )


@pytest.mark.anyio
async def test_get_builtin_needs_no_fetch() -> None:
    handler, seen = serve(discovery_doc())
    async with client(handler) as http:
        spec = await oidc_registry().get("github", http)
    assert spec.kind == "github"
    assert seen == []


@pytest.mark.anyio
async def test_get_unknown_name_is_key_error() -> None:
    async with client(serve(discovery_doc())[0]) as http:
        with pytest.raises(KeyError):
            await oidc_registry().get("gitlab", http)


@pytest.mark.anyio
async def test_get_resolves_oidc_once_for_concurrent_callers() -> None:
    calls = 0

    async def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)  # keep the first fetch in flight while the others arrive
        return httpx2.Response(200, json=discovery_doc())

    registry = oidc_registry()
    results: list[ProviderSpec] = []
    async with client(handler) as http:

        async def fetch() -> None:
            results.append(await registry.get("corp-sso", http))

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(fetch)
        again = await registry.get("corp-sso", http)

    assert calls == 1
    assert len(results) == 8
    assert all(spec is again for spec in results)
    assert again.default_scopes == ("openid", "offline_access", "profile")
    assert again.allowed_scopes == frozenset({"email"})


@pytest.mark.anyio
async def test_failed_discovery_is_retried() -> None:
    responses = [httpx2.Response(503), httpx2.Response(200, json=discovery_doc())]
    calls = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        return responses.pop(0)

    registry = oidc_registry()
    async with client(handler) as http:
        with pytest.raises(ProviderDiscoveryError, match="HTTP 503"):
            await registry.get("corp-sso", http)
        spec = await registry.get("corp-sso", http)
        assert await registry.get("corp-sso", http) is spec
    assert calls == 2
    assert spec.issuer == ISSUER


def test_registry_constructor_refuses_duplicates() -> None:
    spec = builtin("github", name="gh", client_id="c")
    pending = PendingOidc(name="gh", issuer=ISSUER, client_id="c", secret_arn=None)
    with pytest.raises(ProviderConfigError, match="more than once"):
        ProviderRegistry([spec, pending])


# --- scopes -------------------------------------------------------------------------------


def test_validate_scopes_dedupes_in_order() -> None:
    spec = builtin("github", name="gh", client_id="c")
    assert validate_scopes(spec, ["repo", "read:org", "repo"]) == ("repo", "read:org")
    assert validate_scopes(spec, []) == ()
    assert validate_scopes(spec, ("https://www.googleapis.com/auth/drive",)) == (
        "https://www.googleapis.com/auth/drive",
    )


@pytest.mark.parametrize(
    "bad",
    ["", "two words", "a,b", "tab\there", "naïve", 'quo"te', "back\\slash", "x" * 257],
)
def test_validate_scopes_refuses_bad_scope(bad: str) -> None:
    spec = builtin("github", name="gh", client_id="c")
    with pytest.raises(ValueError, match="scope") as excinfo:
        validate_scopes(spec, ["repo", bad])
    assert not isinstance(excinfo.value, ProviderConfigError)
    if bad:  # the offending scope is named, ASCII-escaped so it is safe to log
        assert ascii(bad[:64]) in str(excinfo.value)


def test_validate_scopes_refuses_string_and_non_strings() -> None:
    spec = builtin("github", name="gh", client_id="c")
    with pytest.raises(ValueError, match="list"):
        validate_scopes(spec, "repo")
    with pytest.raises(ValueError, match="strings"):
        validate_scopes(spec, ["repo", 3])  # type: ignore[list-item]


def test_validate_scopes_limit() -> None:
    spec = builtin("github", name="gh", client_id="c")
    assert len(validate_scopes(spec, [f"s{i}" for i in range(50)])) == 50
    with pytest.raises(ValueError, match="at most 50"):
        validate_scopes(spec, [f"s{i}" for i in range(51)])


def test_validate_scopes_allow_list() -> None:
    spec = builtin("github", name="gh", client_id="c", allowed_scopes=["repo", "read:user"])
    assert validate_scopes(spec, ["read:user"]) == ("read:user",)
    with pytest.raises(ValueError, match=r"'admin:org' is not allowed for provider 'gh'"):
        validate_scopes(spec, ["repo", "admin:org"])


def test_request_scopes_adds_defaults_and_refresh_scope() -> None:
    ms = builtin("microsoft", name="m", client_id="c")
    assert request_scopes(ms, ["User.Read", "openid", "Mail.Read"]) == (
        "openid",
        "User.Read",
        "Mail.Read",
        "offline_access",
    )
    google = builtin("google", name="g", client_id="c")
    assert request_scopes(google, []) == ("openid",)
    sfdc = builtin("salesforce", name="s", client_id="c")
    assert request_scopes(sfdc, ["api", "refresh_token"]) == ("api", "refresh_token")
    slack = builtin("slack", name="slack", client_id="c")
    assert request_scopes(slack, ["chat:write", "users:read"]) == ("chat:write", "users:read")
    with pytest.raises(ValueError, match="scope"):
        request_scopes(slack, ["chat:write,admin"])


def test_an_empty_allow_list_allows_only_what_the_binder_requests_anyway() -> None:
    registry = ProviderRegistry.from_json(
        providers_json({"name": "m", "kind": "microsoft", "client_id": "c", "allowed_scopes": []})
    )
    ms = builtin("microsoft", name="m", client_id="c", allowed_scopes=[])
    assert "m" in registry
    assert ms.allowed_scopes == frozenset()
    assert validate_scopes(ms, ["openid", "offline_access"]) == ("openid", "offline_access")
    with pytest.raises(ValueError, match=r"'User.Read' is not allowed for provider 'm'"):
        validate_scopes(ms, ["User.Read"])
    assert request_scopes(ms, []) == ("openid", "offline_access")
