"""The microsoft kind (binder.providers.microsoft): tenants and the templated issuer."""

from __future__ import annotations

import pytest

from binder.providers.microsoft import CONSUMERS_TENANT_ID
from binder.providers.registry import build_spec
from binder.providers.schema import ProviderConfigError
from tests.binder.providers.support import OTHER_TENANT, TENANT, hosts


@pytest.mark.parametrize("tenant", ["common", "organizations", "consumers", TENANT])
def test_microsoft_tenant_in_endpoints(tenant: str) -> None:
    spec = build_spec("microsoft", name="m365", client_id="11111111-2222", tenant=tenant)
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
    assert build_spec("microsoft", name="m", client_id="c").tenant == "common"
    spec = build_spec("microsoft", name="m", client_id="c", tenant=TENANT.upper())
    assert spec.tenant == TENANT
    assert TENANT in spec.token_endpoint


@pytest.mark.parametrize("tenant", ["common", "organizations"])
def test_microsoft_multi_tenant_issuer(tenant: str) -> None:
    spec = build_spec("microsoft", name="m", client_id="c", tenant=tenant)
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
        "https://login.microsoftonline.com/v2.0",
        "",
    ]
    for iss in refused:
        assert not spec.issuer_matches(iss), iss


def test_microsoft_personal_accounts_tenant() -> None:
    consumer_iss = f"https://login.microsoftonline.com/{CONSUMERS_TENANT_ID}/v2.0"
    common = build_spec("microsoft", name="m", client_id="c", tenant="common")
    organizations = build_spec("microsoft", name="m", client_id="c", tenant="organizations")
    consumers = build_spec("microsoft", name="m", client_id="c", tenant="consumers")
    assert common.issuer_matches(consumer_iss)
    assert not organizations.issuer_matches(consumer_iss)
    assert consumers.issuer_matches(consumer_iss)
    assert not consumers.issuer_matches(f"https://login.microsoftonline.com/{TENANT}/v2.0")


def test_microsoft_single_tenant_issuer_is_exact() -> None:
    spec = build_spec("microsoft", name="m", client_id="c", tenant=TENANT)
    assert spec.issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert spec.issuer_matches(f"https://login.microsoftonline.com/{TENANT}/v2.0")
    assert not spec.issuer_matches(f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0")
    assert spec.issuer_tenant(f"https://login.microsoftonline.com/{TENANT}/v2.0") is None


@pytest.mark.parametrize("tenant", ["contoso.onmicrosoft.com", "", "common/../x", "72f988bf"])
def test_microsoft_bad_tenant_refused(tenant: str) -> None:
    with pytest.raises(ProviderConfigError, match=r"provider 'm': tenant"):
        build_spec("microsoft", name="m", client_id="c", tenant=tenant)


def test_display_name() -> None:
    assert build_spec("microsoft", name="m", client_id="c").display_name == "Microsoft 365"
