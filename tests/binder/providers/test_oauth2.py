"""The oauth2 kind (binder.providers.oauth2): any OAuth 2.0 provider from explicit endpoints."""

from __future__ import annotations

from typing import Any

import pytest

from binder.providers.registry import build_spec
from binder.providers.schema import ProviderConfigError


def test_generic_oauth2() -> None:
    spec = build_spec(
        "oauth2",
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
    no_revoke = build_spec(
        "oauth2",
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
        build_spec(
            "oauth2",
            name="crm",
            client_id="c",
            secret_arn=None,
            authorization_endpoint="https://crm.example.com/authorize",
            token_endpoint=url,
        )


def test_error_messages_never_echo_values() -> None:
    with pytest.raises(ProviderConfigError) as excinfo:
        build_spec(
            "oauth2",
            name="crm",
            client_id="c",
            secret_arn=None,
            authorization_endpoint="https://crm.example.com/authorize",
            token_endpoint="https://me:hunter2@crm.example.com/token",
        )
    assert "hunter2" not in str(excinfo.value)
    assert "crm" in str(excinfo.value)


def test_display_name_is_the_entrys() -> None:
    fields: dict[str, Any] = {
        "client_id": "c",
        "authorization_endpoint": "https://crm.example.com/a",
        "token_endpoint": "https://crm.example.com/t",
    }
    assert build_spec("oauth2", name="crm", **fields).display_name == "crm"
    named = build_spec("oauth2", name="crm", display_name="Acme CRM", **fields)
    assert named.display_name == "Acme CRM"
