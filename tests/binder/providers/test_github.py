"""The github kind (binder.providers.github)."""

from __future__ import annotations

import pytest

from binder.providers.registry import build_spec
from binder.providers.schema import ProviderConfigError
from tests.binder.providers.support import ARN, hosts


def test_github() -> None:
    spec = build_spec("github", name="github", client_id="Ov23liAbC.123", secret_arn=ARN)
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


def test_the_client_id_is_escaped_in_the_revocation_path() -> None:
    spec = build_spec("github", name="github", client_id="a/b?c")
    assert spec.revocation_endpoint == "https://api.github.com/applications/a%2Fb%3Fc/token"


def test_display_name_is_the_kinds_unless_the_entry_sets_one() -> None:
    assert build_spec("github", name="gh", client_id="c").display_name == "GitHub"
    spec = build_spec("github", name="ghe", client_id="c", display_name="GitHub (work)")
    assert spec.display_name == "GitHub (work)"


def test_tenant_is_not_a_github_field() -> None:
    with pytest.raises(ProviderConfigError, match=r"provider 'gh': tenant"):
        build_spec("github", name="gh", client_id="c", tenant="common")
