"""Stateful stack: keys, user directory, token vault and session table.

Everything here holds data that outlives a deployment, so the stack has termination
protection, every resource is retained on deletion, and each keeps a fixed logical ID (set
explicitly below) so that refactoring the construct tree never replaces one.

The binder's task role is created here too: it is the vault's identity. The vault key's
policy names it by ARN (the only principal that may decrypt vault secrets), and a key-policy
reference to a role in the services stack, which depends on this one, would be a cross-stack
cycle. The services stack runs the binder with this role.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnResource, RemovalPolicy, Stack

from constructs import Construct, IConstruct
from constructs.hardened_service import ecs_tasks_principal
from constructs.log_encryption import EncryptedLogs
from constructs.managed_policy_role import ManagedPolicyRole
from constructs.nag import acknowledge
from constructs.session_table import SessionTable
from constructs.token_vault import TokenVault
from constructs.user_directory import UserDirectory
from stacks.config import AppConfig

# Logical IDs of the stateful resources. Changing one replaces (and orphans) the resource.
FIXED_LOGICAL_IDS = {
    "LogsKey": "logs.key",
    "WafLogs": "self.waf_log_group",
    "VaultKey": "vault.key",
    "UserPool": "directory.user_pool",
    "UserPoolDomain": "directory.domain",
    "AlbClient": "directory.alb_client",
    "ApiClient": "directory.api_client",
    "SessionTable": "sessions.table",
    "BinderTaskRole": "self.binder_task_role",
    "BinderTaskRolePolicy": "binder_task_role.managed_policy",
}


class IdentityStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, termination_protection=True, **kwargs)

        self.logs = EncryptedLogs(self, "Logs", retention_days=config.log_retention_days)
        # Here, not in the stateless stack: a retained log group with a fixed name would block
        # redeploying that stack.
        self.waf_log_group = self.logs.waf_log_group(self, "WafLogs")
        # Retained like the key that names it: if the stack were ever deleted, the retained
        # vault stays readable by this role (and by no one else) instead of by no one.
        self.binder_task_role = ManagedPolicyRole(
            self,
            "BinderTaskRole",
            assumed_by=ecs_tasks_principal(self),
            description="Task role of Binder, the token vault's only broker (named by the vault "
            "key's policy): only what the application itself calls",
        )
        self.vault = TokenVault(
            self, "Vault", vault_prefix=config.vault_prefix, broker=self.binder_task_role
        )
        self.directory = UserDirectory(
            self,
            "Directory",
            domain_prefix=config.cognito_domain_prefix,
            alb_callback_url=config.callback_url,
            api_callback_urls=config.api_client_callback_urls,
        )
        self.sessions = SessionTable(self, "Sessions", vault=self.vault)
        for provider in config.providers:
            if not provider.has_credentials:
                # An mcp entry without a client id: the binder registers its own client and
                # keeps it in the vault (`{vault_prefix}/_mcp-client/...`), so there is no
                # secret for an operator to set.
                continue
            secret = self.vault.add_provider_credentials(
                provider.name, client_id=provider.client_id
            )
            _pin_logical_id(secret, f"ProviderSecret{_pascal(provider.name)}")
            acknowledge(
                secret,
                (
                    "AwsSolutions::AwsSolutions-SMG4",
                    "NIST.800.53.R5::NIST.800.53.R5-SecretsManagerRotationEnabled",
                    "HIPAA.Security::HIPAA.Security-SecretsManagerRotationEnabled",
                ),
                f"This is the OAuth client secret that {provider.name} issues in its developer "
                "console; only the provider can rotate it, so a Secrets Manager rotation Lambda "
                "has nothing to call. Rotation is a documented operator procedure.",
            )
        self.vault.grant_broker(self.binder_task_role)
        self.sessions.grant_item_access(self.binder_task_role)
        for role_resource in (self.binder_task_role, self.binder_task_role.managed_policy):
            role_resource.apply_removal_policy(RemovalPolicy.RETAIN)
        for logical_id, path in FIXED_LOGICAL_IDS.items():
            owner, attr = path.split(".")
            holder = self if owner == "self" else getattr(self, owner)
            _pin_logical_id(getattr(holder, attr), logical_id)


def _pin_logical_id(construct: IConstruct, logical_id: str) -> None:
    default = construct.node.default_child
    resource = default if isinstance(default, CfnResource) else construct
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to pin")
    resource.override_logical_id(logical_id)


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))
