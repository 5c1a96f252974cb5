"""The token vault: users' third-party tokens in Secrets Manager under the project's CMK.

Naming convention (the binder creates these secrets at run time, one per user and provider):

    {vault_prefix}/{provider}/{sha256(user key)}

so no identifier appears in a resource name, and IAM can scope the broker to the prefix.
The vault also holds one secret per enabled provider for the OAuth client credentials; the
CDK app creates them with a random placeholder and operators set the real values after deploy.

The key policy is written out in full (CDK's default gives the account `kms:*`):

- the account administers the key (policy, rotation, tags, enable/disable, deletion) but gets
  no cryptographic use from that statement, so an IAM grant of `kms:*` or `kms:Decrypt` on `*`
  does not reach it;
- the account may use the key only through Secrets Manager and DynamoDB in this region, which
  is what CloudFormation (creating the provider secrets and the session table), operators
  (setting provider client secrets) and the binder's IAM grants need; DynamoDB may create its
  table grants through the same path;
- nobody but the broker role, named by ARN, may decrypt (or re-encrypt) a vault secret.

What this cannot stop (an administrator who may `kms:PutKeyPolicy`, or who can act as the
broker role) is reported by `constructs/vault_alarms.py`; docs/operations.md says exactly what
holds.
"""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager

from constructs import Construct
from constructs.nag import acknowledge

# The tags the binder sets on each vault secret (services/binder/binder/vault.py); the broker
# may set no other (TagResource is conditioned on these keys).
VAULT_TAG_KEYS = ("oauth-provider", "user-hash")
# Key administration without key use: no Encrypt, Decrypt, ReEncrypt*, GenerateDataKey* or
# CreateGrant, and no wildcard that would name one (`kms:Create*` covers CreateGrant).
KEY_ADMINISTRATION_ACTIONS = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)
# What Secrets Manager calls on behalf of its caller: GenerateDataKey to write a version,
# Decrypt to read one. It never calls Encrypt.
SECRETS_MANAGER_USE = ("kms:Decrypt", "kms:GenerateDataKey")
# What DynamoDB documents for a table under a customer managed key (the AWS managed key
# aws/dynamodb allows the same through DynamoDB); CreateGrant has its own statement. This is
# the key policy's bound; the IAM grants to the binder name only the calls made for it.
DYNAMODB_USE = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*")


class TokenVault(Construct):
    """CMK, naming convention and least-privilege grants of the token vault.

    Props:
    - vault_prefix: first path segment of every vault secret name (required; unique per
      deployment in an account and region).
    - broker: the one role that may decrypt vault secrets (required). The key policy names
      its ARN, so it must live in the same stack as the vault (or one the vault's stack
      depends on): a key-policy reference to a role in a stack that depends on this one
      would be a cross-stack cycle.
    - removal_policy: of the CMK and of the provider credential secrets (default RETAIN:
      deleting the key would make every stored token unreadable).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vault_prefix: str,
        broker: iam.IRole,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        if "/" in vault_prefix or "*" in vault_prefix:
            raise ValueError("vault_prefix must not contain '/' or '*'")
        self.vault_prefix = vault_prefix
        self.broker = broker
        self._removal_policy = removal_policy
        self.key = kms.Key(
            self,
            "Key",
            description="Token vault CMK: users' OAuth tokens, provider client secrets, sessions",
            enable_key_rotation=True,
            removal_policy=removal_policy,
            pending_window=Duration.days(30),
            policy=self._key_policy(),
        )
        # `Secret(encryption_key=key)` would add an account-wide statement (CreateGrant,
        # ReEncrypt* and more through Secrets Manager) to the key policy; the policy above
        # already allows what Secrets Manager needs, so secrets get the key by ARN, a reference
        # with no policy to edit.
        self._key_by_arn = kms.Key.from_key_arn(self, "KeyByArn", self.key.key_arn)
        self.provider_secrets: dict[str, secretsmanager.Secret] = {}

    def _key_policy(self) -> iam.PolicyDocument:
        stack = Stack.of(self)
        account = iam.AccountRootPrincipal()

        def through(service: str) -> dict[str, str]:
            # With the account as principal, a caller also needs an IAM allow; CallerAccount
            # states the same bound for reviewers and survives a later principal change.
            return {
                "kms:ViaService": f"{service}.{stack.region}.amazonaws.com",
                "kms:CallerAccount": stack.account,
            }

        return iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    sid="AccountAdministersTheKeyWithoutUsingIt",
                    principals=[account],
                    actions=list(KEY_ADMINISTRATION_ACTIONS),
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="AccountUsesTheKeyOnlyThroughSecretsManager",
                    principals=[account],
                    actions=list(SECRETS_MANAGER_USE),
                    resources=["*"],
                    conditions={"StringEquals": through("secretsmanager")},
                ),
                iam.PolicyStatement(
                    sid="AccountUsesTheKeyOnlyThroughDynamoDb",
                    principals=[account],
                    actions=list(DYNAMODB_USE),
                    resources=["*"],
                    conditions={"StringEquals": through("dynamodb")},
                ),
                # DynamoDB creates the table's grants (for its own background work) with the
                # credentials of whoever creates or restores the table: CloudFormation's role.
                iam.PolicyStatement(
                    sid="DynamoDbCreatesItsTableGrants",
                    principals=[account],
                    actions=["kms:CreateGrant"],
                    resources=["*"],
                    conditions={
                        "StringEquals": through("dynamodb"),
                        "Bool": {"kms:GrantIsForAWSResource": "true"},
                    },
                ),
                # IAM alone would let any principal allowed GetSecretValue on "*" (a PowerUser
                # or CI role) read every user's tokens through Secrets Manager. The key refuses
                # to decrypt vault secrets for anyone but the broker role, named by ARN:
                # aws:PrincipalArn is the role's ARN for each of its sessions and cannot be set
                # by the caller, unlike a principal tag (sts:TagSession). ReEncrypt* too, or
                # re-encrypting a secret under another key would copy it out.
                iam.PolicyStatement(
                    sid="OnlyTheBrokerRoleDecryptsVaultSecrets",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=["kms:Decrypt", "kms:ReEncrypt*"],
                    resources=["*"],
                    conditions={
                        "StringLike": {"kms:EncryptionContext:SecretARN": self.secret_arn_pattern},
                        "ArnNotEquals": {"aws:PrincipalArn": self.broker.role_arn},
                    },
                ),
            ]
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
            encryption_key=self._key_by_arn,
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
        """What the binder needs, and nothing more; `grantee` must be the vault's broker role.

        - create, read, write and delete secrets under the vault prefix only, and create them
          only under this CMK; tag them with the binder's two tag keys only (`VAULT_TAG_KEYS`);
        - move version staging labels there (compare-and-swap writes: PutSecretValue under a
          custom label, then UpdateSecretVersionStage moves AWSCURRENT from the version read);
        - read the provider credential secrets;
        - use the CMK only through Secrets Manager (DynamoDB use is granted by the table).

        The key policy decrypts vault secrets for the broker role only, so granting this to
        another principal would be a grant that cannot work.
        """
        if grantee.grant_principal is not self.broker.grant_principal:
            raise ValueError(
                "only the vault's broker role can use vault secrets (the key policy names it)"
            )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="TokenVaultSecrets",
                actions=[
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:PutSecretValue",
                    "secretsmanager:UpdateSecretVersionStage",
                    "secretsmanager:DeleteSecret",
                ],
                resources=[self.secret_arn_pattern],
            )
        )
        # CreateSecret with Tags is also authorized as TagResource.
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="TokenVaultTagsBinderKeysOnly",
                actions=["secretsmanager:TagResource"],
                resources=[self.secret_arn_pattern],
                conditions={
                    "ForAllValues:StringEquals": {"aws:TagKeys": list(VAULT_TAG_KEYS)},
                    "Null": {"aws:TagKeys": "false"},
                },
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
        """Use of the CMK, only when the call comes through `service` in this region: the data
        keys Secrets Manager and DynamoDB generate and decrypt for the caller (neither calls
        kms:Encrypt for it)."""
        region = Stack.of(self).region
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid=sid,
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self.key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}
                },
            )
        )
