"""Pipeline stack: the roles a GitHub Actions pipeline deploys and diffs this app with.

Deployed once, by an administrator, before the pipeline's first run (docs/pipeline.md):
`make deploy` does not deploy it, so the deploy role it creates cannot widen itself through
the pipeline's normal path. Its two outputs are the values of the repository variables
`AWS_DEPLOY_ROLE_ARN` and `AWS_DIFF_ROLE_ARN`.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack

from constructs import Construct
from constructs.github_deploy_role import GitHubDeployRoles
from stacks.config import PipelineConfig


class PipelineStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, pipeline: PipelineConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.roles = GitHubDeployRoles(
            self,
            "GitHub",
            repository=pipeline.repository,
            environment=pipeline.environment,
            existing_oidc_provider_arn=pipeline.existing_oidc_provider_arn,
            bootstrap_qualifier=pipeline.bootstrap_qualifier,
        )
        CfnOutput(
            self,
            "DeployRoleArn",
            value=self.roles.deploy_role.role_arn,
            description="Repository variable AWS_DEPLOY_ROLE_ARN: the deploy job's role "
            f"(environment {pipeline.environment} of {pipeline.repository})",
        )
        CfnOutput(
            self,
            "DiffRoleArn",
            value=self.roles.diff_role.role_arn,
            description="Repository variable AWS_DIFF_ROLE_ARN: the pull-request diff job's role",
        )
