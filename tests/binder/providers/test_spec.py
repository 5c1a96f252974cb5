"""ProviderSpec's own rules and the scope rules (binder.providers.spec)."""

from __future__ import annotations

import pytest

from binder.providers.registry import ProviderRegistry, build_spec
from binder.providers.schema import ProviderConfigError
from binder.providers.spec import ProviderSpec, request_scopes, validate_scopes
from tests.binder.providers.support import providers_json


def test_callback_url() -> None:
    spec = build_spec("github", name="github", client_id="c")
    assert spec.callback_url("https://agents.example.com") == (
        "https://agents.example.com/oauth2/callback/github"
    )
    assert spec.callback_url("https://agents.example.com/") == (
        "https://agents.example.com/oauth2/callback/github"
    )


def test_extra_params_cannot_override_protocol_params() -> None:
    spec = build_spec("google", name="google", client_id="c")
    fields = {f: getattr(spec, f) for f in spec.__dataclass_fields__}
    fields["extra_authorize_params"] = {"redirect_uri": "https://evil.example.com"}
    with pytest.raises(ProviderConfigError, match="extra_authorize_params"):
        ProviderSpec(**fields)


def test_spec_is_immutable() -> None:
    params = {"audience": "api.atlassian.com"}
    spec = build_spec("atlassian", name="jira", client_id="c")
    fields = {f: getattr(spec, f) for f in spec.__dataclass_fields__}
    fields["extra_authorize_params"] = params
    copy = ProviderSpec(**fields)
    params["prompt"] = "none"
    assert "prompt" not in copy.extra_authorize_params
    with pytest.raises(TypeError):
        copy.extra_authorize_params["x"] = "y"  # type: ignore[index]
    hash(copy)


def test_display_name_defaults_to_the_name() -> None:
    spec = build_spec("github", name="gh", client_id="c")
    fields = {f: getattr(spec, f) for f in spec.__dataclass_fields__}
    fields["display_name"] = ""
    assert ProviderSpec(**fields).display_name == "gh"


# --- scopes -------------------------------------------------------------------------------


def test_validate_scopes_dedupes_in_order() -> None:
    spec = build_spec("github", name="gh", client_id="c")
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
    spec = build_spec("github", name="gh", client_id="c")
    with pytest.raises(ValueError, match="scope") as excinfo:
        validate_scopes(spec, ["repo", bad])
    assert not isinstance(excinfo.value, ProviderConfigError)
    if bad:  # the offending scope is named, ASCII-escaped so it is safe to log
        assert ascii(bad[:64]) in str(excinfo.value)


def test_validate_scopes_refuses_string_and_non_strings() -> None:
    spec = build_spec("github", name="gh", client_id="c")
    with pytest.raises(ValueError, match="list"):
        validate_scopes(spec, "repo")
    with pytest.raises(ValueError, match="strings"):
        validate_scopes(spec, ["repo", 3])  # type: ignore[list-item]


def test_validate_scopes_limit() -> None:
    spec = build_spec("github", name="gh", client_id="c")
    assert len(validate_scopes(spec, [f"s{i}" for i in range(50)])) == 50
    with pytest.raises(ValueError, match="at most 50"):
        validate_scopes(spec, [f"s{i}" for i in range(51)])


def test_validate_scopes_allow_list() -> None:
    spec = build_spec("github", name="gh", client_id="c", allowed_scopes=["repo", "read:user"])
    assert validate_scopes(spec, ["read:user"]) == ("read:user",)
    with pytest.raises(ValueError, match=r"'admin:org' is not allowed for provider 'gh'"):
        validate_scopes(spec, ["repo", "admin:org"])


def test_request_scopes_adds_defaults_and_refresh_scope() -> None:
    ms = build_spec("microsoft", name="m", client_id="c")
    assert request_scopes(ms, ["User.Read", "openid", "Mail.Read"]) == (
        "openid",
        "User.Read",
        "Mail.Read",
        "offline_access",
    )
    google = build_spec("google", name="g", client_id="c")
    assert request_scopes(google, []) == ("openid",)
    sfdc = build_spec("salesforce", name="s", client_id="c")
    assert request_scopes(sfdc, ["api", "refresh_token"]) == ("api", "refresh_token")
    slack = build_spec("slack", name="slack", client_id="c")
    assert request_scopes(slack, ["chat:write", "users:read"]) == ("chat:write", "users:read")
    with pytest.raises(ValueError, match="scope"):
        request_scopes(slack, ["chat:write,admin"])


def test_an_empty_allow_list_allows_only_what_the_binder_requests_anyway() -> None:
    registry = ProviderRegistry.from_json(
        providers_json({"name": "m", "kind": "microsoft", "client_id": "c", "allowed_scopes": []})
    )
    ms = build_spec("microsoft", name="m", client_id="c", allowed_scopes=[])
    assert "m" in registry
    assert ms.allowed_scopes == frozenset()
    assert validate_scopes(ms, ["openid", "offline_access"]) == ("openid", "offline_access")
    with pytest.raises(ValueError, match=r"'User.Read' is not allowed for provider 'm'"):
        validate_scopes(ms, ["User.Read"])
    assert request_scopes(ms, []) == ("openid", "offline_access")
