"""Day-one operations: one dashboard for the services and the audit trail, and alarms on the
audit trail's security signals.

The binder writes one JSON line per audit event (services/binder/binder/audit.py, vocabulary in
docs/audit.md): `audit` holds the event name, `outcome` its outcome. CloudWatch Logs metric
filters on the binder's log group count the events an operator watches; each becomes a metric
in a namespace of this deployment's own (derived from the stack name, so two deployments in one
account and region never add up each other's counts). The alarms that matter for security go
to the alarm topic; what each one means and what to do is in docs/operations.md.

Request, error and latency figures come from the ALB's target-group metrics (AWS/ApplicationELB),
tasks running from Container Insights (ECS/ContainerInsights, which the cluster enables).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns

from constructs import Construct
from constructs.hardened_service import HardenedFargateService

CONTAINER_INSIGHTS = "ECS/ContainerInsights"


@dataclass(frozen=True)
class AuditSignal:
    """One kind of audit line, counted as a metric.

    A line counts when its `audit` field is `event`, its `outcome` field is `outcome` and its
    `reason` field is none of `except_reasons` (causes that are part of normal use).
    """

    metric_name: str
    label: str
    event: str
    outcome: str
    except_reasons: tuple[str, ...] = ()

    @property
    def filter_pattern(self) -> str:
        """The CloudWatch Logs JSON filter pattern that selects this signal's lines."""
        terms = [f'$.audit = "{self.event}"', f'$.outcome = "{self.outcome}"']
        terms += [f'$.reason != "{reason}"' for reason in self.except_reasons]
        return "{ " + " && ".join(terms) + " }"


TOKENS_ISSUED = AuditSignal("TokensIssued", "Tokens issued", "token_issued", "ok")
# Every callback check passed and the tokens were stored: the end of a consent.
CONSENTS_COMPLETED = AuditSignal(
    "ConsentsCompleted", "Consents completed", "connection_created", "ok"
)
# A browser user who is not the session's user opened or completed its authorization.
BINDING_REJECTIONS = AuditSignal(
    "BindingRejections", "Binding rejections", "binding_rejected", "refused"
)
# A callback with a missing, forged, replayed or expired state. "superseded" is the session's
# own user having opened the link again since, which is normal use.
STATE_REJECTIONS = AuditSignal(
    "StateRejections",
    "State rejections",
    "state_rejected",
    "refused",
    except_reasons=("superseded",),
)
REFRESH_FAILURES = AuditSignal("RefreshFailures", "Refresh failures", "refresh_failed", "error")
# Secrets Manager or KMS failed after retries; the caller got a 503.
VAULT_UNAVAILABLE = AuditSignal(
    "VaultUnavailable", "Vault unavailable", "vault_unavailable", "error"
)
AUDIT_SIGNALS = (
    TOKENS_ISSUED,
    CONSENTS_COMPLETED,
    BINDING_REJECTIONS,
    STATE_REJECTIONS,
    REFRESH_FAILURES,
    VAULT_UNAVAILABLE,
)


@dataclass(frozen=True)
class ObservedService:
    """A service behind the ALB, as the dashboard shows it: a label, the service and the
    target group the ALB forwards its traffic to."""

    label: str
    service: HardenedFargateService
    target_group: elbv2.ApplicationTargetGroup


class Observability(Construct):
    """A CloudWatch dashboard of the services and the binder's audit trail, and alarms on the
    audit trail's security signals.

    Props:
    - services: the services behind the ALB, in dashboard order (requests, 4xx/5xx, latency
      p50/p99 and tasks running per service).
    - audit_log_group: the binder's log group (`HardenedFargateService.log_group`); one metric
      filter per signal in AUDIT_SIGNALS goes on it.
    - topic: the alarm topic; every alarm here notifies it on ALARM and on OK.
    - namespace: the metric namespace of the audit signals. Default: `<stack name>/Audit`, so
      two deployments in one account and region keep their counts apart.
    - period: the window the alarms count over. Default: 5 minutes.
    - binding_rejections: alarm when at least this many binding rejections fall in one
      period. Default: 3 (one is usually a forwarded link; several are someone probing).
    - state_rejections: alarm threshold for state rejections other than "superseded".
      Default: 10 (expired links and back-button replays make a few a day).
    - refresh_failures: alarm threshold for failed refreshes. Default: 10 (users revoking
      access at the provider make a steady trickle of invalid_grant).
    - vault_unavailable: alarm threshold for vault failures (after retries, each one a 503 to
      a user). Default: 3.
    - other_alarms: alarms made elsewhere to show beside these in the dashboard's alarm
      status widget. Default: none.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        services: Sequence[ObservedService],
        audit_log_group: logs.ILogGroup,
        topic: sns.ITopic,
        namespace: str | None = None,
        period: Duration | None = None,
        binding_rejections: int = 3,
        state_rejections: int = 10,
        refresh_failures: int = 10,
        vault_unavailable: int = 3,
        other_alarms: Sequence[cloudwatch.IAlarm] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        thresholds = {
            "binding_rejections": binding_rejections,
            "state_rejections": state_rejections,
            "refresh_failures": refresh_failures,
            "vault_unavailable": vault_unavailable,
        }
        for prop, threshold in thresholds.items():
            if threshold < 1:
                # ">= 0" would be in ALARM for every period, quiet ones included.
                raise ValueError(f"{prop} must be at least 1, got {threshold}")
        self.namespace = namespace or f"{Stack.of(self).stack_name}/Audit"
        self.period = period or Duration.minutes(5)

        self.metric_filters: dict[str, logs.MetricFilter] = {}
        for signal in AUDIT_SIGNALS:
            self.metric_filters[signal.metric_name] = logs.MetricFilter(
                self,
                f"{signal.metric_name}Filter",
                log_group=audit_log_group,
                filter_pattern=logs.FilterPattern.literal(signal.filter_pattern),
                metric_namespace=self.namespace,
                metric_name=signal.metric_name,
                metric_value="1",
                unit=cloudwatch.Unit.COUNT,
            )

        action = cw_actions.SnsAction(topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for signal, threshold, description in (
            (
                BINDING_REJECTIONS,
                binding_rejections,
                "Consent links were opened or completed by a user other than the one who "
                "started them (binding_rejected). Nothing was granted.",
            ),
            (
                STATE_REJECTIONS,
                state_rejections,
                "OAuth callbacks arrived with a missing, forged, replayed or expired state "
                "(state_rejected). Nothing was stored.",
            ),
            (
                REFRESH_FAILURES,
                refresh_failures,
                "Providers refused or failed token refreshes (refresh_failed): check the "
                "reason (invalid_grant, invalid_client, http_<status>).",
            ),
            (
                VAULT_UNAVAILABLE,
                vault_unavailable,
                "Secrets Manager or KMS failed after retries (vault_unavailable); users got "
                "503 answers.",
            ),
        ):
            alarm = cloudwatch.Alarm(
                self,
                signal.metric_name,
                alarm_description=f"{description} See docs/operations.md, 'Dashboard and alarms'.",
                metric=self.audit_metric(signal),
                threshold=threshold,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            self.alarms[signal.metric_name] = alarm

        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown="## Secure agents\nRequests, errors and latency per service from the "
                "ALB, tasks from Container Insights, and the binder's audit events counted "
                "by metric filters. Alarms: docs/operations.md, 'Dashboard and alarms'.",
                width=24,
                height=2,
            )
        )
        for observed in services:
            self.dashboard.add_widgets(*self._service_widgets(observed))
        self.dashboard.add_widgets(*self._audit_widgets())
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms",
                alarms=[*self.alarms.values(), *other_alarms],
                width=24,
            )
        )

    def audit_metric(
        self, signal: AuditSignal, period: Duration | None = None
    ) -> cloudwatch.Metric:
        """The count of `signal`'s audit lines per period (default: the alarms' period)."""
        return cloudwatch.Metric(
            namespace=self.namespace,
            metric_name=signal.metric_name,
            label=signal.label,
            statistic=cloudwatch.Stats.SUM,
            period=period or self.period,
        )

    def _service_widgets(self, observed: ObservedService) -> list[cloudwatch.IWidget]:
        metrics = observed.target_group.metrics
        minute = Duration.minutes(1)
        service = observed.service.service
        tasks = {"ClusterName": service.cluster.cluster_name, "ServiceName": service.service_name}
        name = observed.label
        return [
            cloudwatch.GraphWidget(
                title=f"{name}: requests",
                left=[metrics.request_count(period=minute, label="Requests")],
            ),
            cloudwatch.GraphWidget(
                title=f"{name}: 4xx / 5xx",
                left=[
                    metrics.http_code_target(
                        elbv2.HttpCodeTarget.TARGET_4XX_COUNT, period=minute, label="4xx"
                    ),
                    metrics.http_code_target(
                        elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=minute, label="5xx"
                    ),
                ],
            ),
            cloudwatch.GraphWidget(
                title=f"{name}: latency (seconds)",
                left=[
                    metrics.target_response_time(
                        period=minute, statistic=cloudwatch.Stats.p(50), label="p50"
                    ),
                    metrics.target_response_time(
                        period=minute, statistic=cloudwatch.Stats.p(99), label="p99"
                    ),
                ],
            ),
            cloudwatch.GraphWidget(
                title=f"{name}: tasks",
                left=[
                    cloudwatch.Metric(
                        namespace=CONTAINER_INSIGHTS,
                        metric_name=metric_name,
                        dimensions_map=tasks,
                        statistic=cloudwatch.Stats.AVERAGE,
                        period=minute,
                        label=label,
                    )
                    for metric_name, label in (
                        ("RunningTaskCount", "Running"),
                        ("DesiredTaskCount", "Desired"),
                    )
                ],
                left_y_axis=cloudwatch.YAxisProps(min=0),
            ),
        ]

    def _audit_widgets(self) -> list[cloudwatch.IWidget]:
        def graph(title: str, signals: Sequence[AuditSignal]) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(
                title=title,
                left=[self.audit_metric(s) for s in signals],
                left_y_axis=cloudwatch.YAxisProps(min=0),
                width=8,
            )

        return [
            graph("Binder: tokens issued, consents completed", (TOKENS_ISSUED, CONSENTS_COMPLETED)),
            graph("Binder: binding and state rejections", (BINDING_REJECTIONS, STATE_REJECTIONS)),
            graph(
                "Binder: refresh failures, vault unavailable", (REFRESH_FAILURES, VAULT_UNAVAILABLE)
            ),
        ]
