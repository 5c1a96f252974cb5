"""Least privilege, read from the synthesized templates (what a reviewer or attacker sees)."""

from __future__ import annotations

from typing import Any

from tests.infra.assembly import Synthesized

VAULT_SECRETS = "arn:aws:secretsmanager:us-east-1:111111111111:secret:agent-token-vault/*"


def _statements(synth: Synthesized, role_prefix: str) -> list[dict[str, Any]]:
    """Every statement of every policy (managed or inline) attached to the role."""
    roles = {
        logical_id
        for logical_id in synth.resources("AWS::IAM::Role")
        if logical_id.startswith(role_prefix)
    }
    assert len(roles) == 1, f"expected one role named {role_prefix}*, found {roles}"
    statements: list[dict[str, Any]] = []
    for type_ in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
        for policy in synth.resources(type_).values():
            attached = {r.get("Ref") for r in policy["Properties"].get("Roles", [])}
            if attached & roles:
                statements += policy["Properties"]["PolicyDocument"]["Statement"]
    for role_id in roles:
        role = synth.resources("AWS::IAM::Role")[role_id]["Properties"]
        assert "Policies" not in role, "roles carry no inline policies"
        assert not role.get("ManagedPolicyArns"), "no AWS managed policies on task roles"
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _resources(statement: dict[str, Any]) -> list[Any]:
    resources = statement["Resource"]
    return resources if isinstance(resources, list) else [resources]


def test_agent_task_role_has_no_vault_key_or_table_access(synth: Synthesized) -> None:
    statements = _statements(synth, "AgentTaskRole")
    actions = [a for s in statements for a in _actions(s)]
    forbidden = [a for a in actions if a.split(":")[0] in ("secretsmanager", "kms", "dynamodb")]
    assert forbidden == []
    assert sorted(set(actions)) == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]


def test_agent_invokes_only_the_configured_models(synth: Synthesized) -> None:
    profile = (
        "arn:aws:bedrock:us-east-1:111111111111:inference-profile/"
        "us.anthropic.claude-sonnet-4-20250514-v1:0"
    )
    statements = {s["Sid"]: s for s in _statements(synth, "AgentTaskRole")}
    assert set(statements) == {"InvokeConfiguredModelsOnly", "ModelBehindProfile1"}
    direct = statements["InvokeConfiguredModelsOnly"]
    assert _resources(direct) == [profile]
    assert "Condition" not in direct
    # The profile's foundation model in whichever region the profile routes to, and only
    # through that profile: no hand-kept region list, no direct use of the model.
    behind = statements["ModelBehindProfile1"]
    assert _resources(behind) == [
        "arn:aws:bedrock:*::foundation-model/anthropic.claude-sonnet-4-20250514-v1:0"
    ]
    assert behind["Condition"] == {"StringEquals": {"bedrock:InferenceProfileArn": profile}}


def test_binder_secrets_access_is_limited_to_the_vault_prefix_and_provider_secrets(
    synth: Synthesized,
) -> None:
    statements = _statements(synth, "BinderTaskRole")
    provider_secrets = [
        {"Ref": f"ProviderSecret{name}"} for name in ("Github", "Google", "Microsoft")
    ]
    for statement in statements:
        if not any(a.startswith("secretsmanager:") for a in _actions(statement)):
            continue
        for resource in _resources(statement):
            if isinstance(resource, str):
                assert resource == VAULT_SECRETS
            else:
                # A provider credential secret (the role lives with them in the identity stack).
                assert resource in provider_secrets, resource
                assert _actions(statement) == ["secretsmanager:GetSecretValue"]
    create = [s for s in statements if "secretsmanager:CreateSecret" in _actions(s)]
    assert len(create) == 1
    assert "secretsmanager:KmsKeyArn" in create[0]["Condition"]["StringEquals"]
    assert "secretsmanager:ListSecrets" not in {a for s in statements for a in _actions(s)}


def test_binder_uses_the_key_only_via_secrets_manager_and_dynamodb(synth: Synthesized) -> None:
    statements = [
        s
        for s in _statements(synth, "BinderTaskRole")
        if any(a.startswith("kms:") for a in _actions(s))
    ]
    via = sorted(s["Condition"]["StringEquals"]["kms:ViaService"] for s in statements)
    assert via == ["dynamodb.us-east-1.amazonaws.com", "secretsmanager.us-east-1.amazonaws.com"]
    for statement in statements:
        # Secrets Manager and DynamoDB generate and decrypt data keys; neither calls Encrypt.
        assert sorted(_actions(statement)) == ["kms:Decrypt", "kms:GenerateDataKey"]
        assert all(not isinstance(r, str) for r in _resources(statement)), "one key, by reference"


def test_binder_table_access_is_item_level_on_one_table(synth: Synthesized) -> None:
    statements = [
        s
        for s in _statements(synth, "BinderTaskRole")
        if any(a.startswith("dynamodb:") for a in _actions(s))
    ]
    assert len(statements) == 1
    assert sorted(_actions(statements[0])) == [
        "dynamodb:ConditionCheckItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    assert len(_resources(statements[0])) == 1


def test_binder_has_no_bedrock(synth: Synthesized) -> None:
    actions = [a for s in _statements(synth, "BinderTaskRole") for a in _actions(s)]
    assert not [a for a in actions if a.startswith("bedrock:")]


def test_execution_roles_only_pull_images_and_write_logs(synth: Synthesized) -> None:
    for prefix in ("AgentExecutionRole", "BinderExecutionRole"):
        actions = {a for s in _statements(synth, prefix) for a in _actions(s)}
        assert actions == {
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:GetAuthorizationToken",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        }


def test_no_wildcard_resource_except_where_aws_requires_it(synth: Synthesized) -> None:
    allowed = {"ecr:GetAuthorizationToken"}  # defined on "*" only
    for type_ in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
        for logical_id, policy in synth.resources(type_).items():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                if "*" in _resources(statement):
                    assert set(_actions(statement)) <= allowed, (logical_id, statement)
                assert not any(a.endswith("*") for a in _actions(statement)), (
                    logical_id,
                    statement,
                )


def test_no_inline_policies_anywhere_we_own(synth: Synthesized) -> None:
    inline = [
        logical_id
        for logical_id in synth.resources("AWS::IAM::Policy")
        # CDK's own singleton custom-resource provider (restrict the default security group).
        if not logical_id.startswith("Custom")
    ]
    assert inline == []


def test_binder_moves_version_stages_of_vault_secrets_only(synth: Synthesized) -> None:
    """Compare-and-swap writes: PutSecretValue under a staging label, then move AWSCURRENT."""
    statements = _statements(synth, "BinderTaskRole")
    (vault,) = [s for s in statements if s.get("Sid") == "TokenVaultSecrets"]
    # No DescribeSecret (the binder never calls it); tagging has its own, conditioned grant.
    assert sorted(_actions(vault)) == [
        "secretsmanager:DeleteSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
    ]
    assert _resources(vault) == [VAULT_SECRETS]
    staging = [s for s in statements if "secretsmanager:UpdateSecretVersionStage" in _actions(s)]
    assert staging == [vault], "never on the provider client secrets"


def test_vault_secrets_cannot_be_replicated_out_of_the_key(synth: Synthesized) -> None:
    (create,) = [
        s
        for s in _statements(synth, "BinderTaskRole")
        if "secretsmanager:CreateSecret" in _actions(s)
    ]
    assert create["Condition"]["Null"] == {"secretsmanager:AddReplicaRegions": "true"}


def test_agent_task_gets_the_binder_url_and_no_secret(synth: Synthesized) -> None:
    agent = next(
        td["Properties"]["ContainerDefinitions"][0]
        for lid, td in synth.resources("AWS::ECS::TaskDefinition").items()
        if lid.startswith("Agent")
    )
    env = {e["Name"]: e["Value"] for e in agent["Environment"]}
    assert env["BINDER_INTERNAL_URL"] == "http://binder:8081"
    assert env["AGENT_MODEL"] == "bedrock"
    assert env["AGENT_PROVIDERS"] == "github,google,microsoft,atlassian-mcp"
    assert "VAULT_KMS_KEY_ARN" not in env
    assert "SESSION_TABLE_NAME" not in env
    assert not any("SECRET" in name for name in env)
