"""The two IAM roles a GitHub Actions pipeline uses, through GitHub's OIDC federation.

No long-lived key exists anywhere: a workflow job asks GitHub for an OIDC token and exchanges
it (`sts:AssumeRoleWithWebIdentity`) for one hour of a role, which IAM grants only when the
token's `aud` is `sts.amazonaws.com` and its `sub` is exactly the one configured here
(`StringEquals`, no wildcard):

- the **deploy role**, `sub` = `repo:<owner>/<repo>:environment:<environment>`: only a job that
  runs in the protected GitHub environment (required reviewers, main only) gets it. It may do
  one thing: assume CDK's bootstrap roles of this account and region (deploy, file-publishing,
  image-publishing, lookup), which is what `cdk deploy` does with its own credentials. What
  those roles may do is set by `cdk bootstrap` (its execution policy), not here.
- the **diff role**, `sub` = `repo:<owner>/<repo>:pull_request`: a pull-request job of the
  repository itself (GitHub gives a fork's pull request no token). It may only assume the
  bootstrap lookup role, the read-only role `cdk diff` reads deployed templates with.

The account's GitHub OIDC provider is created here, or an existing one is used by ARN (an
account holds one provider per URL): one or the other, never both (`existing_oidc_provider_arn`
or `oidc_provider_thumbprints`). docs/pipeline.md says how to adopt this and what an attacker
with a pull request can and cannot do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam

from constructs import Construct
from constructs.managed_policy_role import ManagedPolicyRole

GITHUB_OIDC_URL = "https://token.actions.githubusercontent.com"
GITHUB_OIDC_HOST = GITHUB_OIDC_URL.removeprefix("https://")
STS_AUDIENCE = "sts.amazonaws.com"
DEFAULT_BOOTSTRAP_QUALIFIER = "hnb659fds"
# CDK's bootstrap roles (`cdk-<qualifier>-<name>-role-<account>-<region>`) that the CLI
# assumes during `cdk deploy`; `cdk diff` needs only the lookup role.
BOOTSTRAP_ROLES = ("deploy", "file-publishing", "image-publishing", "lookup")
# A session outlives the job that asked for it by at most this much; not configurable.
MAX_SESSION = Duration.hours(1)
# Characters that would make a subject look like a pattern to a reader (IAM's StringEquals
# compares them literally anyway) or end the `sub` claim's fields.
_NOT_IN_A_SUBJECT = frozenset("*?:\"' \t\n")


class GitHubDeployRoles(Construct):
    """The deploy role and the diff role of one GitHub repository, and their OIDC provider.

    Props:
    - repository: `owner/name` exactly as GitHub spells it (required; IAM compares the `sub`
      claim case-sensitively).
    - environment: the protected GitHub environment the deploy job runs in (default
      `production`).
    - existing_oidc_provider_arn: the account's GitHub OIDC provider (default: none, and one
      is created). Never with `oidc_provider_thumbprints`.
    - oidc_provider_thumbprints: certificate thumbprints of a created provider (default: none;
      IAM then checks GitHub's certificate against its own trusted CAs). Never with
      `existing_oidc_provider_arn`.
    - bootstrap_qualifier: the `cdk bootstrap --qualifier` whose roles may be assumed
      (default `hnb659fds`, CDK's own).

    Attributes: `deploy_role`, `diff_role`, `oidc_provider`, `bootstrap_role_arns` (name to
    ARN).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        repository: str,
        environment: str = "production",
        existing_oidc_provider_arn: str | None = None,
        oidc_provider_thumbprints: Sequence[str] | None = None,
        bootstrap_qualifier: str = DEFAULT_BOOTSTRAP_QUALIFIER,
    ) -> None:
        super().__init__(scope, construct_id)
        owner, _, name = repository.partition("/")
        if not owner or not name or "/" in name or _NOT_IN_A_SUBJECT & set(repository):
            raise ValueError(f"repository must be 'owner/name', got {repository!r}")
        if not environment or _NOT_IN_A_SUBJECT & set(environment):
            raise ValueError(f"environment must be a GitHub environment name, got {environment!r}")
        if not bootstrap_qualifier.isalnum():
            raise ValueError(
                f"bootstrap_qualifier must be letters and digits, got {bootstrap_qualifier!r}"
            )
        if existing_oidc_provider_arn is not None and oidc_provider_thumbprints is not None:
            raise ValueError(
                "give existing_oidc_provider_arn or oidc_provider_thumbprints, not both: "
                "thumbprints configure a provider this construct creates"
            )

        if existing_oidc_provider_arn is not None:
            self.oidc_provider: iam.IOidcProvider = iam.OidcProviderNative.from_oidc_provider_arn(
                self, "OidcProvider", existing_oidc_provider_arn
            )
        else:
            self.oidc_provider = iam.OidcProviderNative(
                self,
                "OidcProvider",
                url=GITHUB_OIDC_URL,
                client_ids=[STS_AUDIENCE],
                thumbprints=list(oidc_provider_thumbprints) if oidc_provider_thumbprints else None,
            )

        self.bootstrap_role_arns: Mapping[str, str] = {
            role: _bootstrap_role_arn(self, bootstrap_qualifier, role) for role in BOOTSTRAP_ROLES
        }
        self.deploy_role = self._role(
            "DeployRole",
            subject=f"repo:{repository}:environment:{environment}",
            may_assume=list(self.bootstrap_role_arns.values()),
            description=f"GitHub Actions deploys of {repository} from its {environment} "
            "environment: may only assume the CDK bootstrap roles",
        )
        self.diff_role = self._role(
            "DiffRole",
            subject=f"repo:{repository}:pull_request",
            may_assume=[self.bootstrap_role_arns["lookup"]],
            description=f"GitHub Actions pull requests of {repository}: may only assume the "
            "CDK bootstrap lookup role (cdk diff)",
        )

    def _role(
        self, construct_id: str, *, subject: str, may_assume: list[str], description: str
    ) -> iam.Role:
        role = ManagedPolicyRole(
            self,
            construct_id,
            assumed_by=iam.WebIdentityPrincipal(
                self.oidc_provider.oidc_provider_arn,
                conditions={
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": subject,
                    }
                },
            ),
            max_session_duration=MAX_SESSION,
            description=description,
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="AssumeCdkBootstrapRolesOnly",
                actions=["sts:AssumeRole"],
                resources=may_assume,
            )
        )
        return role


def _bootstrap_role_arn(scope: Construct, qualifier: str, role: str) -> str:
    stack = Stack.of(scope)
    return stack.format_arn(
        service="iam",
        region="",
        resource="role",
        resource_name=f"cdk-{qualifier}-{role}-role-{stack.account}-{stack.region}",
    )
