"""The salesforce kind (binder.providers.salesforce): login hosts and the missing expires_in."""

from __future__ import annotations

import pytest

from binder.providers.registry import build_spec
from binder.providers.schema import ProviderConfigError
from tests.binder.providers.support import hosts


def test_salesforce() -> None:
    spec = build_spec("salesforce", name="sfdc", client_id="3MVG9_abc.def")
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
        ("ACME.my.salesforce.com", "acme.my.salesforce.com"),
        ("acme--uat.sandbox.my.salesforce.com", "acme--uat.sandbox.my.salesforce.com"),
    ],
)
def test_salesforce_hosts(tenant: str, host: str) -> None:
    spec = build_spec("salesforce", name="sfdc", client_id="c", tenant=tenant)
    assert hosts(spec) == {host}
    assert spec.tenant == host


@pytest.mark.parametrize("tenant", ["evil.com", "acme.my.salesforce.com.evil.com", "a b"])
def test_salesforce_bad_host_refused(tenant: str) -> None:
    with pytest.raises(ProviderConfigError, match="tenant"):
        build_spec("salesforce", name="sfdc", client_id="c", tenant=tenant)


def test_display_name() -> None:
    assert build_spec("salesforce", name="s", client_id="c").display_name == "Salesforce"
