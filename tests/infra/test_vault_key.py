"""The vault key's promise, read from the synthesized templates.

What holds: the account administers the vault key but cannot use it except through Secrets
Manager and DynamoDB; the key refuses to decrypt vault secrets for every principal but the
broker role, named by its ARN (not by a tag a session could carry); the broker role lives with
the key in the stateful stack.
"""

from __future__ import annotations

from typing import Any

from tests.infra.assembly import Synthesized

VAULT_SECRETS = "arn:aws:secretsmanager:us-east-1:111111111111:secret:agent-token-vault/*"
ACCOUNT_ROOT = "arn:aws:iam::111111111111:root"
BROKER_ROLE_ARN = {"Fn::GetAtt": ["BinderTaskRole", "Arn"]}
# Actions that encrypt, decrypt or hand out key use; none may reach the account unconditioned.
USE_ACTIONS = (
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyPairWithoutPlaintext",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:CreateGrant",
)
VIA = {"secretsmanager.us-east-1.amazonaws.com", "dynamodb.us-east-1.amazonaws.com"}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _covers(pattern: str, action: str) -> bool:
    """Whether an IAM action pattern (`kms:*`, `kms:ReEncrypt*`) names `action`."""
    if pattern.endswith("*"):
        return action.lower().startswith(pattern[:-1].lower())
    return action.lower() == pattern.lower()


def _key_statements(synth: Synthesized) -> list[dict[str, Any]]:
    key = synth.stack("Identity")["Resources"]["VaultKey"]["Properties"]["KeyPolicy"]
    statements: list[dict[str, Any]] = key["Statement"]
    return statements


def _account_statements(synth: Synthesized) -> list[dict[str, Any]]:
    return [
        s
        for s in _key_statements(synth)
        if s["Effect"] == "Allow" and ACCOUNT_ROOT in _list(s["Principal"].get("AWS", []))
    ]


def _identity_output(synth: Synthesized, value: Any) -> Any:
    """What a services-stack reference to an identity-stack output stands for."""
    if isinstance(value, dict) and "Fn::GetStackOutput" in value:
        ref = value["Fn::GetStackOutput"]
        assert ref["StackName"].endswith("Identity"), ref
        return synth.stack("Identity")["Outputs"][ref["OutputName"]]["Value"]
    return value


# -- key policy -------------------------------------------------------------------------------


def test_account_administers_the_vault_key_without_using_it(synth: Synthesized) -> None:
    """No `kms:*` for the account: anyone allowed kms:* in IAM would otherwise use the key."""
    unconditioned = [s for s in _account_statements(synth) if "Condition" not in s]
    (admin,) = unconditioned
    actions = _list(admin["Action"])
    assert not any(a.endswith("*") for a in actions), "explicit administration actions only"
    assert not [a for a in actions for use in USE_ACTIONS if _covers(a, use)]
    # CloudFormation (through the account) must still be able to manage and retire the key.
    assert {
        "kms:DescribeKey",
        "kms:PutKeyPolicy",
        "kms:EnableKeyRotation",
        "kms:TagResource",
        "kms:ScheduleKeyDeletion",
        "kms:CancelKeyDeletion",
    } <= set(actions)


def test_vault_key_is_used_only_through_secrets_manager_and_dynamodb(synth: Synthesized) -> None:
    """Every allow that can encrypt, decrypt or grant is bound to the two services and account."""
    allows = [s for s in _key_statements(synth) if s["Effect"] == "Allow"]
    using = [
        s for s in allows if any(_covers(a, use) for a in _list(s["Action"]) for use in USE_ACTIONS)
    ]
    assert using, "the account must still be able to use the key through the services"
    services = set()
    for statement in using:
        assert "Condition" in statement, f"use without conditions: {statement}"
        assert statement["Principal"] == {"AWS": ACCOUNT_ROOT}, statement
        equals = statement["Condition"]["StringEquals"]
        via = set(_list(equals["kms:ViaService"]))
        assert via <= VIA, statement
        services |= via
        if "kms:CallerAccount" in equals:
            assert equals["kms:CallerAccount"] == "111111111111"
    assert services == VIA
    # DynamoDB creates the table's grants with the creator's credentials: only for itself.
    (grants,) = [s for s in using if "kms:CreateGrant" in _list(s["Action"])]
    assert _list(grants["Action"]) == ["kms:CreateGrant"]
    assert (
        grants["Condition"]["StringEquals"]["kms:ViaService"] == "dynamodb.us-east-1.amazonaws.com"
    )
    assert grants["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}


def assert_only_the_broker_role_decrypts_vault_secrets(synth: Synthesized) -> None:
    (deny,) = [s for s in _key_statements(synth) if s["Effect"] == "Deny"]
    assert deny["Principal"] == {"AWS": "*"}
    assert sorted(_list(deny["Action"])) == ["kms:Decrypt", "kms:ReEncrypt*"]
    assert deny["Condition"]["StringLike"] == {"kms:EncryptionContext:SecretARN": VAULT_SECRETS}
    assert deny["Condition"]["ArnNotEquals"] == {"aws:PrincipalArn": BROKER_ROLE_ARN}
    assert set(deny["Condition"]) == {"StringLike", "ArnNotEquals"}
    policy_text = str(_key_statements(synth))
    assert "aws:PrincipalTag" not in policy_text
    assert "secure-agents:vault-access" not in policy_text


def test_vault_key_decrypts_vault_secrets_only_for_the_broker_role_arn(
    synth: Synthesized,
) -> None:
    """The deny names the role by ARN: a session tag (sts:TagSession) cannot satisfy it."""
    assert_only_the_broker_role_decrypts_vault_secrets(synth)


def test_no_role_carries_the_former_broker_tag(synth: Synthesized) -> None:
    for logical_id, role in synth.resources("AWS::IAM::Role").items():
        keys = {t["Key"] for t in role["Properties"].get("Tags", [])}
        assert "secure-agents:vault-access" not in keys, logical_id


def test_broker_role_lives_with_the_key_in_the_stateful_stack(synth: Synthesized) -> None:
    """A key-policy reference to a services-stack role would be a cross-stack cycle."""
    identity = synth.stack("Identity")["Resources"]
    role = identity["BinderTaskRole"]
    assert role["Type"] == "AWS::IAM::Role"
    assert role["DeletionPolicy"] == "Retain", "the retained key names this role"
    assert "RoleName" not in role["Properties"], "no hard-coded physical name"
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    task_roles = {
        lid.split("TaskDefinition")[0]: _identity_output(synth, td["Properties"]["TaskRoleArn"])
        for lid, td in synth.resources("AWS::ECS::TaskDefinition", "Services").items()
    }
    assert task_roles["Binder"] == BROKER_ROLE_ARN
    assert task_roles["Agent"] != BROKER_ROLE_ARN
