"""The detective control for what the vault key's policy cannot prevent.

The key policy (constructs/token_vault.py) keeps the account from using the vault key except
through Secrets Manager and DynamoDB, and from decrypting vault secrets at all unless the
caller is the broker role. Three things stay possible for an account administrator, by AWS
design: changing the key (its policy, grants, state, deletion), trying to read or write vault
secrets as someone else, and acting as the broker role itself. Each is an API call CloudTrail
records; these EventBridge rules send every such call to the alarm topic.

Requirements that live outside this app (docs/operations.md):
- a CloudTrail trail in the account that logs management events, read and write, without
  excluding AWS KMS events: EventBridge receives "AWS API Call via CloudTrail" events only
  when a trail logs them;
- GetSecretValue and AssumeRole are read-only management events, which EventBridge matches
  only for rules in the ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS state (set below).

CloudTrail delivers these events to EventBridge on a best-effort basis, typically within
minutes; this is detection after the fact, not prevention.
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns

from constructs import Construct
from constructs.token_vault import TokenVault

CLOUDTRAIL_API_CALL = "AWS API Call via CloudTrail"
# EventBridge matches read-only management events (Get*, AssumeRole) only in this state.
WITH_READ_ONLY_EVENTS = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
KEY_EVENTS = ("PutKeyPolicy", "CreateGrant", "ScheduleKeyDeletion", "DisableKey")
# Reads, and the writes that could plant or roll back a user's tokens. DeleteSecret is left
# out: operators revoke with tools/vault_admin.py, and a deletion exposes nothing.
SECRET_EVENTS = (
    "GetSecretValue",
    "CreateSecret",
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "RestoreSecret",
    "PutResourcePolicy",
)
ASSUME_ROLE_EVENTS = ("AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML")
ECS_TASKS = "ecs-tasks.amazonaws.com"


@jsii.implements(events.IRuleTarget)
class _Topic:
    """An SNS target that adds no policy: VaultAlarms writes the topic and key grants itself,
    with conditions (CDK's `SnsTopic` target grants EventBridge the topic unconditionally)."""

    def __init__(self, topic: sns.ITopic) -> None:
        self._topic = topic

    def bind(self, _rule: Any, _id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self._topic.topic_arn)


class VaultAlarms(Construct):
    """EventBridge rules on CloudTrail that send every touch of the vault's guards to `topic`.

    Props:
    - vault: the token vault (its key, prefix and broker role).
    - topic: the alarm topic, in this construct's stack. Its topic policy gains a statement
      letting these rules (by ARN) publish; if it is encrypted, the caller must also let
      events.amazonaws.com use its key (`kms:GenerateDataKey`, `kms:Decrypt`).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, vault: TokenVault, topic: sns.ITopic
    ) -> None:
        super().__init__(scope, construct_id)
        self._topic = topic
        stack = Stack.of(self)
        broker = vault.broker.role_arn
        vault_arn_prefix = stack.format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{vault.vault_prefix}/",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        # A vault secret named by name, by partial ARN or by full ARN.
        vault_secret = [{"prefix": f"{vault.vault_prefix}/"}, {"prefix": vault_arn_prefix}]

        self.key_changes = self._rule(
            "KeyChanges",
            description="The token vault key's policy, grants, state or deletion changed",
            source="aws.kms",
            detail={
                "eventSource": ["kms.amazonaws.com"],
                "eventName": list(KEY_EVENTS),
                # CloudTrail names the key in the record's resources, whatever the caller
                # passed as KeyId (ID, ARN or alias).
                "resources": {"ARN": [vault.key.key_arn]},
            },
        )
        self.secret_access = self._rule(
            "SecretAccessByOthers",
            description="A vault secret was read or written by a principal other than the "
            "broker role",
            source="aws.secretsmanager",
            read_only_events=True,
            detail={
                "eventSource": ["secretsmanager.amazonaws.com"],
                "eventName": list(SECRET_EVENTS),
                "requestParameters": {
                    "$or": [{"secretId": vault_secret}, {"name": vault_secret}],
                },
                # A field missing from the event never matches anything-but: a session of a
                # role other than the broker, or any identity that is no role session at all
                # (IAM user, root user, federated user, AWS service).
                "$or": [
                    {"userIdentity": {"type": [{"anything-but": ["AssumedRole"]}]}},
                    {
                        "userIdentity": {
                            "sessionContext": {
                                "sessionIssuer": {"arn": [{"anything-but": [broker]}]}
                            }
                        }
                    },
                ],
            },
        )
        self.broker_assumed = self._rule(
            "BrokerRoleAssumedOutsideEcs",
            description="The token vault's broker role was assumed by something other than "
            "ECS tasks",
            source="aws.sts",
            read_only_events=True,
            detail={
                "eventSource": ["sts.amazonaws.com"],
                "eventName": list(ASSUME_ROLE_EVENTS),
                "requestParameters": {"roleArn": [broker]},
                "$or": [
                    {"userIdentity": {"invokedBy": [{"anything-but": [ECS_TASKS]}]}},
                    {"userIdentity": {"invokedBy": [{"exists": False}]}},
                ],
            },
        )
        self.rules = (self.key_changes, self.secret_access, self.broker_assumed)
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowVaultAlarmRulesToPublish",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnEquals": {"aws:SourceArn": [rule.rule_arn for rule in self.rules]},
                },
            )
        )

    def _rule(
        self,
        construct_id: str,
        *,
        description: str,
        source: str,
        detail: dict[str, Any],
        read_only_events: bool = False,
    ) -> events.Rule:
        rule = events.Rule(
            self,
            construct_id,
            description=description,
            event_pattern=events.EventPattern(
                source=[source], detail_type=[CLOUDTRAIL_API_CALL], detail=detail
            ),
            targets=[_Topic(self._topic)],
        )
        if read_only_events:
            # The L2 construct offers only enabled/disabled (aws-cdk-lib 2.275).
            cfn = rule.node.default_child
            if not isinstance(cfn, events.CfnRule):
                raise TypeError(f"{rule.node.path} has no CfnRule to set the state on")
            cfn.state = WITH_READ_ONLY_EVENTS
        return rule
