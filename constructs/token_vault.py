"""The token vault: users' third-party tokens in Secrets Manager under the project's CMK.

Naming convention (the binder creates these secrets at run time, one per user and provider):

    {vault_prefix}/{provider}/{sha256(user key)}

so no identifier appears in a resource name, and IAM can scope the broker to the prefix.
The vault also holds one secret per enabled provider for the OAuth client credentials; the
CDK app creates them with a random placeholder and operators set the real values after deploy.
"""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager

from constructs import Construct
from constructs.nag import acknowledge

# The principal tag the vault key requires before it decrypts a vault secret.
BROKER_TAG_KEY = "secure-agents:vault-access"
BROKER_TAG_VALUE = "broker"


class TokenVault(Construct):
    """CMK, naming convention and least-privilege grants of the token vault.

    Props:
    - vault_prefix: first path segment of every vault secret name (required; unique per
      deployment in an account and region).
    - removal_policy: of the CMK and of the provider credential secrets (default RETAIN:
      deleting the key would make every stored token unreadable).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vault_prefix: str,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        if "/" in vault_prefix or "*" in vault_prefix:
            raise ValueError("vault_prefix must not contain '/' or '*'")
        self.vault_prefix = vault_prefix
        self._removal_policy = removal_policy
        self.key = kms.Key(
            self,
            "Key",
            description="Token vault CMK: users' OAuth tokens, provider client secrets, sessions",
            enable_key_rotation=True,
            removal_policy=removal_policy,
            pending_window=Duration.days(30),
        )
        self.provider_secrets: dict[str, secretsmanager.Secret] = {}
        # IAM alone would let any account principal with kms:Decrypt and GetSecretValue on
        # "*" (a PowerUser or CI role) read every user's tokens. The key itself refuses to
        # decrypt vault secrets for anyone but a principal tagged as the broker.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyTheBrokerDecryptsVaultSecrets",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["kms:Decrypt"],
                resources=["*"],
                conditions={
                    "StringLike": {"kms:EncryptionContext:SecretARN": self.secret_arn_pattern},
                    "StringNotEquals": {f"aws:PrincipalTag/{BROKER_TAG_KEY}": BROKER_TAG_VALUE},
                },
            )
        )

    @property
    def secret_arn_pattern(self) -> str:
        """ARN pattern that matches every user token secret and nothing else."""
        return Stack.of(self).format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{self.vault_prefix}/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def add_provider_credentials(self, provider: str, *, client_id: str) -> secretsmanager.Secret:
        """One secret holding a provider's OAuth client ID and secret, encrypted with the CMK.

        The client secret is a random placeholder until an operator sets the real value
        (docs/deployment.md); the client ID is public and stored alongside for convenience.
        """
        secret = secretsmanager.Secret(
            self,
            f"Provider-{provider}",
            description=f"OAuth client credentials of the {provider} provider (set after deploy)",
            encryption_key=self.key,
            removal_policy=self._removal_policy,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"client_id": client_id}),
                generate_string_key="client_secret",
                password_length=48,
                exclude_punctuation=True,
            ),
        )
        Tags.of(secret).add("oauth-provider", provider)
        self.provider_secrets[provider] = secret
        return secret

    def grant_broker(self, grantee: iam.IGrantable) -> None:
        """What the binder needs, and nothing more.

        - create, read, write, describe, tag and delete secrets under the vault prefix only,
          and create them only under this CMK;
        - read the provider credential secrets;
        - use the CMK only through Secrets Manager (DynamoDB use is granted by the table);
        - the broker tag, without which the key refuses to decrypt vault secrets.
        """
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="TokenVaultSecrets",
                actions=[
                    "secretsmanager:DescribeSecret",
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:PutSecretValue",
                    "secretsmanager:DeleteSecret",
                    "secretsmanager:TagResource",
                ],
                resources=[self.secret_arn_pattern],
            )
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="TokenVaultCreateUnderCmk",
                actions=["secretsmanager:CreateSecret"],
                resources=[self.secret_arn_pattern],
                conditions={
                    "StringEquals": {"secretsmanager:KmsKeyArn": self.key.key_arn},
                    # No replicas: a copy in another region would escape this key.
                    "Null": {"secretsmanager:AddReplicaRegions": "true"},
                },
            )
        )
        principal = grantee.grant_principal
        if isinstance(principal, Construct):
            Tags.of(principal).add(BROKER_TAG_KEY, BROKER_TAG_VALUE)
            acknowledge(
                principal,
                (f"AwsSolutions::AwsSolutions-IAM5[Resource::{self.secret_arn_pattern}]",),
                "Vault secrets are created at run time, one per user and provider, with names "
                "that are hashes unknown at deploy time; the vault prefix is the narrowest "
                "scope IAM can express, and CreateSecret is further bound to the vault CMK.",
            )
        if self.provider_secrets:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="ProviderClientCredentials",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[s.secret_arn for s in self.provider_secrets.values()],
                )
            )
        self.grant_key_via(grantee, service="secretsmanager", sid="TokenVaultKeyViaSecretsManager")

    def grant_key_via(self, grantee: iam.IGrantable, *, service: str, sid: str) -> None:
        """Use of the CMK, only when the call comes through `service` in this region."""
        region = Stack.of(self).region
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid=sid,
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                resources=[self.key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}
                },
            )
        )
