"""The vault key's promise, read from the synthesized templates.

What holds: the account administers the vault key but cannot use it except through Secrets
Manager and DynamoDB; the key refuses to decrypt vault secrets for every principal but the
broker role, named by its ARN (not by a tag a session could carry); the broker role lives with
the key in the stateful stack. What an administrator can still do (change the key policy,
grant, disable or delete the key, read a vault secret as someone else, or act as the broker
role) is reported to the alarm topic by EventBridge rules on CloudTrail.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.assembly import Synthesized

VAULT_SECRETS = "arn:aws:secretsmanager:us-east-1:111111111111:secret:agent-token-vault/*"
ACCOUNT_ROOT = "arn:aws:iam::111111111111:root"
BROKER_ROLE_ARN = {"Fn::GetAtt": ["BinderTaskRole", "Arn"]}
VAULT_KEY_ARN = {"Fn::GetAtt": ["VaultKey", "Arn"]}
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
CLOUDTRAIL = ["AWS API Call via CloudTrail"]


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


def _alarm_topic(synth: Synthesized) -> str:
    (topic,) = [
        lid
        for lid in synth.resources("AWS::SNS::Topic", "Services")
        if lid.startswith("AlarmTopic")
    ]
    return topic


def _rules(synth: Synthesized, source: str) -> list[dict[str, Any]]:
    return [
        rule["Properties"]
        for rule in synth.resources("AWS::Events::Rule", "Services").values()
        if rule["Properties"].get("EventPattern", {}).get("source") == [source]
    ]


def _assert_reports_to_the_alarm_topic(synth: Synthesized, rule: dict[str, Any]) -> None:
    assert rule["EventPattern"]["detail-type"] == CLOUDTRAIL
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": _alarm_topic(synth)}
    assert "RoleArn" not in target, "the topic policy authorizes EventBridge, not a role"


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


# -- detective controls -----------------------------------------------------------------------


def test_changes_to_the_vault_key_are_reported(synth: Synthesized) -> None:
    (rule,) = _rules(synth, "aws.kms")
    _assert_reports_to_the_alarm_topic(synth, rule)
    assert rule["State"] == "ENABLED"
    detail = rule["EventPattern"]["detail"]
    assert detail["eventSource"] == ["kms.amazonaws.com"]
    assert sorted(detail["eventName"]) == [
        "CreateGrant",
        "DisableKey",
        "PutKeyPolicy",
        "ScheduleKeyDeletion",
    ]
    (key_arn,) = detail["resources"]["ARN"]
    assert _identity_output(synth, key_arn) == VAULT_KEY_ARN


def test_vault_secret_access_by_anyone_but_the_broker_role_is_reported(
    synth: Synthesized,
) -> None:
    (rule,) = _rules(synth, "aws.secretsmanager")
    _assert_reports_to_the_alarm_topic(synth, rule)
    # GetSecretValue is a read-only management event: a rule in plain ENABLED state never
    # sees it.
    assert rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    detail = rule["EventPattern"]["detail"]
    assert detail["eventSource"] == ["secretsmanager.amazonaws.com"]
    assert "GetSecretValue" in detail["eventName"]
    assert {"PutSecretValue", "UpdateSecretVersionStage", "CreateSecret"} <= set(
        detail["eventName"]
    )
    prefixes = [
        p["prefix"]
        for alternative in detail["requestParameters"]["$or"]
        for values in alternative.values()
        for p in values
    ]
    assert sorted(set(prefixes)) == [
        "agent-token-vault/",
        "arn:aws:secretsmanager:us-east-1:111111111111:secret:agent-token-vault/",
    ]
    who = detail["$or"]
    # An assumed role other than the broker role, or any identity that is not a role session
    # (IAM user, root, federated user, AWS service): a missing field never matches anything-but.
    issuer = [
        alternative["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"]
        for alternative in who
        if "sessionContext" in alternative["userIdentity"]
    ]
    ((anything_but,),) = issuer
    (broker,) = anything_but["anything-but"]
    assert _identity_output(synth, broker) == BROKER_ROLE_ARN
    types = [a["userIdentity"]["type"] for a in who if "type" in a["userIdentity"]]
    assert types == [[{"anything-but": ["AssumedRole"]}]]


def test_the_broker_role_assumed_other_than_by_ecs_is_reported(synth: Synthesized) -> None:
    """Whoever can assume the broker role passes the key's deny: that is watched too."""
    (rule,) = _rules(synth, "aws.sts")
    _assert_reports_to_the_alarm_topic(synth, rule)
    assert rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    detail = rule["EventPattern"]["detail"]
    assert "AssumeRole" in detail["eventName"]
    (role_arn,) = detail["requestParameters"]["roleArn"]
    assert _identity_output(synth, role_arn) == BROKER_ROLE_ARN
    invoked_by = [a["userIdentity"]["invokedBy"] for a in detail["$or"]]
    assert [{"anything-but": ["ecs-tasks.amazonaws.com"]}] in invoked_by
    assert [{"exists": False}] in invoked_by


def test_eventbridge_may_publish_to_the_encrypted_alarm_topic(synth: Synthesized) -> None:
    resources = synth.stack("Services")["Resources"]
    topic = _alarm_topic(synth)
    rules = {lid for lid in synth.resources("AWS::Events::Rule", "Services")}
    assert len(rules) == 3
    (policy,) = [
        r["Properties"]["PolicyDocument"]
        for r in resources.values()
        if r["Type"] == "AWS::SNS::TopicPolicy" and {"Ref": topic} in r["Properties"]["Topics"]
    ]
    (publish,) = [
        s for s in policy["Statement"] if s.get("Principal") == {"Service": "events.amazonaws.com"}
    ]
    assert publish["Action"] == "sns:Publish"
    sources = publish["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert sorted(s["Fn::GetAtt"][0] for s in sources) == sorted(rules)
    key_id = resources[topic]["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key_policy = resources[key_id]["Properties"]["KeyPolicy"]["Statement"]
    (events,) = [s for s in key_policy if s.get("Principal") == {"Service": "events.amazonaws.com"}]
    assert sorted(_list(events["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert events["Condition"]["StringEquals"] == {"aws:SourceAccount": "111111111111"}


@pytest.mark.parametrize("source", ["aws.kms", "aws.secretsmanager", "aws.sts"])
def test_alarm_rules_watch_the_default_bus(synth: Synthesized, source: str) -> None:
    """AWS service events (CloudTrail included) arrive on the default event bus only."""
    (rule,) = _rules(synth, source)
    assert "EventBusName" not in rule
