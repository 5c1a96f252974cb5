"""The DynamoDB table of pending authorization sessions and refresh leases."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

from constructs import Construct
from constructs.token_vault import TokenVault


class SessionTable(Construct):
    """Short-lived binder state: authorization sessions (10-minute TTL) and refresh leases.

    Items are keyed by a single string partition key `pk`; expiry is the epoch-seconds
    attribute `expires_at`, which DynamoDB's TTL deletes (the binder also checks it, since
    TTL deletion is not immediate).

    Props:
    - vault: the token vault whose CMK encrypts the table.
    - removal_policy: default RETAIN (stateful stack); deletion protection is on.
    """

    PARTITION_KEY = "pk"
    TTL_ATTRIBUTE = "expires_at"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vault: TokenVault,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        self._vault = vault
        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=dynamodb.Attribute(
                name=self.PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing=dynamodb.Billing.on_demand(),
            encryption=dynamodb.TableEncryptionV2.customer_managed_key(vault.key),
            time_to_live_attribute=self.TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            removal_policy=removal_policy,
        )

    @property
    def key(self) -> kms.IKey:
        return self._vault.key

    def grant_item_access(self, grantee: iam.IGrantable) -> None:
        """Item-level reads and conditional writes on this table only; no scans, no admin."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="SessionTableItems",
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:ConditionCheckItem",
                ],
                resources=[self.table.table_arn],
            )
        )
        self._vault.grant_key_via(grantee, service="dynamodb", sid="SessionTableKeyViaDynamoDb")
