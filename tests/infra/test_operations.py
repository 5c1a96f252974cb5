"""Day-one operations on the synthesized assembly (constructs/observability.py): the dashboard,
one metric filter per audit signal on the binder's log group, the security alarms, and
deployments that roll back when the service's 5xx alarm fires.

The filter patterns are checked against audit lines rendered by the binder's own code
(`binder.audit.audit` through `svc_common.jsonlog.JsonFormatter`), and their event and outcome
names against the binder's `audit(...)` calls, so renaming an event breaks these tests.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from binder.audit import audit
from svc_common.jsonlog import JsonFormatter
from tests.infra.assembly import Synthesized

BINDER_SOURCES = Path(__file__).resolve().parents[2] / "services" / "binder" / "binder"
SERVICES = "Services"

# Metric name -> audit lines it must count, as the binder writes them: (event, outcome, reason).
COUNTED: dict[str, list[tuple[str, str, str | None]]] = {
    "TokensIssued": [("token_issued", "ok", None)],
    "ConsentsCompleted": [("connection_created", "ok", None)],
    "BindingRejections": [
        ("binding_rejected", "refused", "authorize_by_other_user"),
        ("binding_rejected", "refused", "foreign_callback_unkilled"),
    ],
    "StateRejections": [
        ("state_rejected", "refused", "missing_state"),
        ("state_rejected", "refused", "unknown_or_used"),
    ],
    "RefreshFailures": [
        ("refresh_failed", "error", "invalid_grant"),
        ("refresh_failed", "error", "http_503"),
    ],
    "VaultUnavailable": [
        ("vault_unavailable", "error", "ThrottlingException"),
        ("vault_unavailable", "error", "AccessDeniedException"),
    ],
}
# Lines no signal counts: normal use (a superseded state is the user reopening a link).
UNCOUNTED: list[tuple[str, str, str | None]] = [
    ("state_rejected", "refused", "superseded"),
    ("session_created", "consent_required", "no_connection"),
    ("token_refreshed", "ok", None),
    ("refresh_discarded", "superseded", None),
    ("authorization_failed", "refused", "issuer_mismatch"),
    ("request_rejected", "unauthenticated", "expired"),
    ("connection_deleted", "ok", "revoked_upstream"),
]
SECURITY_ALARMS = {"BindingRejections", "StateRejections", "RefreshFailures", "VaultUnavailable"}


# -- the binder's audit lines, and CloudWatch's JSON filter syntax ---------------------------


def audit_line(event: str, outcome: str, reason: str | None) -> dict[str, Any]:
    """One audit line exactly as the binder's stdout carries it to CloudWatch Logs, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("binder"))
    logger = logging.getLogger("binder.audit")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        audit(
            event,
            outcome=outcome,
            request_id="Root=1-67490000-000000000000000000000000",
            user_hash="0" * 64,
            provider="github",
            reason=reason,
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    (line,) = stream.getvalue().splitlines()
    parsed: dict[str, Any] = json.loads(line)
    return parsed


_PATTERN = re.compile(r"\{\s*(?P<terms>.+?)\s*\}")
_TERM = re.compile(r'\$\.(?P<field>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>!?=)\s*"(?P<value>[^"*]*)"')


def pattern_terms(pattern: str) -> list[tuple[str, str, str]]:
    """(field, operator, value) of a JSON filter pattern in the subset the filters use:
    `{ term && term ... }`, each term `$.field = "text"` or `$.field != "text"` on a top-level
    field, without wildcards. Anything else fails: extend this with the syntax you add."""
    whole = _PATTERN.fullmatch(pattern.strip())
    assert whole, f"not a JSON filter pattern: {pattern!r}"
    terms = []
    for term in whole["terms"].split("&&"):
        parsed = _TERM.fullmatch(term.strip())
        assert parsed, f"outside the tested filter syntax: {term!r}"
        terms.append((parsed["field"], parsed["op"], parsed["value"]))
    return terms


def matches(pattern: str, line: dict[str, Any]) -> bool:
    """CloudWatch's reading of the subset: string equality on the field's value. A line
    without the field is taken as not matching either operator (the audit lines a `!=` term
    looks at always carry the field)."""
    for field, op, value in pattern_terms(pattern):
        actual = line.get(field)
        if not isinstance(actual, str):
            return False
        if (actual == value) != (op == "="):
            return False
    return True


def test_the_matcher_can_tell_lines_apart() -> None:
    pattern = '{ $.audit = "state_rejected" && $.reason != "superseded" }'
    assert matches(pattern, {"audit": "state_rejected", "reason": "unknown_or_used"})
    assert not matches(pattern, {"audit": "state_rejected", "reason": "superseded"})
    assert not matches(pattern, {"audit": "token_issued", "reason": "unknown_or_used"})
    assert not matches(pattern, {"reason": "unknown_or_used"})
    with pytest.raises(AssertionError):
        matches('{ $.audit = "token_*" }', {"audit": "token_issued"})


@cache
def _binder_calls() -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
    """(event, outcome) of every `audit(...)` call in the binder with a literal event, and
    every string literal in the binder's code."""
    pairs: set[tuple[str, str]] = set()
    strings: set[str] = set()
    for path in BINDER_SOURCES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "audit"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                continue
            for keyword in node.keywords:
                if keyword.arg == "outcome":
                    pairs.update(
                        (str(node.args[0].value), outcome.value)
                        for outcome in ast.walk(keyword.value)
                        if isinstance(outcome, ast.Constant) and isinstance(outcome.value, str)
                    )
    return frozenset(pairs), frozenset(strings)


# -- the synthesized services stack --------------------------------------------------------


def _services_stack_name(synth: Synthesized) -> str:
    (name,) = [n for n in synth.templates if n.endswith(SERVICES)]
    return name


def _one(resources: dict[str, dict[str, Any]], prefix: str) -> str:
    (logical_id,) = [lid for lid in resources if lid.startswith(prefix)]
    return logical_id


def _filters(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """Metric name -> properties of the metric filter that feeds it."""
    found: dict[str, dict[str, Any]] = {}
    for resource in synth.resources("AWS::Logs::MetricFilter", SERVICES).values():
        props = resource["Properties"]
        (transformation,) = props["MetricTransformations"]
        assert transformation["MetricName"] not in found, transformation["MetricName"]
        found[transformation["MetricName"]] = props
    return found


def _alarm_metric(props: dict[str, Any]) -> dict[str, Any]:
    """Namespace, name, dimensions, statistic and period of an alarm on a single metric."""
    if "Metrics" in props:
        (query,) = props["Metrics"]
        stat = query["MetricStat"]
        metric = stat["Metric"]
        return {
            "namespace": metric["Namespace"],
            "name": metric["MetricName"],
            "dimensions": {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])},
            "statistic": stat["Stat"],
            "period": stat["Period"],
        }
    return {
        "namespace": props["Namespace"],
        "name": props["MetricName"],
        "dimensions": {d["Name"]: d["Value"] for d in props.get("Dimensions", [])},
        "statistic": props["Statistic"],
        "period": props["Period"],
    }


def _audit_namespace(synth: Synthesized) -> str:
    return f"{_services_stack_name(synth)}/Audit"


def test_one_metric_filter_per_signal_on_the_binders_log_group(synth: Synthesized) -> None:
    log_groups = synth.resources("AWS::Logs::LogGroup", SERVICES)
    binder_logs = _one(log_groups, "BinderLogs")
    filters = _filters(synth)
    assert set(filters) == set(COUNTED)
    for name, props in filters.items():
        assert props["LogGroupName"] == {"Ref": binder_logs}, name
        (transformation,) = props["MetricTransformations"]
        assert transformation["MetricNamespace"] == _audit_namespace(synth)
        assert transformation["MetricValue"] == "1"
        assert transformation["Unit"] == "Count"


def test_the_audit_namespace_is_this_deployments_own(synth: Synthesized) -> None:
    namespace = _audit_namespace(synth)
    assert not namespace.startswith("AWS/")
    assert re.fullmatch(r"[A-Za-z0-9._/#:-]{1,255}", namespace)


@pytest.mark.parametrize("metric_name", sorted(COUNTED))
def test_filter_patterns_count_the_binders_real_audit_lines(
    synth: Synthesized, metric_name: str
) -> None:
    pattern = _filters(synth)[metric_name]["FilterPattern"]
    for event, outcome, reason in COUNTED[metric_name]:
        assert matches(pattern, audit_line(event, outcome, reason)), (event, outcome, reason)
    others = [line for name, lines in COUNTED.items() if name != metric_name for line in lines]
    for event, outcome, reason in [*others, *UNCOUNTED]:
        assert not matches(pattern, audit_line(event, outcome, reason)), (event, outcome, reason)


def test_filter_patterns_name_events_and_outcomes_the_binder_writes(synth: Synthesized) -> None:
    pairs, strings = _binder_calls()
    for name, props in _filters(synth).items():
        terms = {(field, op): value for field, op, value in pattern_terms(props["FilterPattern"])}
        assert (terms[("audit", "=")], terms[("outcome", "=")]) in pairs, name
        excluded = terms.get(("reason", "!="))
        assert excluded is None or excluded in strings, (name, excluded)


def test_security_alarms_notify_the_alarm_topic(synth: Synthesized) -> None:
    topic = _one(synth.resources("AWS::SNS::Topic", SERVICES), "AlarmTopic")
    namespace = _audit_namespace(synth)
    alarms = {
        metric["name"]: (props, metric)
        for props, metric in (
            (resource["Properties"], _alarm_metric(resource["Properties"]))
            for resource in synth.resources("AWS::CloudWatch::Alarm", SERVICES).values()
        )
        if metric["namespace"] == namespace
    }
    assert set(alarms) == SECURITY_ALARMS
    for name, (props, metric) in alarms.items():
        assert props["AlarmActions"] == [{"Ref": topic}], name
        assert props["OKActions"] == [{"Ref": topic}], name
        assert props["TreatMissingData"] == "notBreaching", name
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold", name
        assert props["Threshold"] >= 1, name
        assert metric["statistic"] == "Sum", name
        assert metric["period"] == 300, name


def _dashboard(synth: Synthesized) -> dict[str, Any]:
    """The dashboard's body, with each reference written as `LogicalId` or `LogicalId.Attr`."""
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard", SERVICES).values()
    assert "DashboardName" not in dashboard["Properties"]
    body = dashboard["Properties"]["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]

    def text(part: Any) -> str:
        if isinstance(part, str):
            return part
        if "Ref" in part:
            return str(part["Ref"])
        if "Fn::GetAtt" in part:
            return ".".join(part["Fn::GetAtt"])
        return "?"

    parsed: dict[str, Any] = json.loads("".join(text(p) for p in parts))
    return parsed


def _graphed(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every metric line of the dashboard's graphs: namespace, name, dimensions, statistic."""
    lines = []
    for widget in dashboard["widgets"]:
        for metric in widget["properties"].get("metrics", []):
            options = metric[-1] if isinstance(metric[-1], dict) else {}
            names = metric[:-1] if options else metric
            lines.append(
                {
                    "namespace": names[0],
                    "name": names[1],
                    "dimensions": dict(zip(names[2::2], names[3::2], strict=True)),
                    "stat": options.get("stat", "Average"),
                    "title": widget["properties"]["title"],
                }
            )
    return lines


def _services(synth: Synthesized) -> dict[str, tuple[str, str]]:
    """Service label -> (service logical ID, its target group's logical ID)."""
    services = synth.resources("AWS::ECS::Service", SERVICES)
    found = {}
    for label in ("Agent", "Binder"):
        service = _one(services, f"{label}Service")
        (balancer,) = services[service]["Properties"]["LoadBalancers"]
        found[label] = (service, balancer["TargetGroupArn"]["Ref"])
    return found


def test_dashboard_shows_traffic_latency_and_tasks_per_service(synth: Synthesized) -> None:
    lines = _graphed(_dashboard(synth))
    cluster = _one(synth.resources("AWS::ECS::Cluster", SERVICES), "Cluster")
    for label, (service, target_group) in _services(synth).items():
        mine = {"TargetGroup": f"{target_group}.TargetGroupFullName"}
        alb = {
            (line["name"], line["stat"])
            for line in lines
            if line["namespace"] == "AWS/ApplicationELB"
            and line["dimensions"].get("TargetGroup") == mine["TargetGroup"]
        }
        assert {
            ("RequestCount", "Sum"),
            ("HTTPCode_Target_4XX_Count", "Sum"),
            ("HTTPCode_Target_5XX_Count", "Sum"),
            ("TargetResponseTime", "p50"),
            ("TargetResponseTime", "p99"),
        } <= alb, label
        tasks = {
            line["name"]
            for line in lines
            if line["namespace"] == "ECS/ContainerInsights"
            and line["dimensions"] == {"ClusterName": cluster, "ServiceName": f"{service}.Name"}
        }
        assert "RunningTaskCount" in tasks, label


def test_dashboard_shows_every_audit_signal_and_every_alarm(synth: Synthesized) -> None:
    dashboard = _dashboard(synth)
    namespace = _audit_namespace(synth)
    graphed = {
        line["name"]
        for line in _graphed(dashboard)
        if line["namespace"] == namespace and line["stat"] == "Sum"
    }
    assert graphed == set(COUNTED)
    (status,) = [w for w in dashboard["widgets"] if w["type"] == "alarm"]
    shown = set(status["properties"]["alarms"])
    every_alarm = {f"{lid}.Arn" for lid in synth.resources("AWS::CloudWatch::Alarm", SERVICES)}
    assert shown == every_alarm


def test_deployments_roll_back_when_their_services_5xx_alarm_fires(synth: Synthesized) -> None:
    alarms = synth.resources("AWS::CloudWatch::Alarm", SERVICES)
    ecs_services = synth.resources("AWS::ECS::Service", SERVICES)
    for label, (service, target_group) in _services(synth).items():
        deployment = ecs_services[service]["Properties"]["DeploymentConfiguration"]
        assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
        config = deployment["Alarms"]
        assert config["Enable"] is True, label
        assert config["Rollback"] is True, label
        (name,) = config["AlarmNames"]
        alarm = alarms[name["Ref"]]["Properties"]
        metric = _alarm_metric(alarm)
        assert metric["namespace"] == "AWS/ApplicationELB", label
        assert metric["name"] == "HTTPCode_Target_5XX_Count", label
        assert metric["dimensions"]["TargetGroup"] == {
            "Fn::GetAtt": [target_group, "TargetGroupFullName"]
        }, label
