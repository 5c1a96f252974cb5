"""VPC endpoints, the edge's log buckets and the ALB's response headers, on the assembly.

- Only endpoints a task calls exist, and every endpoint policy admits this account's principals
  only, for the calls the services make (read from the service code and the roles' grants).
- The S3 server access logs of the ALB log bucket are encrypted with the logs key, whose policy
  lets S3 log delivery use it for this account only; the ALB access logs are under Object Lock.
- The ALB adds the services' security headers to every response, its own included.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from svc_common.middleware import SecurityHeaders
from tests.infra.assembly import Synthesized
from tests.infra.conftest import example_context

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = example_context()["account"]
REGION = example_context()["region"]
ECR_LAYER_BUCKET = f"arn:aws:s3:::prod-{REGION}-starport-layer-bucket/*"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _service(endpoint: dict[str, Any]) -> str:
    """`secretsmanager`, `ecr.api`, `bedrock-runtime`, `s3`, ... from the ServiceName."""
    name = endpoint["Properties"]["ServiceName"]
    if isinstance(name, dict):  # gateway endpoints: com.amazonaws.{Ref AWS::Region}.<service>
        name = "".join(p if isinstance(p, str) else REGION for p in name["Fn::Join"][1])
    return str(name).split(f"com.amazonaws.{REGION}.", 1)[1]


def _endpoints(synth: Synthesized) -> dict[str, dict[str, Any]]:
    endpoints = synth.resources("AWS::EC2::VPCEndpoint", "Network").values()
    by_service = {_service(e): e for e in endpoints}
    assert len(by_service) == len(endpoints), "one endpoint per service"
    return by_service


def _allowed(endpoint: dict[str, Any]) -> set[str]:
    statements = endpoint["Properties"]["PolicyDocument"]["Statement"]
    return {a for s in statements if s["Effect"] == "Allow" for a in _as_list(s["Action"])}


def _role_actions(synth: Synthesized, role_prefix: str, service: str) -> set[str]:
    roles = {r for r in synth.resources("AWS::IAM::Role") if r.startswith(role_prefix)}
    assert roles, role_prefix
    actions: set[str] = set()
    for type_ in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
        for policy in synth.resources(type_).values():
            if {r.get("Ref") for r in policy["Properties"].get("Roles", [])} & roles:
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                    actions |= {
                        a for a in _as_list(statement["Action"]) if a.startswith(f"{service}:")
                    }
    return actions


def _operations_called(path: str) -> set[str]:
    """The AWS operations a binder module calls through its `_call("snake_name", ...)`."""
    source = (ROOT / path).read_text()
    names = re.findall(r'_call\(\s*"([a-z_]+)"', source)
    assert names, f"no AWS calls found in {path}"
    return {"".join(part.capitalize() for part in n.split("_")) for n in names}


def test_only_endpoints_a_task_calls_exist(synth: Synthesized) -> None:
    endpoints = _endpoints(synth)
    interface = {
        s for s, e in endpoints.items() if e["Properties"]["VpcEndpointType"] == "Interface"
    }
    assert interface == {"secretsmanager", "ecr.api", "ecr.dkr", "logs", "bedrock-runtime"}
    # Task credentials come from the ECS credentials endpoint and no code calls KMS directly.
    assert not {"sts", "kms"} & set(endpoints)
    gateway = {s for s, e in endpoints.items() if e["Properties"]["VpcEndpointType"] == "Gateway"}
    assert gateway == {"s3", "dynamodb"}
    for path in ("services/agent", "services/binder", "services/common"):
        for module in (ROOT / path).rglob("*.py"):
            if "tests" in module.parts:
                continue
            text = module.read_text()
            assert not re.search(r"""client\(\s*["'](sts|kms)["']""", text), module


def test_every_endpoint_policy_admits_only_this_accounts_principals(synth: Synthesized) -> None:
    for service, endpoint in _endpoints(synth).items():
        document = endpoint["Properties"].get("PolicyDocument")
        assert document, f"{service}: no endpoint policy (the default allows everyone)"
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            assert "*" not in _as_list(statement["Action"]), service
            condition = statement.get("Condition", {}).get("StringEquals", {})
            if condition.get("aws:PrincipalAccount") == ACCOUNT:
                continue
            # The one exception: ECR's layer bucket, fetched through URLs ECR signs.
            assert service == "s3", f"{service}: statement not bound to the account"
            assert statement["Action"] == "s3:GetObject"
            assert statement["Resource"] == ECR_LAYER_BUCKET


def test_s3_gateway_keeps_image_layers_reachable_and_other_buckets_to_this_account(
    synth: Synthesized,
) -> None:
    (layers,) = [
        s
        for s in _endpoints(synth)["s3"]["Properties"]["PolicyDocument"]["Statement"]
        if ECR_LAYER_BUCKET in _as_list(s["Resource"])
    ]
    assert "s3:GetObject" in _as_list(layers["Action"])
    others = [
        s
        for s in _endpoints(synth)["s3"]["Properties"]["PolicyDocument"]["Statement"]
        if s is not layers
    ]
    for statement in others:
        assert statement["Condition"]["StringEquals"]["aws:ResourceAccount"] == ACCOUNT


def test_secrets_manager_endpoint_allows_exactly_the_binders_calls(synth: Synthesized) -> None:
    allowed = _allowed(_endpoints(synth)["secretsmanager"])
    called = {
        f"secretsmanager:{op}" for op in _operations_called("services/binder/binder/vault.py")
    }
    # CreateSecret sends Tags, which Secrets Manager authorizes as TagResource.
    assert allowed == called | {"secretsmanager:TagResource"}
    # Whatever the binder's IAM grant allows and the code calls, the endpoint lets through.
    granted = _role_actions(synth, "BinderTaskRole", "secretsmanager")
    assert granted - allowed <= {"secretsmanager:DescribeSecret"}


def test_dynamodb_endpoint_allows_the_session_tables_item_calls(synth: Synthesized) -> None:
    endpoint = _endpoints(synth)["dynamodb"]
    allowed = _allowed(endpoint)
    called = _operations_called("services/binder/binder/sessions.py") - {"TransactWriteItems"}
    # A transaction is authorized per item: its condition check as ConditionCheckItem.
    assert allowed == {f"dynamodb:{op}" for op in called} | {"dynamodb:ConditionCheckItem"}
    assert _role_actions(synth, "BinderTaskRole", "dynamodb") <= allowed
    for statement in endpoint["Properties"]["PolicyDocument"]["Statement"]:
        for resource in _as_list(statement["Resource"]):
            assert resource.startswith(f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/")


def test_image_pull_logging_and_bedrock_endpoints_refuse_nothing_the_roles_may_do(
    synth: Synthesized,
) -> None:
    endpoints = _endpoints(synth)
    for role in ("AgentExecutionRole", "BinderExecutionRole"):
        ecr = _role_actions(synth, role, "ecr")
        assert ecr
        assert ecr <= _allowed(endpoints["ecr.api"])
        assert ecr <= _allowed(endpoints["ecr.dkr"])
        logs = _role_actions(synth, role, "logs")
        assert logs
        assert logs <= _allowed(endpoints["logs"])
    bedrock = _role_actions(synth, "AgentTaskRole", "bedrock")
    assert bedrock
    assert bedrock <= _allowed(endpoints["bedrock-runtime"])
    # Each endpoint admits one service's API only.
    for service, endpoint in endpoints.items():
        prefixes = {a.split(":", 1)[0] for a in _allowed(endpoint)}
        expected = {"ecr.api": "ecr", "ecr.dkr": "ecr", "bedrock-runtime": "bedrock"}
        assert prefixes == {expected.get(service, service)}, service


def _bucket(synth: Synthesized, prefix: str) -> dict[str, Any]:
    (bucket,) = [
        r
        for lid, r in synth.resources("AWS::S3::Bucket", "Services").items()
        if lid.startswith(prefix)
    ]
    return dict(bucket["Properties"])


def test_server_access_logs_are_encrypted_with_the_logs_key(synth: Synthesized) -> None:
    (rule,) = _bucket(synth, "EdgeServerAccessLogs")["BucketEncryption"][
        "ServerSideEncryptionConfiguration"
    ]
    default = rule["ServerSideEncryptionByDefault"]
    assert default["SSEAlgorithm"] == "aws:kms"
    # A weak cross-stack reference: an output of the identity stack, read by name.
    reference = default["KMSMasterKeyID"]["Fn::GetStackOutput"]
    assert reference["StackName"].endswith("Identity")
    identity = synth.stack("Identity")
    output = identity["Outputs"][reference["OutputName"]]["Value"]
    (key_id, attribute) = output["Fn::GetAtt"]
    assert attribute == "Arn"
    assert identity["Resources"][key_id]["Type"] == "AWS::KMS::Key"
    assert key_id.startswith("LogsKey")


def test_logs_key_lets_s3_log_delivery_use_it_for_this_account_only(synth: Synthesized) -> None:
    (key,) = [
        r
        for lid, r in synth.resources("AWS::KMS::Key", "Identity").items()
        if lid.startswith("LogsKey")
    ]
    delivery = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if "logging.s3.amazonaws.com" in _as_list(s.get("Principal", {}).get("Service", []))
    ]
    assert len(delivery) == 1, "one statement, and no unconditioned grant beside it"
    (statement,) = delivery
    assert set(_as_list(statement["Action"])) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def _suppressed(synth: Synthesized, rule: str) -> dict[str, str]:
    """Construct path -> reason of every acknowledged finding of `rule` in any pack."""
    found = {}
    for plugin in synth.report["pluginReports"]:
        for violation in plugin.get("suppressedViolations", []):
            if rule in violation["ruleName"]:
                for construct in violation["violatingConstructs"]:
                    found[construct["constructPath"]] = violation["reason"]
    return found


def test_only_the_alb_log_bucket_keeps_the_sse_s3_acknowledgment(synth: Synthesized) -> None:
    paths = set(_suppressed(synth, "S3DefaultEncryptionKMS"))
    assert not [p for p in paths if "/ServerAccessLogs/" in p]
    # ALB access logs still accept SSE-S3 only.
    assert [p for p in paths if "/Edge/AccessLogs/" in p]
    assert _bucket(synth, "EdgeAccessLogs")["BucketEncryption"][
        "ServerSideEncryptionConfiguration"
    ] == [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]


def test_alb_access_logs_are_under_object_lock_within_their_lifetime(synth: Synthesized) -> None:
    bucket = _bucket(synth, "EdgeAccessLogs")
    assert bucket["ObjectLockEnabled"] is True
    lock = bucket["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    retention = lock["Rule"]["DefaultRetention"]
    assert retention["Mode"] == "GOVERNANCE"
    (lifecycle,) = bucket["LifecycleConfiguration"]["Rules"]
    assert 1 <= retention["Days"] <= lifecycle["ExpirationInDays"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    # S3 does not deliver server access logs to a bucket with Object Lock.
    assert "ObjectLockEnabled" not in _bucket(synth, "EdgeServerAccessLogs")


def test_the_replication_acknowledgment_names_the_real_control(synth: Synthesized) -> None:
    reasons = _suppressed(synth, "S3BucketReplicationEnabled")
    (alb,) = {r for p, r in reasons.items() if "/Edge/AccessLogs/" in p}
    assert "Object Lock" in alb
    (server,) = {r for p, r in reasons.items() if "/Edge/ServerAccessLogs/" in p}
    assert "KMS" in server
    assert "log-archive" in alb
    assert "log-archive" in server


def _listener_attributes(synth: Synthesized, port: int) -> dict[str, str]:
    (listener,) = [
        r
        for r in synth.resources("AWS::ElasticLoadBalancingV2::Listener").values()
        if r["Properties"]["Port"] == port
    ]
    return {a["Key"]: a["Value"] for a in listener["Properties"].get("ListenerAttributes", [])}


def _service_headers() -> dict[str, str]:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        return None

    return {name.decode(): value.decode() for name, value in SecurityHeaders(app).headers}


def test_alb_responses_carry_the_services_security_headers(synth: Synthesized) -> None:
    services = _service_headers()
    https = _listener_attributes(synth, 443)
    prefix = "routing.http.response."
    assert (
        https[f"{prefix}strict_transport_security.header_value"]
        == (services["strict-transport-security"])
    )
    assert (
        https[f"{prefix}x_content_type_options.header_value"]
        == (services["x-content-type-options"])
    )
    assert https[f"{prefix}x_frame_options.header_value"] == services["x-frame-options"]
    assert https[f"{prefix}server.enabled"] == "false"
    # The agent and the binder send different page CSPs and the ALB would overwrite both with
    # one value, so the listener sets none (constructs/edge.py).
    assert f"{prefix}content_security_policy.header_value" not in https
    http = _listener_attributes(synth, 80)
    assert http[f"{prefix}x_content_type_options.header_value"] == "nosniff"
    assert http[f"{prefix}x_frame_options.header_value"] == services["x-frame-options"]
    assert http[f"{prefix}server.enabled"] == "false"
