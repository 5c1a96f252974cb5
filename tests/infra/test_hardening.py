"""Tasks, logs, state and names: the hardening a reviewer checks in the templates."""

from __future__ import annotations

import pytest

from stacks.identity_stack import FIXED_LOGICAL_IDS
from tests.infra.assembly import Synthesized

# CloudFormation properties that set a physical name, by resource type.
NAME_PROPERTIES = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::DynamoDB::GlobalTable": "TableName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::KMS::Alias": "AliasName",
    "AWS::Cognito::UserPool": "UserPoolName",
    "AWS::ECS::Cluster": "ClusterName",
    "AWS::ECS::Service": "ServiceName",
    "AWS::ElasticLoadBalancingV2::LoadBalancer": "Name",
    "AWS::ElasticLoadBalancingV2::TargetGroup": "Name",
    "AWS::EC2::SecurityGroup": "GroupName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::WAFv2::WebACL": "Name",
}


def test_every_nag_pack_ran_and_found_nothing_unacknowledged(synth: Synthesized) -> None:
    plugins = {p["pluginName"]: p for p in synth.report["pluginReports"]}
    assert {"AwsSolutions", "NIST.800.53.R5", "HIPAA.Security", "PCI.DSS.321"} <= set(plugins)
    for plugin in plugins.values():
        assert plugin["violations"] == [], plugin["pluginName"]
        for acknowledged in plugin.get("suppressedViolations", []):
            assert len(acknowledged["reason"]) >= 40, acknowledged["acknowledgedId"]


def test_task_definitions_run_read_only_and_non_root(synth: Synthesized) -> None:
    task_definitions = synth.resources("AWS::ECS::TaskDefinition")
    assert len(task_definitions) == 2
    for task_definition in task_definitions.values():
        props = task_definition["Properties"]
        (container,) = props["ContainerDefinitions"]
        assert container["ReadonlyRootFilesystem"] is True
        user = container["User"]
        assert user.split(":")[0] not in ("", "0", "root")
        assert container.get("Privileged", False) is False
        assert container["LinuxParameters"]["Capabilities"]["Drop"] == ["ALL"]
        assert container["LinuxParameters"]["InitProcessEnabled"] is True
        assert container["HealthCheck"]["Command"][0] == "CMD"
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        assert container["MountPoints"] == [
            {"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "scratch"}
        ]
        assert props["Volumes"] == [{"Name": "scratch"}]
        # Nothing secret is injected into the environment.
        assert "Secrets" not in container


def test_services_roll_back_failed_deployments_and_stay_private(synth: Synthesized) -> None:
    services = synth.resources("AWS::ECS::Service")
    assert len(services) == 2
    for service in services.values():
        props = service["Properties"]
        breaker = props["DeploymentConfiguration"]["DeploymentCircuitBreaker"]
        assert breaker == {"Enable": True, "Rollback": True}
        assert props["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
        assert props["EnableExecuteCommand"] is False


def test_services_scale_on_cpu_and_requests(synth: Synthesized) -> None:
    metrics = sorted(
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"][
            "PredefinedMetricSpecification"
        ]["PredefinedMetricType"]
        for p in synth.resources("AWS::ApplicationAutoScaling::ScalingPolicy").values()
    )
    assert metrics == ["ALBRequestCountPerTarget"] * 2 + ["ECSServiceAverageCPUUtilization"] * 2


def test_cluster_has_container_insights_and_service_connect(synth: Synthesized) -> None:
    (cluster,) = synth.resources("AWS::ECS::Cluster").values()
    settings = cluster["Properties"]["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enhanced"} in settings
    binder = next(
        s["Properties"]
        for lid, s in synth.resources("AWS::ECS::Service").items()
        if lid.startswith("Binder")
    )
    (connect,) = binder["ServiceConnectConfiguration"]["Services"]
    assert connect["ClientAliases"] == [{"DnsName": "binder", "Port": 8081}]


def test_every_log_group_is_kms_encrypted_with_retention(synth: Synthesized) -> None:
    log_groups = synth.resources("AWS::Logs::LogGroup")
    assert len(log_groups) >= 6  # flow logs, 2 x (app + service connect), WAF
    for logical_id, log_group in log_groups.items():
        props = log_group["Properties"]
        assert "KmsKeyId" in props, logical_id
        assert props["RetentionInDays"] == 365, logical_id


def test_stateful_stack_has_termination_protection(synth: Synthesized) -> None:
    stacks = {
        name: artifact["properties"]
        for name, artifact in synth.manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    identity = next(props for name, props in stacks.items() if name.endswith("Identity"))
    assert identity["terminationProtection"] is True


@pytest.mark.parametrize("logical_id", sorted(FIXED_LOGICAL_IDS))
def test_stateful_resources_keep_fixed_logical_ids(synth: Synthesized, logical_id: str) -> None:
    resources = synth.stack("Identity")["Resources"]
    assert logical_id in resources
    assert resources[logical_id]["DeletionPolicy"] == "Retain"


def test_provider_secrets_have_fixed_ids_and_the_vault_key(synth: Synthesized) -> None:
    resources = synth.stack("Identity")["Resources"]
    for name in ("Github", "Google", "Microsoft"):
        secret = resources[f"ProviderSecret{name}"]
        assert secret["DeletionPolicy"] == "Retain"
        assert secret["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["VaultKey", "Arn"]}
        assert "SecretString" not in secret["Properties"], "no secret value in the template"


def test_keys_rotate_and_are_retained(synth: Synthesized) -> None:
    for logical_id in ("LogsKey", "VaultKey"):
        key = synth.stack("Identity")["Resources"][logical_id]
        assert key["Properties"]["EnableKeyRotation"] is True
        assert key["DeletionPolicy"] == "Retain"


def test_session_table_has_ttl_pitr_cmk_and_deletion_protection(synth: Synthesized) -> None:
    table = synth.stack("Identity")["Resources"]["SessionTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["SSESpecification"]["SSEType"] == "KMS"
    (replica,) = table["Replicas"]
    assert replica["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert replica["DeletionProtectionEnabled"] is True
    assert replica["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": ["VaultKey", "Arn"]}


def test_user_pool_is_plus_with_mfa_and_deletion_protection(synth: Synthesized) -> None:
    pool = synth.stack("Identity")["Resources"]["UserPool"]["Properties"]
    assert pool["UserPoolTier"] == "PLUS"
    assert pool["MfaConfiguration"] == "ON"
    assert pool["DeletionProtection"] == "ACTIVE"
    assert pool["UserPoolAddOns"]["AdvancedSecurityMode"] == "ENFORCED"
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert pool["Policies"]["PasswordPolicy"]["MinimumLength"] >= 14


def test_alb_client_is_confidential_with_the_idpresponse_callback(synth: Synthesized) -> None:
    resources = synth.stack("Identity")["Resources"]
    alb = resources["AlbClient"]["Properties"]
    assert alb["GenerateSecret"] is True
    assert alb["CallbackURLs"] == ["https://agents.example.com/oauth2/idpresponse"]
    assert alb["AllowedOAuthFlows"] == ["code"]
    api = resources["ApiClient"]["Properties"]
    assert api.get("GenerateSecret", False) is False
    assert api["AllowedOAuthFlows"] == ["code"]


def test_no_hard_coded_physical_names(synth: Synthesized) -> None:
    named = []
    for template in synth.templates.values():
        for logical_id, resource in template["Resources"].items():
            prop = NAME_PROPERTIES.get(resource["Type"])
            value = resource.get("Properties", {}).get(prop) if prop else None
            if value is None:
                continue
            # WAF only logs to groups named aws-waf-logs-*; the rest is derived from the path.
            if resource["Type"] == "AWS::Logs::LogGroup" and str(value).startswith("aws-waf-logs-"):
                continue
            named.append((logical_id, prop, value))
    assert named == []


def test_network_spans_two_zones_with_flow_logs_and_endpoints(synth: Synthesized) -> None:
    subnets = synth.resources("AWS::EC2::Subnet", "Network").values()
    zones = {s["Properties"]["AvailabilityZone"] for s in subnets}
    assert zones == {"us-east-1a", "us-east-1b"}
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets)
    (flow_log,) = synth.resources("AWS::EC2::FlowLog").values()
    assert flow_log["Properties"]["TrafficType"] == "ALL"
    assert flow_log["Properties"]["LogDestinationType"] == "cloud-watch-logs"
    services = set()
    for endpoint in synth.resources("AWS::EC2::VPCEndpoint").values():
        name = endpoint["Properties"]["ServiceName"]
        if isinstance(name, dict):  # gateway endpoints: com.amazonaws.<region>.<service>
            name = "".join(p if isinstance(p, str) else "" for p in name["Fn::Join"][1])
        services.add(name.rsplit(".", 1)[-1] if "bedrock" not in name else "bedrock-runtime")
    # Which endpoints exist, and why KMS and STS do not: tests/infra/test_edge_network.py.
    assert services == {"s3", "dynamodb", "secretsmanager", "api", "dkr", "logs", "bedrock-runtime"}
