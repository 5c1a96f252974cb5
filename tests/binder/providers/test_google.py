"""The google kind (binder.providers.google)."""

from __future__ import annotations

from binder.providers.registry import build_spec
from tests.binder.providers.support import hosts


def test_google() -> None:
    spec = build_spec("google", name="google", client_id="123-abc.apps.googleusercontent.com")
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


def test_display_name() -> None:
    assert build_spec("google", name="g", client_id="c").display_name == "Google Workspace"
