"""The slack kind (binder.providers.slack): user scopes, comma-joined, nested token."""

from __future__ import annotations

from binder.providers.registry import build_spec
from tests.binder.providers.support import hosts


def test_slack() -> None:
    spec = build_spec("slack", name="slack", client_id="1234.5678")
    assert hosts(spec) == {"slack.com"}
    assert spec.scope_param == "user_scope"
    assert spec.scope_separator == ","
    assert spec.token_response_path == "authed_user"
    assert spec.revocation_style == "slack"
    assert spec.revocation_endpoint == "https://slack.com/api/auth.revoke"
    assert spec.token_endpoint_auth_method == "client_secret_basic"


def test_display_name() -> None:
    assert build_spec("slack", name="slack", client_id="c").display_name == "Slack"
