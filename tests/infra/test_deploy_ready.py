"""Deploys on the first try: what a first or second deployment would otherwise find out inside
CloudFormation or at task start, read from synthesized assemblies.

Two assemblies: the checked-in example (the session `synth` fixture), and a second deployment
in the same account and region (another stack prefix, a `global.` inference profile next to a
foundation model, real-looking values, `make deploy`'s context), synthesized once per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.config import AppConfig, ConfigError
from tests.infra.assembly import Synthesized
from tests.infra.conftest import ROOT, _use_node_24, example_context, synthesize

UPSTREAM_SHA = "ab" * 32
GLOBAL_PROFILE = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
FOUNDATION_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
# A deployment's own values: nothing here is an example value.
REAL_VALUES: dict[str, Any] = {
    "account": "210987654321",
    "region": "eu-west-1",
    "domain_name": "agents.corp.acme-internal.net",
    "certificate_arn": (
        "arn:aws:acm:eu-west-1:210987654321:certificate/3f6c2a91-5d4e-4b7a-9c1e-7a2b8d9e0f13"
    ),
    "cognito_domain_prefix": "acme-agents-staging",
    "allowed_return_origins": ["https://agents.corp.acme-internal.net"],
    "providers": {
        "github": {"client_id": "Ov23liQ7x9kP2mZ4rT8w"},
        "microsoft": {
            "client_id": "5b1e9c3a-7d2f-4e8b-a6c4-1f3e5d7b9a2c",
            "tenant": "organizations",
        },
        # Registers through the binder's client metadata document or dynamic registration.
        "jira-mcp": {"kind": "mcp", "url": "https://mcp.atlassian.com/v1/mcp"},
    },
    "bedrock_model_ids": [GLOBAL_PROFILE, FOUNDATION_MODEL],
    "stack_prefix": "Staging",
    "pipeline": {"repository": "acme-internal/agents-platform", "environment": "staging"},
}


@pytest.fixture(scope="session")
def second(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    context = {
        **example_context(),
        **REAL_VALUES,
        "deploy": "true",
        "upstream_outputs_sha256": UPSTREAM_SHA,
    }
    return synthesize(tmp_path_factory.mktemp("cdk.out.second"), context)


def _image_assets(synth: Synthesized) -> dict[str, dict[str, Any]]:
    assets: dict[str, dict[str, Any]] = {}
    for path in synth.outdir.glob("*.assets.json"):
        assets.update(json.loads(path.read_text()).get("dockerImages", {}))
    return assets


@pytest.mark.parametrize("which", ["example", "second"])
def test_every_image_is_built_for_its_task_definitions_architecture(
    which: str, synth: Synthesized, request: pytest.FixtureRequest
) -> None:
    assembly = synth if which == "example" else request.getfixturevalue("second")
    assets = _image_assets(assembly)
    platforms = {"ARM64": "linux/arm64", "X86_64": "linux/amd64"}
    task_definitions = assembly.resources("AWS::ECS::TaskDefinition")
    assert len(task_definitions) == 2
    for logical_id, task_definition in task_definitions.items():
        properties = task_definition["Properties"]
        architecture = properties["RuntimePlatform"]["CpuArchitecture"]
        assert architecture == "ARM64", "Graviton (docs/cost.md)"
        for container in properties["ContainerDefinitions"]:
            image = json.dumps(container["Image"])
            (asset_hash,) = [h for h in assets if h in image]
            platform = assets[asset_hash]["source"].get("platform")
            assert platform == platforms[architecture], (logical_id, platform)


def test_each_deployment_has_its_own_service_connect_namespace(
    synth: Synthesized, second: Synthesized
) -> None:
    def namespaces(assembly: Synthesized) -> list[str]:
        found = assembly.resources("AWS::ServiceDiscovery::HttpNamespace")
        return [r["Properties"]["Name"] for r in found.values()]

    assert namespaces(synth) == ["secureagents.internal"]
    assert namespaces(second) == ["staging.internal"]
    # The agent reaches the binder by its Service Connect name, inside that namespace.
    for assembly in (synth, second):
        services = assembly.resources("AWS::ECS::Service")
        connect = [
            s["Properties"]["ServiceConnectConfiguration"]
            for s in services.values()
            if "ServiceConnectConfiguration" in s["Properties"]
        ]
        assert connect
        assert all(c["Enabled"] for c in connect)


def _agent_statements(assembly: Synthesized) -> dict[str, dict[str, Any]]:
    (role_id,) = [r for r in assembly.resources("AWS::IAM::Role") if r.startswith("AgentTaskRole")]
    statements: dict[str, dict[str, Any]] = {}
    for policy in assembly.resources("AWS::IAM::ManagedPolicy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                statements[statement["Sid"]] = statement
    return statements


def test_a_global_profile_reaches_its_model_everywhere_but_only_through_the_profile(
    second: Synthesized,
) -> None:
    statements = _agent_statements(second)
    profile = f"arn:aws:bedrock:eu-west-1:210987654321:inference-profile/{GLOBAL_PROFILE}"
    assert sorted(statements["InvokeConfiguredModelsOnly"]["Resource"]) == sorted(
        [
            profile,
            # A foundation model is invoked directly, in the stack's region only.
            f"arn:aws:bedrock:eu-west-1::foundation-model/{FOUNDATION_MODEL}",
        ]
    )
    behind = statements["ModelBehindProfile1"]
    model = GLOBAL_PROFILE.removeprefix("global.")
    # Any region, and the ARN with no region that global profiles use.
    assert behind["Resource"] == [
        f"arn:aws:bedrock:*::foundation-model/{model}",
        f"arn:aws:bedrock:::foundation-model/{model}",
    ]
    assert behind["Condition"] == {"StringEquals": {"bedrock:InferenceProfileArn": profile}}
    assert set(statements) == {"InvokeConfiguredModelsOnly", "ModelBehindProfile1"}


def test_every_ecs_role_is_trusted_by_this_accounts_tasks_only(
    synth: Synthesized, second: Synthesized
) -> None:
    for assembly, account, region in (
        (synth, "111111111111", "us-east-1"),
        (second, "210987654321", "eu-west-1"),
    ):
        ecs_roles = 0
        for logical_id, role in assembly.resources("AWS::IAM::Role").items():
            for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
                if statement["Principal"].get("Service") != "ecs-tasks.amazonaws.com":
                    continue
                ecs_roles += 1
                assert statement["Condition"] == {
                    "StringEquals": {"aws:SourceAccount": account},
                    "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:{region}:{account}:*"},
                }, logical_id
        # Two task roles (the binder's in the identity stack) and two execution roles.
        assert ecs_roles == 4


def test_the_binder_tags_vault_secrets_with_its_two_keys_only(synth: Synthesized) -> None:
    from constructs.token_vault import VAULT_TAG_KEYS

    sys.path.insert(0, str(ROOT / "services" / "binder"))
    from binder.vault import TAG_PROVIDER, TAG_USER_HASH

    assert set(VAULT_TAG_KEYS) == {TAG_PROVIDER, TAG_USER_HASH}, "the grant matches what is sent"
    (role_id,) = [r for r in synth.resources("AWS::IAM::Role") if r == "BinderTaskRole"]
    statements = [
        s
        for p in synth.resources("AWS::IAM::ManagedPolicy").values()
        if {"Ref": role_id} in p["Properties"].get("Roles", [])
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    tagging = [s for s in statements if "secretsmanager:TagResource" in json.dumps(s["Action"])]
    assert len(tagging) == 1
    assert tagging[0]["Action"] == "secretsmanager:TagResource"
    assert tagging[0]["Condition"] == {
        "ForAllValues:StringEquals": {"aws:TagKeys": list(VAULT_TAG_KEYS)},
        "Null": {"aws:TagKeys": "false"},
    }
    assert "secretsmanager:DescribeSecret" not in json.dumps(statements), "never called"


def test_the_services_stack_changes_when_the_upstream_outputs_do(
    synth: Synthesized, second: Synthesized
) -> None:
    def markers(assembly: Synthesized) -> list[str]:
        resources = assembly.stack("Services")["Resources"]
        return [
            k
            for k, r in resources.items()
            if r["Type"] == "AWS::CloudFormation::WaitConditionHandle"
        ]

    assert markers(synth) == [], "make synth sets no digest"
    assert markers(second) == [f"UpstreamOutputs{UPSTREAM_SHA[:16]}"]


# Placeholders and reserved words: refused before anything is synthesized.


def test_deploying_the_example_values_is_refused_naming_every_key() -> None:
    config = AppConfig.from_context(example_context().get)
    with pytest.raises(ConfigError) as refused:
        config.require_deployable()
    message = str(refused.value)
    for key in (
        "account",
        "certificate_arn",
        "domain_name",
        "cognito_domain_prefix",
        "allowed_return_origins",
        "providers.github.client_id",
        "providers.google.client_id",
        "providers.microsoft.client_id",
        "providers.atlassian-mcp (endpoints)",
    ):
        assert key in message
    assert message.count("\n") == 0, "one message"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("account", "123456789012"),
        ("domain_name", "agents.example.org"),
        ("domain_name", "agents.test"),
        ("alarm_email", "ops@example.com"),
        ("providers", {"github": {"client_id": "Iv1.0000000000000000"}}),
        (
            "providers",
            {"corp": {"kind": "oidc", "client_id": "abc", "issuer": "https://idp.example.com"}},
        ),
        # An MCP server's url is its only value: a reserved host there is an example.
        ("providers", {"tools": {"kind": "mcp", "url": "https://mcp.example.com/mcp"}}),
        ("providers", {"tools": {"kind": "mcp", "url": "https://tools.example/mcp"}}),
    ],
)
def test_each_example_value_alone_is_refused(key: str, value: Any) -> None:
    context = {**example_context(), **REAL_VALUES, key: value}
    if key == "domain_name":
        context["allowed_return_origins"] = [f"https://{value}"]
        context["certificate_arn"] = REAL_VALUES["certificate_arn"]
    config = AppConfig.from_context(context.get)
    refused = config.example_values()
    assert refused, f"{key}={value!r} was not recognised as an example value"
    assert refused[0].startswith(key), refused


def test_a_real_configuration_deploys() -> None:
    config = AppConfig.from_context({**example_context(), **REAL_VALUES}.get)
    assert config.example_values() == ()
    config.require_deployable()


@pytest.mark.parametrize("prefix", ["aws-agents", "my-amazon-sso", "cognito", "teamawsome"])
def test_cognito_reserved_words_are_refused_at_synth(prefix: str) -> None:
    context = {**example_context(), **REAL_VALUES, "cognito_domain_prefix": prefix}
    with pytest.raises(ConfigError, match=r"cognito_domain_prefix.*Cognito refuses"):
        AppConfig.from_context(context.get)


def test_the_retired_region_list_is_refused_not_ignored() -> None:
    context = {**example_context(), "bedrock_inference_regions": ["us-east-1"]}
    with pytest.raises(ConfigError, match=r"bedrock_inference_regions.*no longer used"):
        AppConfig.from_context(context.get)


def test_make_deploy_refuses_the_example_values_before_any_aws_call(tmp_path: Path) -> None:
    """The pinned CLI, the real app, the checked-in cdk.json: refused at synthesis, with no
    credentials and no network needed."""
    _use_node_24()
    node = Path(os.environ["JSII_NODE"])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK"))},
        "PATH": f"{node.parent}{os.pathsep}{os.environ['PATH']}",
        "DEPLOY_CDK": f"{node} {ROOT / 'node_modules/aws-cdk/bin/cdk'}",
        # Any AWS call would fail: no credentials, and an endpoint nothing listens on.
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "deploy.py"), "--output", str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "refusing to deploy" in result.stderr
    assert "account, certificate_arn, domain_name" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_access_log_lock_fits_inside_the_log_lifetime() -> None:
    short = {**example_context(), "log_retention_days": 30}
    assert AppConfig.from_context(short.get).access_log_lock_days == 30, "default follows"
    with pytest.raises(ConfigError, match="access_log_lock_days"):
        AppConfig.from_context({**short, "access_log_lock_days": 60}.get)
    assert AppConfig.from_context(example_context().get).access_log_lock_days == 90
