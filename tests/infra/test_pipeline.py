"""The GitHub Actions deploy and diff roles, read as IAM and an attacker read them.

Most tests read the session's synthesized app (cdk.json's `pipeline` example); the construct's
other shapes (an existing OIDC provider, another qualifier) are built on a bare `cdk.Stack()`,
which is cheap. What the roles may do must be exactly what the CDK CLI assumes, read from the
same assembly's manifests, so a renamed bootstrap role or qualifier cannot drift.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.config import GITHUB_OIDC_HOST, AppConfig, ConfigError
from tests.infra.assembly import Synthesized
from tests.infra.conftest import ROOT, _use_node_24, example_context

ACCOUNT = "111111111111"
REGION = "us-east-1"
REPOSITORY = "example-org/secure-agents-on-ecs"
AUD = f"{GITHUB_OIDC_HOST}:aud"
SUB = f"{GITHUB_OIDC_HOST}:sub"


def _role_arn(name: str, qualifier: str = "hnb659fds") -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/cdk-{qualifier}-{name}-role-{ACCOUNT}-{REGION}"


def _pipeline(synth: Synthesized) -> dict[str, Any]:
    return synth.stack("Pipeline")


def _role(template: dict[str, Any], prefix: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (lid, r)
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Role" and lid.startswith(prefix)
    ]
    return found


def _statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Every statement of every policy attached to the role (managed or inline)."""
    found = []
    for resource in template["Resources"].values():
        policy = resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy")
        if policy and {"Ref": role_id} in resource["Properties"].get("Roles", []):
            found += resource["Properties"]["PolicyDocument"]["Statement"]
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _trust(template: dict[str, Any], prefix: str) -> dict[str, Any]:
    _, role = _role(template, prefix)
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    return dict(statement)


# -- trust: who can become each role ---------------------------------------------------------


def test_deploy_role_trusts_only_the_repositorys_protected_environment(
    synth: Synthesized,
) -> None:
    trust = _trust(_pipeline(synth), "GitHubDeployRole")
    assert trust["Effect"] == "Allow"
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    (provider,) = [
        lid
        for lid, r in _pipeline(synth)["Resources"].items()
        if r["Type"] == "AWS::IAM::OIDCProvider"
    ]
    assert trust["Principal"] == {"Federated": {"Ref": provider}}
    # Exact values with StringEquals and nothing else: no StringLike, no other branch or event.
    assert trust["Condition"] == {
        "StringEquals": {
            AUD: "sts.amazonaws.com",
            SUB: f"repo:{REPOSITORY}:environment:production",
        }
    }


def test_diff_role_trusts_only_pull_requests_of_the_repository(synth: Synthesized) -> None:
    trust = _trust(_pipeline(synth), "GitHubDiffRole")
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Condition"] == {
        "StringEquals": {AUD: "sts.amazonaws.com", SUB: f"repo:{REPOSITORY}:pull_request"}
    }


def test_the_created_oidc_provider_issues_only_for_sts(synth: Synthesized) -> None:
    (provider,) = [
        r["Properties"]
        for r in _pipeline(synth)["Resources"].values()
        if r["Type"] == "AWS::IAM::OIDCProvider"
    ]
    assert provider["Url"] == f"https://{GITHUB_OIDC_HOST}"
    assert provider["ClientIdList"] == ["sts.amazonaws.com"]


def test_sessions_last_at_most_one_hour(synth: Synthesized) -> None:
    for prefix in ("GitHubDeployRole", "GitHubDiffRole"):
        _, role = _role(_pipeline(synth), prefix)
        assert role["Properties"]["MaxSessionDuration"] == 3600, prefix


# -- permissions: what each role can do ------------------------------------------------------


def _roles_the_cli_assumes(synth: Synthesized) -> tuple[set[str], set[str]]:
    """(every role `cdk deploy` of the app assumes, the role `cdk diff` reads templates with),
    from the assembly's stack and asset manifests."""
    deploy: set[str] = set()
    lookup: set[str] = set()
    for artifact in synth.manifest["artifacts"].values():
        if artifact["type"] == "aws:cloudformation:stack":
            deploy.add(artifact["properties"]["assumeRoleArn"])
            lookup.add(artifact["properties"]["lookupRole"]["arn"])
    for path in synth.outdir.glob("*.assets.json"):
        assets = json.loads(path.read_text())
        for kind in ("files", "dockerImages"):
            for asset in assets.get(kind, {}).values():
                deploy |= {d["assumeRoleArn"] for d in asset["destinations"].values()}

    def literal(arns: set[str]) -> set[str]:
        return {arn.replace("${AWS::Partition}", "aws") for arn in arns}

    return literal(deploy | lookup), literal(lookup)


def test_deploy_role_may_only_assume_the_bootstrap_roles_the_cli_uses(
    synth: Synthesized,
) -> None:
    template = _pipeline(synth)
    role_id, role = _role(template, "GitHubDeployRole")
    assert "Policies" not in role["Properties"], "no inline policy"
    assert not role["Properties"].get("ManagedPolicyArns"), "no AWS managed policy"
    (statement,) = _statements(template, role_id)
    assert statement["Effect"] == "Allow"
    assert _as_list(statement["Action"]) == ["sts:AssumeRole"]
    assert "Condition" not in statement
    resources = set(_as_list(statement["Resource"]))
    assert resources == {
        _role_arn(name) for name in ("deploy", "file-publishing", "image-publishing", "lookup")
    }
    deploy_roles, _ = _roles_the_cli_assumes(synth)
    assert resources == deploy_roles, "exactly the roles the pinned CLI assumes for this app"


def test_diff_role_may_only_assume_the_lookup_role(synth: Synthesized) -> None:
    template = _pipeline(synth)
    role_id, role = _role(template, "GitHubDiffRole")
    assert not role["Properties"].get("ManagedPolicyArns")
    (statement,) = _statements(template, role_id)
    assert _as_list(statement["Action"]) == ["sts:AssumeRole"]
    assert _as_list(statement["Resource"]) == [_role_arn("lookup")]
    _, lookup = _roles_the_cli_assumes(synth)
    assert set(_as_list(statement["Resource"])) == lookup


def test_no_wildcard_action_or_resource_in_the_pipeline_stack(synth: Synthesized) -> None:
    text = json.dumps(
        [
            r["Properties"]["PolicyDocument"]
            for r in _pipeline(synth)["Resources"].values()
            if r["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy")
        ]
    )
    assert text.count("sts:AssumeRole") == 2
    assert "*" not in text
    trusts = json.dumps(
        [
            r["Properties"]["AssumeRolePolicyDocument"]
            for r in _pipeline(synth)["Resources"].values()
            if r["Type"] == "AWS::IAM::Role"
        ]
    )
    assert "*" not in trusts
    assert "StringLike" not in trusts


def test_the_stack_outputs_the_two_role_arns_for_the_repository_variables(
    synth: Synthesized,
) -> None:
    outputs = _pipeline(synth)["Outputs"]
    deploy_id, _ = _role(_pipeline(synth), "GitHubDeployRole")
    diff_id, _ = _role(_pipeline(synth), "GitHubDiffRole")
    assert outputs["DeployRoleArn"]["Value"] == {"Fn::GetAtt": [deploy_id, "Arn"]}
    assert outputs["DiffRoleArn"]["Value"] == {"Fn::GetAtt": [diff_id, "Arn"]}
    assert "AWS_DEPLOY_ROLE_ARN" in outputs["DeployRoleArn"]["Description"]
    assert "AWS_DIFF_ROLE_ARN" in outputs["DiffRoleArn"]["Description"]


def test_the_pipeline_stack_passes_the_four_nag_packs(synth: Synthesized) -> None:
    findings = [
        construct["constructPath"]
        for plugin in synth.report.get("pluginReports", [])
        for violation in plugin.get("violations", [])
        for construct in violation.get("violatingConstructs", [])
        if construct["constructPath"].startswith("SecureAgentsPipeline")
    ]
    assert findings == []
    assert len(synth.report["pluginReports"]) >= 4


# -- the construct on a bare stack -----------------------------------------------------------


def _bare(**props: Any) -> dict[str, Any]:
    _use_node_24()
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from constructs.github_deploy_role import GitHubDeployRoles

    stack = cdk.Stack(env=cdk.Environment(account=ACCOUNT, region=REGION))
    GitHubDeployRoles(stack, "GitHub", **{"repository": "acme/platform", **props})
    return dict(Template.from_stack(stack).to_json())


def test_an_existing_oidc_provider_is_trusted_not_created() -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GITHUB_OIDC_HOST}"
    template = _bare(existing_oidc_provider_arn=arn, environment="prod-eu")
    types = {r["Type"] for r in template["Resources"].values()}
    assert "AWS::IAM::OIDCProvider" not in types
    trust = _trust(template, "GitHubDeployRole")
    assert trust["Principal"] == {"Federated": arn}
    assert trust["Condition"]["StringEquals"][SUB] == "repo:acme/platform:environment:prod-eu"


def test_another_bootstrap_qualifier_names_its_roles() -> None:
    template = _bare(bootstrap_qualifier="team7")
    role_id, _ = _role(template, "GitHubDiffRole")
    (statement,) = _statements(template, role_id)
    # A bare stack has no partition-literal feature flag: the partition stays a reference.
    parts = statement["Resource"]["Fn::Join"][1]
    arn = "".join("aws" if p == {"Ref": "AWS::Partition"} else p for p in parts)
    assert arn == _role_arn("lookup", "team7")


def test_an_existing_provider_and_props_for_a_new_one_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        _bare(
            existing_oidc_provider_arn=f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GITHUB_OIDC_HOST}",
            oidc_provider_thumbprints=["a" * 40],
        )


@pytest.mark.parametrize(
    "props",
    [{"repository": "acme/*"}, {"repository": "acme"}, {"environment": "prod*"}],
    ids=["wildcard-repository", "no-owner", "wildcard-environment"],
)
def test_the_construct_refuses_a_subject_that_reads_as_a_pattern(props: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"^(repository|environment) must"):
        _bare(**props)


# -- configuration ---------------------------------------------------------------------------


def _config(pipeline: Any) -> AppConfig:
    return AppConfig.from_context({**example_context(), "pipeline": pipeline}.get)


def test_the_example_configuration_parses_with_its_defaults() -> None:
    pipeline = _config({"repository": "acme-corp/agents"}).pipeline
    assert pipeline is not None
    assert pipeline.environment == "production"
    assert pipeline.bootstrap_qualifier == "hnb659fds"
    assert pipeline.existing_oidc_provider_arn is None


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ("acme/agents", r"'pipeline': expected \{"),
        ({}, r"'pipeline.repository' is required"),
        ({"repository": "acme"}, r"'pipeline.repository': expected <owner>/<repo>"),
        ({"repository": "-acme/agents"}, r"'pipeline.repository'"),
        ({"repository": "acme--corp/agents"}, r"'pipeline.repository'"),
        ({"repository": "acme/agents/x"}, r"'pipeline.repository'"),
        ({"repository": "acme/*"}, r"'pipeline.repository'"),
        ({"repository": "acme/.."}, r"'pipeline.repository': '\S+' is not a repository"),
        ({"repository": "acme/agents\n"}, r"'pipeline.repository'"),
        ({"repository": 42}, r"'pipeline.repository': .*got a int"),
        ({"repository": "acme/agents", "environment": "prod*"}, r"'pipeline.environment'"),
        ({"repository": "acme/agents", "environment": "my prod"}, r"'pipeline.environment'"),
        ({"repository": "acme/agents", "bootstrap_qualifier": "x" * 11}, "bootstrap_qualifier"),
        ({"repository": "acme/agents", "branch": "main"}, r"'pipeline': unknown field branch"),
        (
            {
                "repository": "acme/agents",
                "existing_oidc_provider_arn": "arn:aws:iam::111111111111:oidc-provider/x.com",
            },
            r"'pipeline.existing_oidc_provider_arn': expected",
        ),
        (
            {
                "repository": "acme/agents",
                "existing_oidc_provider_arn": (
                    f"arn:aws:iam::222222222222:oidc-provider/{GITHUB_OIDC_HOST}"
                ),
            },
            r"must be in the stack's account \(111111111111\)",
        ),
    ],
)
def test_a_bad_pipeline_entry_is_refused_naming_the_key(pipeline: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(pipeline)


def test_without_the_key_there_is_no_pipeline() -> None:
    context = {k: v for k, v in example_context().items() if k != "pipeline"}
    assert AppConfig.from_context(context.get).pipeline is None


def test_the_example_repository_is_refused_for_deployment() -> None:
    """Trusting `example-org/...` would hand whoever owns that name on GitHub the deploy role."""
    assert "pipeline.repository" in _config(example_context()["pipeline"]).example_values()
    assert (
        "pipeline.repository" in _config({"repository": "acme-corp/secure-agents"}).example_values()
    )
    for real in ("acme/agents", "acme/examples", "counterexample-inc/agents"):
        assert "pipeline.repository" not in _config({"repository": real}).example_values()


def _run_app(tmp_path: Path, context: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    _use_node_24()
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py")],
        cwd=ROOT,
        env={
            **os.environ,
            "CDK_CONTEXT_JSON": json.dumps(context),
            "CDK_OUTDIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_bad_pipeline_entry_stops_the_app_with_one_line_and_no_traceback(
    tmp_path: Path,
) -> None:
    result = _run_app(tmp_path, {**example_context(), "pipeline": {"repository": "acme/*"}})
    assert result.returncode == 2
    assert "configuration error: context key 'pipeline.repository'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_qualifier_must_match_the_one_the_stacks_are_deployed_with(tmp_path: Path) -> None:
    context = {**example_context(), "@aws-cdk/core:bootstrapQualifier": "team7"}
    result = _run_app(tmp_path, context)
    assert result.returncode == 2
    assert "'pipeline.bootstrap_qualifier' must equal" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_qualifier_other_than_cdks_default_needs_the_stacks_to_use_it_too(
    tmp_path: Path,
) -> None:
    """Unset, the stacks deploy with the default bootstrap roles: a pipeline that assumes
    another qualifier's roles would fail every deploy with AccessDenied."""
    context = {k: v for k, v in example_context().items() if "bootstrapQualifier" not in k}
    context["pipeline"] = {**context["pipeline"], "bootstrap_qualifier": "team7"}
    result = _run_app(tmp_path, context)
    assert result.returncode == 2
    assert "'pipeline.bootstrap_qualifier' must equal" in result.stderr
    assert "(hnb659fds)" in result.stderr
    assert "Traceback" not in result.stderr


# -- the administrator's one-time deployment ----------------------------------------------------


def test_the_documented_admin_command_deploys_the_pipeline_stack_refusing_examples(
    synth: Synthesized,
) -> None:
    doc = (ROOT / "docs" / "pipeline.md").read_text()
    commands = re.findall(r"cdk deploy ([^\n`]*)", doc)
    assert commands, "docs/pipeline.md shows how to deploy the pipeline stack"
    for command in commands:
        stacks = [word for word in command.split() if word.endswith("Pipeline")]
        assert stacks == ["SecureAgentsPipeline"], command
        assert stacks[0] in synth.templates
        assert "-c deploy=true" in command, "the example repository must be refused"
