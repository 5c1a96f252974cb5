"""The oidc kind (binder.providers.oidc): what it trusts in a discovery document."""

from __future__ import annotations

from typing import Any

import pytest

from binder.providers.oidc import KIND
from binder.providers.schema import (
    BuildContext,
    ProviderConfigError,
    ProviderDiscoveryError,
    parse_entry,
)
from tests.binder.providers.support import ISSUER, discover, discovery_doc, serve


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
    assert spec.display_name == "corp-sso"


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
    assert spec.supports_pkce is True  # absent: assumed (see binder.providers.oidc)
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


def test_oidc_is_never_built_without_its_document() -> None:
    """At synth there is no document: nothing is assumed in its place."""
    entry = parse_entry({"name": "corp", "kind": "oidc", "client_id": "c", "issuer": ISSUER})
    with pytest.raises(ProviderDiscoveryError, match="discovery document"):
        KIND.spec(entry, BuildContext())


def test_the_agents_userinfo_endpoint_is_not_the_binders() -> None:
    entry = {"name": "corp", "kind": "oidc", "client_id": "c", "issuer": ISSUER}
    url = "https://sso.example.com/userinfo"
    with pytest.raises(ProviderConfigError, match="userinfo_endpoint is not used by kind"):
        parse_entry({**entry, "userinfo_endpoint": url})
    assert parse_entry({**entry, "userinfo_endpoint": url}, agent_fields=True).urls() == (
        ISSUER,
        url,
    )
