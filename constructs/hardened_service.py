"""A Fargate service that is hardened by default and cannot be configured out of it.

Every container runs on Graviton (ARM64; the image is built for the same platform, see
`asset_image`) as a non-root user, on a read-only root filesystem with one writable
scratch volume at /tmp, with every Linux capability dropped (so setuid binaries cannot
escalate: Fargate does not offer `no-new-privileges`, and an empty capability set is the
stronger control), behind a container health check, logging to a KMS-encrypted log group with
retention. Deployments roll back on failure (circuit breaker). Task count scales on CPU and,
once attached to a target group, on requests per target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam

from constructs import Construct
from constructs.log_encryption import EncryptedLogs
from constructs.managed_policy_role import ManagedPolicyRole
from constructs.nag import acknowledge

# Matches the image: see services/*/Dockerfile (useradd --uid 10001).
NON_ROOT_USER = "10001:10001"
# jsii exposes AppProtocol.http as a static property that mypy reads as a method.
HTTP: ecs.AppProtocol = ecs.AppProtocol.http  # type: ignore[assignment]
SCRATCH_PATH = "/tmp"  # noqa: S108 - a per-task ephemeral volume, not a shared host /tmp
# One architecture for the task definitions and the images built for them: an image built for
# another platform cannot start, and the deployment circuit breaker rolls the stack back.
# Graviton: about 20% less per vCPU-hour than x86 on Fargate.
CPU_ARCHITECTURE = ecs.CpuArchitecture.ARM64
IMAGE_PLATFORM = ecr_assets.Platform.LINUX_ARM64


def asset_image(directory: str, *, file: str, exclude: Sequence[str] = ()) -> ecs.ContainerImage:
    """A container image built from `directory` for the platform the tasks run on."""
    return ecs.ContainerImage.from_asset(
        directory, file=file, exclude=list(exclude), platform=IMAGE_PLATFORM
    )


def ecs_tasks_principal(scope: Construct) -> iam.IPrincipal:
    """ECS tasks of this account and region only (confused-deputy conditions on the trust
    policy, as the ECS documentation recommends for task and execution roles)."""
    stack = Stack.of(scope)
    return iam.ServicePrincipal("ecs-tasks.amazonaws.com").with_conditions(
        {
            "StringEquals": {"aws:SourceAccount": stack.account},
            "ArnLike": {"aws:SourceArn": stack.format_arn(service="ecs", resource="*")},
        }
    )


@dataclass(frozen=True, kw_only=True)
class ServiceConnectPort:
    """A port this service offers to others through Service Connect (not through the ALB)."""

    name: str
    port: int
    dns_name: str


class HardenedFargateService(Construct):
    """One container per task, hardened; see the module docstring for what is enforced.

    Props:
    - cluster: ECS cluster (with a Service Connect namespace) to run in (required).
    - image: container image (required), built for `IMAGE_PLATFORM`: use `asset_image`.
    - logs: `EncryptedLogs` that creates the service's log groups (required).
    - container_port: the HTTP port the ALB and health checks use (default 8080).
    - health_check_path: HTTP path the container check and the target group probe
      (default /healthz).
    - connect_ports: extra ports offered to other services through Service Connect only
      (default none; the service is then a Service Connect client only).
    - environment: non-secret configuration (default none). Secrets are never passed here.
    - cpu / memory_mib: task size (default 512 / 1024).
    - desired_count: initial and minimum task count (default 2).
    - max_count: autoscaling ceiling (default 6).
    - cpu_target_percent: CPU utilisation target for scaling (default 60).
    - task_role: the role the application runs as (default a new role with no permissions,
      granted to afterwards, trusted by this account's ECS tasks only). Pass one created
      elsewhere when a resource policy must name it (the binder's role, named by the vault
      key's policy, lives in the stateful stack); give it `ecs_tasks_principal` too.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: ecs.ICluster,
        image: ecs.ContainerImage,
        logs: EncryptedLogs,
        container_port: int = 8080,
        health_check_path: str = "/healthz",
        connect_ports: Sequence[ServiceConnectPort] = (),
        environment: Mapping[str, str] | None = None,
        cpu: int = 512,
        memory_mib: int = 1024,
        desired_count: int = 2,
        max_count: int = 6,
        cpu_target_percent: int = 60,
        task_role: iam.IRole | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if not 1 <= desired_count <= max_count:
            raise ValueError("desired_count must be from 1 to max_count")
        self.container_port = container_port
        self.health_check_path = health_check_path

        self.task_role: iam.IRole = task_role or ManagedPolicyRole(
            self,
            "TaskRole",
            assumed_by=ecs_tasks_principal(self),
            description=f"Task role of {construct_id}: only what the application itself calls",
        )
        self.execution_role = ManagedPolicyRole(
            self,
            "ExecutionRole",
            assumed_by=ecs_tasks_principal(self),
            description=f"Execution role of {construct_id}: image pull and log writing only",
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=cpu,
            memory_limit_mib=memory_mib,
            task_role=self.task_role,
            execution_role=self.execution_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=CPU_ARCHITECTURE,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.task_definition.add_volume(name="scratch")

        linux = ecs.LinuxParameters(self, "LinuxParameters", init_process_enabled=True)
        linux.drop_capabilities(ecs.Capability.ALL)

        self.log_group = logs.log_group(self, "Logs")
        probe = (
            "import urllib.request; "
            f"urllib.request.urlopen('http://127.0.0.1:{container_port}{health_check_path}', "
            "timeout=2)"
        )
        self.container = self.task_definition.add_container(
            "app",
            image=image,
            user=NON_ROOT_USER,
            readonly_root_filesystem=True,
            privileged=False,
            linux_parameters=linux,
            essential=True,
            environment=dict(environment or {}),
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="app",
                log_group=self.log_group,
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
            ),
            health_check=ecs.HealthCheck(
                command=["CMD", "python", "-c", probe],
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(15),
            ),
            port_mappings=[
                ecs.PortMapping(name="http", container_port=container_port, app_protocol=HTTP),
                *(
                    ecs.PortMapping(name=p.name, container_port=p.port, app_protocol=HTTP)
                    for p in connect_ports
                ),
            ],
        )
        # ECS adds the image-pull grants when the execution role first pulls; name the only
        # wildcard it needs here, next to the role that holds it.
        self.task_definition.obtain_execution_role()
        acknowledge(
            self.execution_role,
            ("AwsSolutions::AwsSolutions-IAM5[Resource::*]",),
            "ecr:GetAuthorizationToken cannot be scoped: AWS defines it on resource '*' only. "
            "The layer and image actions next to it are scoped to the image's repository.",
        )
        self.container.add_mount_points(
            ecs.MountPoint(container_path=SCRATCH_PATH, source_volume="scratch", read_only=False)
        )

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=cluster.vpc,
            description=f"{construct_id} tasks: ingress only from the ALB and named services",
            allow_all_outbound=False,
        )
        # Third-party APIs, Cognito JWKS and AWS endpoints are all HTTPS.
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS endpoints and provider APIs"
        )

        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=self.task_definition,
            desired_count=desired_count,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            assign_public_ip=False,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[self.security_group],
            enable_execute_command=False,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
            platform_version=ecs.FargatePlatformVersion.LATEST,
            service_connect_configuration=ecs.ServiceConnectProps(
                services=[
                    ecs.ServiceConnectService(
                        port_mapping_name=p.name, dns_name=p.dns_name, port=p.port
                    )
                    for p in connect_ports
                ]
                or None,
                log_driver=ecs.LogDrivers.aws_logs(
                    stream_prefix="service-connect",
                    log_group=logs.log_group(self, "ServiceConnectLogs"),
                    mode=ecs.AwsLogDriverMode.NON_BLOCKING,
                ),
            ),
        )
        self.connect_ports = tuple(connect_ports)

        self.scaling = self.service.auto_scale_task_count(
            min_capacity=desired_count, max_capacity=max_count
        )
        self.scaling.scale_on_cpu_utilization(
            "CpuScaling",
            target_utilization_percent=cpu_target_percent,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )

    def allow_connect_from(self, other: HardenedFargateService) -> None:
        """Let `other` reach this service's Service Connect ports, and nothing else."""
        for p in self.connect_ports:
            self.security_group.add_ingress_rule(
                other.security_group, ec2.Port.tcp(p.port), f"Service Connect from {other.node.id}"
            )
            other.security_group.add_egress_rule(
                self.security_group, ec2.Port.tcp(p.port), f"Service Connect to {self.node.id}"
            )

    def new_target_group(self, scope: Construct, construct_id: str) -> elbv2.ApplicationTargetGroup:
        """A target group for the ALB, probing the health check path of the HTTP port."""
        return elbv2.ApplicationTargetGroup(
            scope,
            construct_id,
            vpc=self.service.cluster.vpc,
            port=self.container_port,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[
                self.service.load_balancer_target(
                    container_name=self.container.container_name,
                    container_port=self.container_port,
                )
            ],
            health_check=elbv2.HealthCheck(
                path=self.health_check_path,
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
            deregistration_delay=Duration.seconds(30),
        )

    def scale_on_requests(
        self, target_group: elbv2.ApplicationTargetGroup, *, requests_per_target: int = 500
    ) -> None:
        """Request-count scaling; call once the target group is attached to a listener."""
        self.scaling.scale_on_request_count(
            "RequestScaling",
            requests_per_target=requests_per_target,
            target_group=target_group,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )

    def roll_back_on(self, alarm_names: Sequence[str]) -> None:
        """Roll a deployment back when any of these CloudWatch alarms goes into ALARM while it
        runs (ECS deployment alarms), on top of the circuit breaker's failed-task check.

        An alarm on this service's own metrics (CPU, memory) would make the service and the
        alarm depend on each other; target-group metrics, which name no service, do not.
        """
        self.service.enable_deployment_alarms(
            list(alarm_names), behavior=ecs.AlarmBehavior.ROLLBACK_ON_ALARM
        )
