"""Context validation: a bad value names the key and the expected form; good values pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.config import AppConfig, ConfigError
from tests.infra.conftest import example_context

ROOT = Path(__file__).resolve().parents[2]


def _config(**changes: Any) -> AppConfig:
    context = {**example_context(), **changes}
    for key, value in changes.items():
        if value is None:
            context.pop(key)
    return AppConfig.from_context(context.get)


def test_checked_in_example_values_are_valid() -> None:
    config = _config()
    assert config.region == "us-east-1"
    assert config.availability_zones == ("us-east-1a", "us-east-1b")
    assert [p.name for p in config.providers] == ["github", "google", "microsoft", "atlassian-mcp"]
    assert config.providers[2].entry.text("tenant") == "organizations"
    assert [p.has_credentials for p in config.providers] == [True, True, True, False]
    assert config.bedrock_models[0].is_inference_profile
    assert config.callback_url == "https://agents.example.com/oauth2/idpresponse"
    assert config.provider_callback_url("github") == (
        "https://agents.example.com/oauth2/callback/github"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"certificate_arn": "arn:aws:acm:us-east-1:1234:cert/x"}, "'certificate_arn': expected"),
        (
            {
                "certificate_arn": "arn:aws:acm:eu-west-1:111111111111:certificate/"
                "00000000-0000-4000-8000-000000000000"
            },
            "must be in the stack's region",
        ),
        ({"account": "12345"}, "'account': expected a 12-digit AWS account ID"),
        ({"region": "mars-1"}, "'region': expected an AWS region"),
        ({"domain_name": "https://agents.example.com"}, "'domain_name': expected a DNS name"),
        (
            {"providers": {"myspace": {"client_id": "x"}}},
            "'providers.myspace': kind must be one of github, google",
        ),
        ({"providers": {"github": {}}}, "'providers.github': client_id is required"),
        (
            {"providers": {"github": {"client_id": "x", "tenant": "t"}}},
            "'providers.github': tenant is not used by kind 'github'",
        ),
        (
            {"providers": {"corp": {"client_id": "x", "kind": "oidc"}}},
            "'providers.corp': issuer is required",
        ),
        ({"providers": {"Bad Name": {"client_id": "x"}}}, "'providers.Bad Name': name must be"),
        (
            {"providers": {"github": {"client_id": "x", "scope": "repo"}}},
            "'providers.github': 'scope' is not a known field",
        ),
        (
            {"providers": {"github": {"client_id": "x", "secret_arn": "arn:aws:x"}}},
            "'providers.github': secret_arn is set by the app",
        ),
        ({"providers": {"github": "x"}}, "'providers.github': expected an object"),
        ({"allowed_return_origins": ["http://agents.example.com"]}, "https origins"),
        ({"allowed_return_origins": ["https://a.example.com/path"]}, "https origins"),
        ({"bedrock_model_ids": []}, "'bedrock_model_ids' is required"),
        ({"bedrock_model_ids": ["anthropic.*"]}, "is not one of Bedrock model IDs"),
        ({"nat_gateways": 3}, "'nat_gateways': expected an integer from 1 to 2"),
        ({"agent_desired_count": True}, "'agent_desired_count': expected an integer"),
        ({"availability_zones": ["us-east-1a"]}, "two distinct availability zones"),
        ({"availability_zones": ["us-east-1a", "us-west-2b"]}, "not an availability zone"),
        ({"log_retention_days": 10}, "retention periods"),
        ({"vault_prefix": "a/b"}, "'vault_prefix'"),
        ({"certificate_arn": None}, "set context key 'certificate_arn'"),
        ({"hosted_zone_id": "Z0123456789ABCDEFGHIJ"}, "go together"),
        ({"cognito_domain_prefix": "Has_Upper"}, "'cognito_domain_prefix'"),
        ({"api_client_callback_urls": ["http://evil.example.com/cb"]}, "http://localhost"),
        ({"alarm_email": "not-an-email"}, "'alarm_email'"),
        ({"max_task_count": 1}, "'max_task_count' must be at least"),
    ],
)
def test_bad_values_name_the_key_and_the_expected_form(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        _config(**changes)
    assert message in str(error.value)


def test_hosted_zone_instead_of_certificate() -> None:
    config = _config(
        certificate_arn=None,
        hosted_zone_id="Z0123456789ABCDEFGHIJ",
        hosted_zone_name="example.com.",
    )
    assert config.certificate_arn is None
    assert config.hosted_zone_name == "example.com"
    with pytest.raises(ConfigError, match="not inside hosted zone"):
        _config(
            certificate_arn=None,
            hosted_zone_id="Z0123456789ABCDEFGHIJ",
            hosted_zone_name="example.org",
        )


def test_command_line_strings_are_accepted() -> None:
    """`cdk synth -c nat_gateways=1 -c allowed_return_origins=https://a,https://b`."""
    config = _config(nat_gateways="1", allowed_return_origins="https://a.example,https://b.example")
    assert config.nat_gateways == 1
    assert config.allowed_return_origins == ("https://a.example", "https://b.example")


def test_app_reports_a_bad_key_without_a_stack_trace(tmp_path: Path) -> None:
    """What an operator sees from `cdk synth` with a malformed value."""
    context = {**example_context(), "certificate_arn": "not-an-arn"}
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2
    assert "configuration error: context key 'certificate_arn': expected arn:aws:acm:" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_generic_oauth2_provider_needs_https_endpoints() -> None:
    spec = {
        "kind": "oauth2",
        "client_id": "abc",
        "authorization_endpoint": "https://idp.example.com/authorize",
        "token_endpoint": "https://idp.example.com/token",
        "scopes": ["read"],
    }
    config = _config(providers={"corp": spec})
    entry = config.providers[0].binder_entry("arn:aws:secretsmanager:us-east-1:1:secret:x")
    assert entry["token_endpoint"] == "https://idp.example.com/token"
    assert entry["scopes"] == ["read"]
    assert "tenant" not in entry
    with pytest.raises(ConfigError, match="token_endpoint is required"):
        _config(providers={"corp": {k: v for k, v in spec.items() if k != "token_endpoint"}})
    with pytest.raises(ConfigError, match="token_endpoint must be an https URL"):
        _config(providers={"corp": {**spec, "token_endpoint": "http://idp.example.com/t"}})
    with pytest.raises(ConfigError, match="token_endpoint is not used by kind 'github'"):
        _config(providers={"github": {"client_id": "x", "token_endpoint": "https://a.b/t"}})


def test_binder_accepts_every_entry_the_cdk_app_writes() -> None:
    """The PROVIDERS variable the services stack writes parses in the binder's registry."""
    from binder.providers.registry import ProviderRegistry

    context = example_context()
    providers = {
        **context["providers"],
        "salesforce": {"client_id": "3MVG9", "tenant": "acme.my.salesforce.com"},
        "corp": {"kind": "oidc", "client_id": "c", "issuer": "https://login.corp.example"},
        "legacy": {
            "kind": "oauth2",
            "client_id": "l",
            "authorization_endpoint": "https://legacy.example/authorize",
            "token_endpoint": "https://legacy.example/token",
        },
    }
    config = _config(providers=providers)
    arn = "arn:aws:secretsmanager:us-east-1:111111111111:secret:p-AbCdEf"
    registry = ProviderRegistry.from_json(
        json.dumps([p.binder_entry(arn) for p in config.providers])
    )
    assert set(registry.names()) == set(providers)


def test_mcp_entries_past_the_agents_limits_are_refused_at_synth() -> None:
    """The binder would accept these, the agent's AGENT_MCP_SERVERS would not (it would stop
    at start): synth refuses them, naming the entry."""
    server = {"kind": "mcp", "url": "https://mcp.corp.example/mcp"}
    with pytest.raises(ConfigError, match=r"'providers.tools': url must not contain a query"):
        _config(providers={"tools": {**server, "url": "https://mcp.corp.example/mcp?team=a"}})
    with pytest.raises(ConfigError, match=r"'providers.tools': scopes must be at most 128"):
        _config(providers={"tools": {**server, "scopes": ["s" * 129]}})
    many = {f"tools-{i}": server for i in range(17)}
    with pytest.raises(ConfigError, match=r"'providers': at most 16 entries of kind mcp"):
        _config(providers=many)
    sixteen = _config(providers={f"tools-{i}": server for i in range(16)})
    assert len(sixteen.agent_mcp_servers) == 16
    assert [p.has_credentials for p in sixteen.providers] == [False] * 16
    # A pre-registered client: a credentials secret, and the agent entry carries no id.
    pinned = {**server, "client_id": "c", "authorization_server": "https://auth.corp.example"}
    (crm,) = _config(providers={"crm": {**pinned, "scopes": ["r"]}}).providers
    assert crm.has_credentials
    assert crm.mcp_server() == {"name": "crm", "url": server["url"], "scopes": ["r"]}
    with pytest.raises(ValueError, match="needs its secret ARN"):
        crm.binder_entry(None)
