"""Stateless stack: the ECS cluster, the agent and binder services, the edge and alarms.

Nothing here holds data that cannot be recreated; the stack can be destroyed and redeployed
(the ALB has deletion protection, turned off by hand first: see README.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, CfnWaitConditionHandle, Duration, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_servicediscovery as servicediscovery
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions

from constructs import Construct
from constructs.edge import Edge
from constructs.hardened_service import HardenedFargateService, ServiceConnectPort, asset_image
from constructs.nag import acknowledge
from constructs.observability import Observability, ObservedService
from constructs.vault_alarms import VaultAlarms
from stacks.config import AppConfig
from stacks.identity_stack import IdentityStack
from stacks.network_stack import NetworkStack

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
BINDER_PUBLIC_PORT = 8080
BINDER_INTERNAL_PORT = 8081
AGENT_PORT = 8080


class ServicesStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        network: NetworkStack,
        identity: IdentityStack,
        upstream_outputs_sha256: str | None = None,
        **kwargs: Any,
    ) -> None:
        """`upstream_outputs_sha256` (default none): a digest of the identity and network
        stacks' deployed outputs, set by `make deploy`. The values this stack reads from them
        are weak references (Fn::GetStackOutput), which CloudFormation resolves only when this
        stack is updated; a marker resource named after the digest makes any change of those
        values an update of this stack."""
        super().__init__(scope, construct_id, **kwargs)
        if upstream_outputs_sha256:
            CfnWaitConditionHandle(self, f"UpstreamOutputs{upstream_outputs_sha256[:16]}")
        logs = identity.logs
        directory = identity.directory

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=network.vpc,
            container_insights_v2=ecs.ContainerInsights.ENHANCED,
            default_cloud_map_namespace=ecs.CloudMapNamespaceOptions(
                name=config.service_namespace,
                type=servicediscovery.NamespaceType.HTTP,
                use_for_service_connect=True,
            ),
        )

        common_env = {
            "COGNITO_ISSUER": directory.issuer,
            "COGNITO_CLIENT_IDS": ",".join(directory.client_ids),
            "LOG_LEVEL": "INFO",
        }
        self.binder = HardenedFargateService(
            self,
            "Binder",
            cluster=self.cluster,
            image=asset_image(
                str(SERVICES_DIR), file="binder/Dockerfile", exclude=_asset_excludes("binder")
            ),
            logs=logs,
            container_port=BINDER_PUBLIC_PORT,
            connect_ports=[
                ServiceConnectPort(name="internal", port=BINDER_INTERNAL_PORT, dns_name="binder")
            ],
            desired_count=config.binder_desired_count,
            max_count=config.max_task_count,
            # Created and granted in the identity stack: the vault key's policy names it.
            task_role=identity.binder_task_role,
            environment={
                **common_env,
                "PUBLIC_PORT": str(BINDER_PUBLIC_PORT),
                "INTERNAL_PORT": str(BINDER_INTERNAL_PORT),
                "PUBLIC_BASE_URL": f"https://{config.domain_name}",
                "ALLOWED_RETURN_ORIGINS": ",".join(config.allowed_return_origins),
                "VAULT_PREFIX": config.vault_prefix,
                "VAULT_KMS_KEY_ARN": identity.vault.key.key_arn,
                "SESSION_TABLE_NAME": identity.sessions.table.table_name,
                "PROVIDERS": json.dumps(
                    [
                        p.binder_entry(
                            identity.vault.provider_secrets[p.name].secret_arn
                            if p.has_credentials
                            else None
                        )
                        for p in config.providers
                    ]
                ),
            },
        )

        self.agent = HardenedFargateService(
            self,
            "Agent",
            cluster=self.cluster,
            image=asset_image(
                str(SERVICES_DIR), file="agent/Dockerfile", exclude=_asset_excludes("agent")
            ),
            logs=logs,
            container_port=AGENT_PORT,
            desired_count=config.agent_desired_count,
            max_count=config.max_task_count,
            environment={
                **common_env,
                "PORT": str(AGENT_PORT),
                "BINDER_INTERNAL_URL": f"http://binder:{BINDER_INTERNAL_PORT}",
                "AGENT_MODEL": "bedrock",
                "BEDROCK_MODEL_ID": config.bedrock_models[0].model_id,
                "AGENT_PROVIDERS": ",".join(p.name for p in config.providers),
                "OIDC_USERINFO": json.dumps(
                    {p.name: p.userinfo_url for p in config.providers if p.userinfo_url}
                ),
                # Every `kind: mcp` provider: the agent lists and calls its tools with each
                # user's token for the binder provider of the same name.
                "AGENT_MCP_SERVERS": json.dumps(config.agent_mcp_servers),
            },
        )
        for statement in self._bedrock_statements(config):
            self.agent.task_role.add_to_principal_policy(statement)
            if statement.conditions and isinstance(self.agent.task_role, Construct):
                acknowledge(
                    self.agent.task_role,
                    tuple(
                        f"AwsSolutions::AwsSolutions-IAM5[Resource::{arn}]"
                        for arn in statement.resources
                        if "*" in arn
                    ),
                    "One foundation model, in whichever region its inference profile routes "
                    "to, and only through that profile: the statement is conditioned on "
                    "bedrock:InferenceProfileArn equal to the configured profile's ARN, as AWS "
                    "documents for cross-region inference. Naming regions instead breaks the "
                    "agent whenever AWS adds one to the profile.",
                )
        self.binder.allow_connect_from(self.agent)
        # The binder is a Service Connect server, so the agent must start after it.
        self.agent.service.node.add_dependency(self.binder.service)

        certificate = self._certificate(config)
        self.edge = Edge(
            self,
            "Edge",
            vpc=network.vpc,
            certificate=certificate,
            directory=directory,
            agent=self.agent,
            binder=self.binder,
            waf_log_group=identity.waf_log_group,
            logs_key=identity.logs.key,
            log_retention_days=config.log_retention_days,
            access_log_lock_days=config.access_log_lock_days,
            waf_rate_limit=config.waf_rate_limit,
        )
        if config.hosted_zone_id and config.hosted_zone_name:
            route53.ARecord(
                self,
                "AliasRecord",
                zone=self._zone(config),
                record_name=config.domain_name,
                target=route53.RecordTarget.from_alias(
                    route53_targets.LoadBalancerTarget(self.edge.load_balancer)
                ),
            )
        self.alarm_topic = self._alarms(config)
        # What the vault key's policy cannot prevent (key changes, vault secrets touched by
        # anyone but the broker, the broker role assumed outside ECS), reported from CloudTrail.
        self.vault_alarms = VaultAlarms(
            self, "VaultAlarms", vault=identity.vault, topic=self.alarm_topic
        )
        # The dashboard, and alarms on the binder's audit lines (docs/operations.md).
        self.observability = Observability(
            self,
            "Observability",
            services=[
                ObservedService("Agent", self.agent, self.edge.agent_target_group),
                ObservedService("Binder", self.binder, self.edge.binder_target_group),
            ],
            audit_log_group=self.binder.log_group,
            topic=self.alarm_topic,
            other_alarms=self.service_alarms,
        )

        for service in (self.agent, self.binder):
            acknowledge(
                service.task_definition,
                ("AwsSolutions::AwsSolutions-ECS2",),
                "Environment variables hold only non-secret configuration (endpoints, ARNs, "
                "public client IDs); secrets are read at run time from Secrets Manager by the "
                "task role, never injected as variables.",
            )

    def _bedrock_statements(self, config: AppConfig) -> list[iam.PolicyStatement]:
        """InvokeModel on the configured models only (Converse and ConverseStream are
        authorized as InvokeModel and InvokeModelWithResponseStream).

        A foundation model is granted in this region. An inference profile is granted by its
        ARN, and its foundation model in any region (`global.` profiles also reach the ARN with
        no region) only when the call comes through that profile (bedrock:InferenceProfileArn):
        AWS adds destination regions to a profile without notice, and a hand-kept region list
        breaks the agent when it does.
        """
        actions = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
        direct: list[str] = []
        through_profile: list[iam.PolicyStatement] = []
        for model in config.bedrock_models:
            if not model.is_inference_profile:
                direct.append(self._foundation_model_arn(model.model_id, region=self.region))
                continue
            profile = self.format_arn(
                service="bedrock", resource="inference-profile", resource_name=model.model_id
            )
            direct.append(profile)
            regions = ["*", ""] if model.is_global_profile else ["*"]
            through_profile.append(
                iam.PolicyStatement(
                    sid=f"ModelBehindProfile{len(through_profile) + 1}",
                    actions=actions,
                    resources=[
                        self._foundation_model_arn(model.foundation_model_id, region=region)
                        for region in regions
                    ],
                    conditions={"StringEquals": {"bedrock:InferenceProfileArn": profile}},
                )
            )
        return [
            iam.PolicyStatement(
                sid="InvokeConfiguredModelsOnly",
                actions=actions,
                resources=list(dict.fromkeys(direct)),
            ),
            *through_profile,
        ]

    def _foundation_model_arn(self, model_id: str, *, region: str) -> str:
        return self.format_arn(
            service="bedrock",
            region=region,
            account="",
            resource="foundation-model",
            resource_name=model_id,
        )

    def _zone(self, config: AppConfig) -> route53.IHostedZone:
        if not hasattr(self, "_hosted_zone"):
            self._hosted_zone = route53.HostedZone.from_hosted_zone_attributes(
                self,
                "HostedZone",
                hosted_zone_id=str(config.hosted_zone_id),
                zone_name=str(config.hosted_zone_name),
            )
        return self._hosted_zone

    def _certificate(self, config: AppConfig) -> acm.ICertificate:
        if config.certificate_arn:
            return acm.Certificate.from_certificate_arn(self, "Certificate", config.certificate_arn)
        return acm.Certificate(
            self,
            "Certificate",
            domain_name=config.domain_name,
            validation=acm.CertificateValidation.from_dns(self._zone(config)),
        )

    def _alarms(self, config: AppConfig) -> sns.Topic:
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="Encrypts the alarm notification topic (notifications only, no data)",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        for sid, service in (
            ("AllowCloudWatchAlarmsToPublish", "cloudwatch.amazonaws.com"),
            # The vault alarm rules (VaultAlarms); the topic policy names them by ARN.
            ("AllowEventBridgeRulesToPublish", "events.amazonaws.com"),
        ):
            key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=sid,
                    principals=[iam.ServicePrincipal(service)],
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=["*"],
                    conditions={"StringEquals": {"aws:SourceAccount": self.account}},
                )
            )
        topic = sns.Topic(self, "AlarmTopic", master_key=key, enforce_ssl=True)
        # enforce_ssl replaces the default topic policy: CloudWatch needs an explicit grant.
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowThisAccountsAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": self.account},
                    "ArnLike": {
                        "aws:SourceArn": self.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                },
            )
        )
        if config.alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        action = cw_actions.SnsAction(topic)

        alb = self.edge.load_balancer
        alarms = [
            cloudwatch.Alarm(
                self,
                "AlbServerErrors",
                alarm_description="The load balancer itself returned 5xx responses",
                metric=alb.metrics.http_code_elb(
                    elbv2.HttpCodeElb.ELB_5XX_COUNT, period=Duration.minutes(5)
                ),
                threshold=10,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        ]
        for name, fargate, target_group in (
            ("Agent", self.agent, self.edge.agent_target_group),
            ("Binder", self.binder, self.edge.binder_target_group),
        ):
            alarms.append(
                cloudwatch.Alarm(
                    self,
                    f"{name}Unhealthy",
                    alarm_description=f"{name} has unhealthy targets",
                    metric=target_group.metrics.unhealthy_host_count(period=Duration.minutes(1)),
                    threshold=1,
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    evaluation_periods=3,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
            )
            server_errors = cloudwatch.Alarm(
                self,
                f"{name}ServerErrors",
                alarm_description=f"{name} returned 5xx responses; a deployment under way "
                "rolls back",
                metric=target_group.metrics.http_code_target(
                    elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=Duration.minutes(5)
                ),
                threshold=10,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            # A deployment that makes the service answer 5xx rolls back by itself.
            fargate.roll_back_on([server_errors.alarm_name])
            alarms.append(server_errors)
        for alarm in alarms:
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
        self.service_alarms: tuple[cloudwatch.Alarm, ...] = tuple(alarms)
        return topic


def _asset_excludes(service: str) -> list[str]:
    """Stage only what the service's Dockerfile copies: its own folder and the shared code."""
    others = [d.name for d in SERVICES_DIR.iterdir() if d.is_dir()]
    keep = {service, "common"}
    return [
        *(name for name in others if name not in keep),
        "**/__pycache__",
        "**/*.pyc",
        "**/tests",
        "**/.pytest_cache",
    ]
