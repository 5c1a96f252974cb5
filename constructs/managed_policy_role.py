"""An IAM role whose grants land in a customer-managed policy instead of an inline one.

CDK's `Role` collects every `grant*` into an inline `DefaultPolicy`; NIST 800-53, HIPAA and
PCI DSS checks reject inline policies (they cannot be versioned, reviewed or reused on their
own). This subclass keeps CDK's grant methods working unchanged (including the grants CDK adds
for ECR pulls and log writing) while every statement goes to one managed policy per role.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import aws_iam as iam

from constructs import Construct


class ManagedPolicyRole(iam.Role):
    """Drop-in `iam.Role`; takes the same props."""

    def __init__(self, scope: Construct, construct_id: str, **props: Any) -> None:
        super().__init__(scope, construct_id, **props)
        self._managed_policy: iam.ManagedPolicy | None = None

    @property
    def managed_policy(self) -> iam.ManagedPolicy:
        if self._managed_policy is None:
            self._managed_policy = iam.ManagedPolicy(
                self, "Policy", description=f"Permissions of {self.node.path}", roles=[self]
            )
        return self._managed_policy

    def add_to_principal_policy(
        self, statement: iam.PolicyStatement
    ) -> iam.AddToPrincipalPolicyResult:
        self.managed_policy.add_statements(statement)
        return iam.AddToPrincipalPolicyResult(
            statement_added=True, policy_dependable=self.managed_policy
        )

    def add_to_policy(self, statement: iam.PolicyStatement) -> bool:
        self.add_to_principal_policy(statement)
        return True
