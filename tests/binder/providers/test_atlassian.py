"""The atlassian kind (binder.providers.atlassian)."""

from __future__ import annotations

from binder.providers.registry import build_spec
from tests.binder.providers.support import hosts


def test_atlassian() -> None:
    spec = build_spec("atlassian", name="jira", client_id="abc123")
    assert hosts(spec) == {"auth.atlassian.com", "api.atlassian.com"}
    assert dict(spec.extra_authorize_params) == {
        "audience": "api.atlassian.com",
        "prompt": "consent",
    }
    assert spec.refresh_scope == "offline_access"
    assert spec.rotates_refresh_tokens is True
    assert spec.supports_pkce is False


def test_display_name() -> None:
    assert build_spec("atlassian", name="jira", client_id="c").display_name == "Jira (Atlassian)"
