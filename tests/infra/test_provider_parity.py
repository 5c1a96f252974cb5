"""Synth and the binder agree on every provider entry (issue 9).

One table of context entries, each fed to the CDK config (`AppConfig.from_context` through the
`providers` key) and, rendered the way the README documents it, to the binder's registry
(`ProviderRegistry.from_json`): both accept it or both refuse it. A value synth accepts and
the binder refuses is a deploy whose binder tasks crash-loop; the reverse is a working
configuration synth will not deploy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from binder.providers import ProviderConfigError, ProviderRegistry, validate_scopes
from stacks.config import AppConfig, ConfigError
from tests.infra.conftest import example_context

ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:aws:secretsmanager:us-east-1:111111111111:secret:provider-AbCdEf"
GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OIDC = {"kind": "oidc", "client_id": "c", "issuer": "https://sso.example.com"}
OAUTH2 = {
    "kind": "oauth2",
    "client_id": "c",
    "authorization_endpoint": "https://crm.example.com/authorize",
    "token_endpoint": "https://crm.example.com/token",
}


def gh(**fields: Any) -> dict[str, Any]:
    return {"client_id": "Iv1.abc", **fields}


# (provider name, its context entry, whether both sides accept it)
CASES: list[tuple[str, dict[str, Any], bool]] = [
    # names
    ("ab-", {"kind": "github", **gh()}, False),
    ("-ab", {"kind": "github", **gh()}, False),
    ("a", {"kind": "github", **gh()}, True),
    ("gh-2", {"kind": "github", **gh()}, True),
    ("9gh", {"kind": "github", **gh()}, True),
    ("a" * 32, {"kind": "github", **gh()}, True),
    ("a" * 33, {"kind": "github", **gh()}, False),
    ("Gh", {"kind": "github", **gh()}, False),
    ("g_h", {"kind": "github", **gh()}, False),
    ("g.h", {"kind": "github", **gh()}, False),
    # client IDs
    ("github", {}, False),
    ("github", {"client_id": ""}, False),
    ("github", {"client_id": "has space"}, False),
    ("github", {"client_id": 7}, False),
    ("github", {"client_id": "x" * 257}, False),
    ("github", {"client_id": "abc!#$~"}, True),
    # Microsoft tenants
    ("microsoft", gh(tenant="contoso.com"), False),
    ("microsoft", gh(tenant="contoso.onmicrosoft.com"), False),
    ("microsoft", gh(tenant="organizations"), True),
    ("microsoft", gh(tenant="common"), True),
    ("microsoft", gh(tenant="consumers"), True),
    ("microsoft", gh(tenant=GUID), True),
    ("microsoft", gh(tenant=GUID.upper()), True),
    ("microsoft", gh(tenant="72f988bf"), False),
    ("microsoft", gh(tenant=""), False),
    ("microsoft", gh(tenant=5), False),
    ("microsoft", gh(tenant=None), True),
    # Salesforce tenants
    ("salesforce", gh(tenant="acme.sandbox.my.salesforce.com"), True),
    ("salesforce", gh(tenant="acme--uat.sandbox.my.salesforce.com"), True),
    ("salesforce", gh(tenant="acme.my.salesforce.com"), True),
    ("salesforce", gh(tenant="ACME.my.salesforce.com"), True),
    ("salesforce", gh(tenant="login"), True),
    ("salesforce", gh(tenant="test"), True),
    ("salesforce", gh(tenant="evil.com"), False),
    ("salesforce", gh(tenant="acme.my.salesforce.com.evil.com"), False),
    ("salesforce", gh(tenant="login.salesforce.com"), False),
    # scopes and allow-lists
    ("corp", {**OIDC, "scopes": ["a,b"]}, False),
    ("github", gh(allowed_scopes=["a,b"]), False),
    ("corp", {**OIDC, "scopes": ["a b"]}, False),
    ("corp", {**OIDC, "scopes": ['a"b']}, False),
    ("corp", {**OIDC, "scopes": ["a\\b"]}, False),
    ("corp", {**OIDC, "scopes": [""]}, False),
    ("corp", {**OIDC, "scopes": ["naïve"]}, False),
    ("corp", {**OIDC, "scopes": "profile"}, False),
    ("corp", {**OIDC, "scopes": ["x" * 256]}, True),
    ("corp", {**OIDC, "scopes": ["x" * 257]}, False),
    ("corp", {**OIDC, "scopes": ["profile", "email", "read:org"]}, True),
    ("github", gh(allowed_scopes=[f"s{i}" for i in range(50)]), True),
    ("github", gh(allowed_scopes=[f"s{i}" for i in range(51)]), False),
    ("github", gh(allowed_scopes=[]), True),
    ("github", gh(allowed_scopes=["repo", "read:user"]), True),
    ("github", gh(allowed_scopes="repo"), False),
    ("github", gh(scopes=["repo"]), False),
    # unknown keys and wrong kinds
    ("github", gh(scope="repo"), False),
    ("microsoft", gh(tennant="common"), False),
    ("myspace", gh(), False),
    ("gitlab", {"kind": "gitlab", **gh()}, False),
    ("corp", {**OIDC, "kind": "OIDC"}, False),
    ("corp", {**OIDC, "kind": 5}, False),
    ("gh-enterprise", {"kind": "github", **gh()}, True),
    # fields on kinds that do not take them
    ("github", gh(tenant="common"), False),
    ("github", gh(token_endpoint="https://github.com/t"), False),
    ("microsoft", gh(issuer="https://login.microsoftonline.com/common/v2.0"), False),
    ("corp", {**OIDC, "authorization_endpoint": "https://sso.example.com/a"}, False),
    ("corp", {**OIDC, "tenant": "common"}, False),
    ("crm", {**OAUTH2, "issuer": "https://crm.example.com"}, False),
    ("github", gh(tenant=None, scopes=None), True),
    # an oidc userinfo_endpoint is for the agent: accepted, checked, not sent to the binder
    ("corp", {**OIDC, "userinfo_endpoint": "https://sso.example.com/userinfo"}, True),
    # issuers
    ("corp", OIDC, True),
    ("corp", {**OIDC, "issuer": "https://sso.example.com/realms/corp/"}, True),
    ("corp", {**OIDC, "issuer": "http://sso.example.com"}, False),
    ("corp", {**OIDC, "issuer": "http://127.0.0.1:9400"}, False),
    ("corp", {**OIDC, "issuer": "https://sso.example.com?tenant=a"}, False),
    ("corp", {**OIDC, "issuer": "https://sso.example.com#x"}, False),
    ("corp", {**OIDC, "issuer": "https://u:p@sso.example.com"}, False),
    ("corp", {**OIDC, "issuer": "sso.example.com"}, False),
    ("corp", {k: v for k, v in OIDC.items() if k != "issuer"}, False),
    # explicit endpoints
    ("crm", OAUTH2, True),
    (
        "crm",
        {
            **OAUTH2,
            "revocation_endpoint": "https://crm.example.com/revoke",
            "userinfo_endpoint": "https://crm.example.com/me",
            "scopes": ["read"],
        },
        True,
    ),
    ("crm", {k: v for k, v in OAUTH2.items() if k != "token_endpoint"}, False),
    ("crm", {**OAUTH2, "token_endpoint": "http://crm.example.com/token"}, False),
    ("crm", {**OAUTH2, "token_endpoint": "https://crm.example.com:99999/token"}, False),
    ("crm", {**OAUTH2, "revocation_endpoint": "https://crm.example.com/r#x"}, False),
]


def binder_entry(name: str, context_entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as the README says synth renders it: the key is the name, the kind defaults
    to the name, the app adds the secret ARN, and an oidc userinfo_endpoint (the agent's)
    stays out."""
    entry = {**context_entry, "name": name, "kind": context_entry.get("kind", name)}
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


def binder_accepts(entry: dict[str, Any]) -> tuple[bool, str]:
    try:
        ProviderRegistry.from_json(json.dumps([entry]))
    except ProviderConfigError as exc:
        return False, str(exc)
    return True, ""


@pytest.mark.parametrize(
    ("name", "context_entry", "accepted"),
    CASES,
    ids=[f"{i}-{name[:12]}" for i, (name, _, _) in enumerate(CASES)],
)
def test_synth_and_the_binder_accept_the_same_entries(
    name: str, context_entry: dict[str, Any], accepted: bool
) -> None:
    cdk_ok, cdk_error = cdk_accepts(name, context_entry)
    binder_ok, binder_error = binder_accepts(binder_entry(name, context_entry))
    assert (cdk_ok, binder_ok) == (accepted, accepted), (cdk_error, binder_error)
    if not accepted:
        assert f"context key 'providers.{name}'" in cdk_error
        return
    # What synth actually renders parses in the binder too.
    context = {**example_context(), "providers": {name: context_entry}}
    (provider,) = AppConfig.from_context(context.get).providers
    assert ProviderRegistry.from_json(json.dumps([provider.binder_entry(ARN)])).names() == (name,)


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


def test_a_name_that_is_not_a_kind_is_told_to_set_kind() -> None:
    ok, error = cdk_accepts("corp-sso", {"client_id": "c", "issuer": "https://sso.example.com"})
    assert not ok
    assert "context key 'providers.corp-sso': kind must be one of" in error
    assert '"kind": "oidc"' in error


def test_the_config_needs_only_the_standard_library() -> None:
    """The CDK app's environment has none of the binder's dependencies: importing the config
    (and with it binder.provider_schema) must not need them. -S leaves out site-packages."""
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


# -- allowed_scopes: [] ---------------------------------------------------------------------


def _providers_env(template: Mapping[str, Any]) -> str:
    """The binder's PROVIDERS as synthesized, with the secret ARNs' tokens filled in."""
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        for container in resource["Properties"]["ContainerDefinitions"]:
            for variable in container.get("Environment", []):
                if variable["Name"] == "PROVIDERS":
                    value = variable["Value"]
                    if isinstance(value, str):
                        return value
                    parts = value["Fn::Join"][1]
                    return "".join(p if isinstance(p, str) else ARN for p in parts)
    raise AssertionError("no PROVIDERS variable in the template")


@pytest.mark.synth
def test_an_empty_allow_list_reaches_the_binder_and_allows_only_the_defaults(
    tmp_path: Path,
) -> None:
    """`allowed_scopes: []` means nothing beyond the defaults, end to end: the synthesized task
    definition carries it, and a binder built from that entry refuses any other scope."""
    from tests.infra.conftest import _use_node_24

    _use_node_24()
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from app import build

    context = example_context()
    providers = {**context["providers"], "google": {**gh(), "allowed_scopes": []}}
    app = cdk.App(outdir=str(tmp_path), context={**context, "providers": providers})
    _, _, services = build(app)
    text = _providers_env(Template.from_stack(services).to_json())

    (google,) = [e for e in json.loads(text) if e["name"] == "google"]
    assert google["allowed_scopes"] == []
    registry = ProviderRegistry.from_json(text)

    async def spec() -> Any:
        async with httpx2.AsyncClient() as http:  # built-ins resolve without a request
            return await registry.get("google", http)

    google_spec = anyio.run(spec)
    with pytest.raises(ValueError, match="not allowed for provider 'google'"):
        validate_scopes(google_spec, ["https://www.googleapis.com/auth/calendar.readonly"])
    with pytest.raises(ValueError, match="not allowed"):
        validate_scopes(google_spec, ["profile"])
    # The defaults are requested anyway; naming one adds nothing.
    assert validate_scopes(google_spec, ["openid"]) == ("openid",)
