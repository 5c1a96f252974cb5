"""A customer-managed KMS key for CloudWatch Logs, and log groups that always use it.

The key also encrypts the S3 server access logs of the ALB log bucket (constructs/edge.py).

Every log group of the project is created through `EncryptedLogs.log_group`, so none can be
created without encryption or retention.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs

from constructs import Construct

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


class EncryptedLogs(Construct):
    """Owns the logs CMK (rotation on, retained) and creates log groups encrypted with it.

    Props:
    - retention_days: retention of every log group created here (one of CloudWatch Logs'
      periods; default 365).
    - removal_policy: of the key (default RETAIN: logs written with it stay readable).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        retention_days: int = 365,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        if retention_days not in _RETENTION:
            raise ValueError(f"retention_days must be one of {sorted(_RETENTION)}")
        self.retention = _RETENTION[retention_days]
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "Key",
            description="Encrypts the CloudWatch Logs log groups of the secure agents platform",
            enable_key_rotation=True,
            removal_policy=removal_policy,
            pending_window=Duration.days(30),
        )
        # CloudWatch Logs encrypts on behalf of this account's log groups only.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsForThisAccountsLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:GenerateDataKey",
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:DescribeKey",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )

        # S3 server access log delivery writes SSE-KMS objects with this key (the ALB log
        # bucket's access logs, constructs/edge.py): a data key per object (GenerateDataKey),
        # Decrypt for multipart uploads. Only for logs of this account's buckets: S3 sets
        # aws:SourceAccount to the source bucket's owner. (aws:SourceArn is the source bucket's
        # ARN, which names no account, so it cannot narrow this further.)
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowS3ServerAccessLogDeliveryForThisAccount",
                principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )

    def waf_log_group(self, scope: Construct, construct_id: str) -> logs.LogGroup:
        """The log group WAF writes to: WAF requires names that start with aws-waf-logs-."""
        return self.log_group(
            scope, construct_id, name=f"aws-waf-logs-{Stack.of(scope).stack_name.lower()}"
        )

    def log_group(
        self, scope: Construct, construct_id: str, *, name: str | None = None
    ) -> logs.LogGroup:
        """A new log group in `scope`, encrypted with this key, with the configured retention.

        `name` only where a service requires a fixed prefix (WAF: aws-waf-logs-).
        """
        return logs.LogGroup(
            scope,
            construct_id,
            log_group_name=name,
            encryption_key=self.key,
            retention=self.retention,
            removal_policy=RemovalPolicy.RETAIN,
        )
