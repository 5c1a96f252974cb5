"""Synth and the binder agree on every provider entry (one parser, one table: entries.py).

Each row's context entry is fed to the CDK config (`AppConfig.from_context` through the
`providers` key; no synth) and, rendered the way the README documents it, to the binder's
registry (`ProviderRegistry.from_json`): both accept it or both refuse it, and a refusal names
the field without echoing the value. A value synth accepts and the binder refuses is a deploy
whose binder tasks crash-loop; the reverse is a working configuration synth will not deploy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from binder.providers.registry import ProviderRegistry
from binder.providers.schema import ProviderConfigError
from stacks.config import AppConfig, ConfigError
from tests.binder.providers.entries import ARN, CASES, OAUTH2, OIDC

ROOT = Path(__file__).resolve().parents[3]
# Values errors may show: scopes (ASCII-escaped, not secrets) and what names the entry.
_SHOWN = frozenset({"scopes", "allowed_scopes", "kind"})


def example_context() -> dict[str, Any]:
    """cdk.json's checked-in context (read here: tests/infra's helpers need the CDK)."""
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


def binder_entry(name: str, context_entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as the README says synth renders it: the key is the name, the kind defaults
    to the name, the app adds the secret ARN to an entry with a client id (an mcp entry may
    have none, and then no secret, or declare a public client, which has none), and an oidc
    userinfo_endpoint (the agent's) stays out."""
    entry = {**context_entry, "name": name, "kind": context_entry.get("kind", name)}
    if (
        context_entry.get("client_id") is not None
        and context_entry.get("public_client") is not True
    ):
        entry["secret_arn"] = ARN
    if entry["kind"] == "oidc":
        entry.pop("userinfo_endpoint", None)
    return entry


def cdk_accepts(name: str, context_entry: dict[str, Any]) -> tuple[bool, str]:
    context = {**example_context(), "providers": {name: context_entry}}
    try:
        AppConfig.from_context(context.get)
    except ConfigError as exc:
        return False, str(exc)
    return True, ""


def binder_refusal(entry: dict[str, Any]) -> ProviderConfigError | None:
    try:
        ProviderRegistry.from_json(json.dumps([entry]))
    except ProviderConfigError as exc:
        return exc
    return None


def binder_accepts(entry: dict[str, Any]) -> tuple[bool, str]:
    refusal = binder_refusal(entry)
    return refusal is None, str(refusal or "")


@pytest.mark.parametrize(
    ("name", "context_entry", "accepted"),
    CASES,
    ids=[f"{i}-{name[:12]}" for i, (name, _, _) in enumerate(CASES)],
)
def test_synth_and_the_binder_accept_the_same_entries(
    name: str, context_entry: dict[str, Any], accepted: bool
) -> None:
    cdk_ok, cdk_error = cdk_accepts(name, context_entry)
    refusal = binder_refusal(binder_entry(name, context_entry))
    binder_ok, binder_error = refusal is None, str(refusal or "")
    assert (cdk_ok, binder_ok) == (accepted, accepted), (cdk_error, binder_error)
    if not accepted:
        assert f"context key 'providers.{name}'" in cdk_error
        assert refusal is not None
        if refusal.field is not None:  # a JSON-level refusal names no field
            assert refusal.field in cdk_error, (refusal.field, cdk_error)
        for key, value in context_entry.items():
            if isinstance(value, str) and len(value) >= 4 and key not in _SHOWN:
                assert value not in cdk_error + binder_error, key
        return
    # What synth actually renders parses in the binder too.
    context = {**example_context(), "providers": {name: context_entry}}
    (provider,) = AppConfig.from_context(context.get).providers
    rendered = provider.binder_entry(ARN)
    assert ("secret_arn" in rendered) == provider.has_credentials
    assert ProviderRegistry.from_json(json.dumps([rendered])).names() == (name,)


def test_errors_name_the_field_and_never_echo_the_value() -> None:
    secret = "hunter2"
    entry = {**OAUTH2, "token_endpoint": f"https://me:{secret}@crm.example.com/token"}
    cdk_ok, cdk_error = cdk_accepts("crm", entry)
    binder_ok, binder_error = binder_accepts(binder_entry("crm", entry))
    assert not cdk_ok
    assert not binder_ok
    assert "context key 'providers.crm': token_endpoint" in cdk_error
    assert "provider 'crm': token_endpoint" in binder_error
    assert secret not in cdk_error + binder_error


def test_the_agents_userinfo_endpoint_is_checked_and_kept_from_the_binder() -> None:
    """The binder discovers an oidc provider's userinfo endpoint itself; the configured one is
    the agent's, checked by the schema's URL rule all the same."""
    url = "https://sso.example.com/userinfo"
    context = {**example_context(), "providers": {"corp": {**OIDC, "userinfo_endpoint": url}}}
    (corp,) = AppConfig.from_context(context.get).providers
    assert corp.userinfo_url == url
    assert "userinfo_endpoint" not in corp.binder_entry(ARN)
    ok, error = cdk_accepts("corp", {**OIDC, "userinfo_endpoint": "http://sso.example.com/u"})
    assert not ok
    assert "context key 'providers.corp': userinfo_endpoint must be an https URL" in error
    refused, _ = binder_accepts({**binder_entry("corp", OIDC), "userinfo_endpoint": url})
    assert not refused


def test_oidc_kinds_give_the_agent_their_userinfo_endpoint() -> None:
    """Google's and Microsoft's come from their kind modules; a kind that is not OIDC has
    none (the agent's generic whoami tool speaks OIDC userinfo only)."""
    context = {
        **example_context(),
        "providers": {"google": {"client_id": "g"}, "github": {"client_id": "h"}},
    }
    google, github = AppConfig.from_context(context.get).providers
    assert google.userinfo_url == "https://openidconnect.googleapis.com/v1/userinfo"
    assert github.userinfo_url is None


def test_a_name_that_is_not_a_kind_is_told_to_set_kind() -> None:
    ok, error = cdk_accepts("corp-sso", {"client_id": "c", "issuer": "https://sso.example.com"})
    assert not ok
    assert "context key 'providers.corp-sso': kind must be one of" in error
    assert '"kind": "oidc"' in error


def test_the_config_needs_only_the_standard_library() -> None:
    """The CDK app's environment has none of the binder's dependencies: importing the config
    (and with it the binder's provider schema and kinds) must not need them. -S leaves out
    site-packages."""
    code = (
        "import sys; sys.path[:0] = ['.', 'services/binder']; import stacks.config; "
        "assert not {'anyio', 'httpx2', 'authlib'} & set(sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
