"""Network stack: a VPC over two AZs with flow logs and private endpoints for AWS services."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam

from constructs import Construct
from constructs.log_encryption import EncryptedLogs
from constructs.managed_policy_role import ManagedPolicyRole
from constructs.nag import acknowledge
from stacks.config import AppConfig

# Each interface endpoint costs about $0.01 an hour per AZ plus data, so only services a task
# calls from the private subnets get one, and each endpoint's policy lets this account's
# principals make only the calls those callers make. Anything else still leaves through the NAT
# gateways. Left out on purpose:
# - STS: task roles get credentials from the ECS credentials endpoint (169.254.170.2), and no
#   service code calls STS.
# - KMS: no service code calls KMS; Secrets Manager, DynamoDB and ECR call it on their side.
# The IAM grants of the task and execution roles remain the least-privilege layer; an endpoint
# policy is the perimeter: no other account's credentials, and no other API, through it.
INTERFACE_ENDPOINTS: dict[str, tuple[ec2.InterfaceVpcEndpointAwsService, tuple[str, ...]]] = {
    # The binder's token vault and provider client secrets (services/binder/binder/vault.py,
    # app.py). TagResource: CreateSecret with Tags needs it. No DescribeSecret: nothing calls it.
    "SecretsManager": (
        ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
        (
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:CreateSecret",
            "secretsmanager:DeleteSecret",
            "secretsmanager:UpdateSecretVersionStage",
            "secretsmanager:TagResource",
        ),
    ),
    # Image pulls by the task execution roles: the ECR actions of the execution role's grant
    # (AmazonECSTaskExecutionRolePolicy's set), so the endpoint refuses nothing IAM allows.
    "EcrApi": (
        ec2.InterfaceVpcEndpointAwsService.ECR,
        (
            "ecr:GetAuthorizationToken",
            "ecr:BatchCheckLayerAvailability",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchGetImage",
        ),
    ),
    "EcrDocker": (
        ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
        (
            "ecr:GetAuthorizationToken",
            "ecr:BatchCheckLayerAvailability",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchGetImage",
        ),
    ),
    # The awslogs log driver, as the execution role: one stream per task, then events.
    "CloudWatchLogs": (
        ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
        ("logs:CreateLogStream", "logs:PutLogEvents"),
    ),
    # The agent's Converse calls (services/agent/agent/model.py): Converse is authorized as
    # InvokeModel, ConverseStream as InvokeModelWithResponseStream, and a configured guardrail
    # (GUARDRAIL_ID) adds ApplyGuardrail.
    "BedrockRuntime": (
        ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME,
        (
            "bedrock:InvokeModel",
            "bedrock:InvokeModelWithResponseStream",
            "bedrock:ApplyGuardrail",
        ),
    ),
}

# The binder's session table calls (services/binder/binder/sessions.py; TransactWriteItems is
# authorized per item, its condition check as ConditionCheckItem).
DYNAMODB_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
)


VPC_CIDR = "10.40.0.0/16"


class NetworkStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        logs: EncryptedLogs,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(VPC_CIDR),
            availability_zones=list(config.availability_zones),
            nat_gateways=config.nat_gateways,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public",
                    subnet_type=ec2.SubnetType.PUBLIC,
                    cidr_mask=24,
                    map_public_ip_on_launch=False,
                ),
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                ),
            ],
        )
        self.vpc.add_flow_log(
            "FlowLogs",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                logs.log_group(self, "FlowLogGroup"),
                ManagedPolicyRole(
                    self,
                    "FlowLogRole",
                    assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com"),
                    description="Lets VPC Flow Logs write to its encrypted log group",
                ),
            ),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        this_account = {"StringEquals": {"aws:PrincipalAccount": self.account}}
        s3_endpoint = self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3
        )
        # Fargate fetches image layers from ECR's bucket with URLs ECR signs, so the caller is
        # not one of this account's principals: this bucket is open to any principal, as ECR
        # documents for endpoint policies, and for GetObject only.
        s3_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="EcrImageLayers",
                principals=[iam.AnyPrincipal()],
                actions=["s3:GetObject"],
                resources=[f"arn:{self.partition}:s3:::prod-{self.region}-starport-layer-bucket/*"],
            )
        )
        # Otherwise only this account's principals, and only this account's buckets.
        s3_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="ThisAccountOnly",
                principals=[iam.AnyPrincipal()],
                actions=["s3:*"],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "aws:PrincipalAccount": self.account,
                        "aws:ResourceAccount": self.account,
                    }
                },
            )
        )
        dynamodb_endpoint = self.vpc.add_gateway_endpoint(
            "DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
        )
        dynamodb_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="ThisAccountsTablesItemCalls",
                principals=[iam.AnyPrincipal()],
                actions=list(DYNAMODB_ACTIONS),
                resources=[
                    self.format_arn(service="dynamodb", resource="table", resource_name="*")
                ],
                conditions=this_account,
            )
        )
        private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="Interface endpoints: HTTPS from inside the VPC only",
            allow_all_outbound=False,
        )
        # A literal CIDR (not the VPC's CidrBlock attribute) so compliance rules can read it.
        self.endpoint_security_group.add_ingress_rule(
            ec2.Peer.ipv4(VPC_CIDR), ec2.Port.tcp(443), "HTTPS from the VPC"
        )
        self.interface_endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        for name, (service, actions) in INTERFACE_ENDPOINTS.items():
            endpoint = self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=private,
                private_dns_enabled=True,
                open=False,
                security_groups=[self.endpoint_security_group],
            )
            endpoint.add_to_policy(
                iam.PolicyStatement(
                    sid="ThisAccountsCallers",
                    principals=[iam.AnyPrincipal()],
                    actions=list(actions),
                    resources=["*"],
                    conditions=this_account,
                )
            )
            self.interface_endpoints[name] = endpoint
        for subnet in self.vpc.public_subnets:
            acknowledge(
                subnet,
                (
                    "NIST.800.53.R5::NIST.800.53.R5-VPCNoUnrestrictedRouteToIGW",
                    "PCI.DSS.321::PCI.DSS.321-VPCNoUnrestrictedRouteToIGW",
                    "HIPAA.Security::HIPAA.Security-VPCNoUnrestrictedRouteToIGW",
                ),
                "Public subnets hold only the internet-facing ALB and the NAT gateways, which "
                "need a default route to the internet gateway; no task runs in them and they do "
                "not assign public IPs on launch.",
            )
