"""DriftMonitoring: a stage's alert topic, drift alarms, the scheduled drift job and the dashboard."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from mlinfra_drift import metrics
from mlinfra_drift.jobspec import ModelJob
from mlinfra_infra import jobpackage, layout, naming
from mlinfra_infra.config import ModelConfig, MonitoringSettings

from .common import TYPE_PREFIX, deny_everyone, policy_document, statement, tags
from .driftjob import PERIOD_SECONDS, DriftJob, DriftJobArgs, log_group_name

# The drift job publishes MaxPSI (and Rows) once per run, so the alarms' period is the schedule's.
DRIFT_PERIOD_SECONDS = PERIOD_SECONDS
# The drift-silent alarm fires after this many schedule periods without a run that scored (or found nothing to score).
SILENT_PERIODS = 2

_DASHBOARD_WIDTH = 24
_WIDGET_WIDTH = 6
_WIDGET_HEIGHT = 6


def monitored(settings: ModelConfig) -> bool:
    """Whether the drift job watches a model: it needs SageMaker data capture, which only real-time endpoints have."""
    return settings.mode == "realtime" and settings.capture.enabled


def alarm_rule(alarm_names: Sequence[str]) -> str:
    """Return a composite alarm rule that is in ALARM when any of `alarm_names` is."""
    if not alarm_names:
        raise ValueError("a composite alarm needs at least one alarm to watch")
    return " OR ".join(f'ALARM("{alarm}")' for alarm in alarm_names)


@dataclass
class MonitoredEndpoint:
    """An endpoint DriftMonitoring watches: its model, name, health alarms and settings."""

    model: str
    endpoint_name: pulumi.Input[str]
    health_alarm_names: pulumi.Input[list[str]]
    settings: ModelConfig


@dataclass
class DriftMonitoringArgs:
    """The stage's monitoring settings and the endpoints to watch."""

    project: str
    stage: str
    owner: str
    region: str
    account_id: pulumi.Input[str]
    settings: MonitoringSettings
    endpoints: Sequence[MonitoredEndpoint]
    registry_bucket: pulumi.Input[str]
    registry_bucket_arn: pulumi.Input[str]
    registry_key_arn: pulumi.Input[str]


class DriftMonitoring(pulumi.ComponentResource):
    """The stage's alert topic, per-model drift alarms, the scheduled drift job, composite alarms and dashboard.

    Health alarms (5XX, p99 latency) belong to each ModelEndpoint, whose blue/green auto-rollback watches them; they
    have no actions. Here one composite alarm per endpoint ORs them with the model's drift and drift-silent alarms and
    is the only per-model alarm that notifies the topic, so a bad deployment pages once, not once per metric. The drift
    job's own Errors alarm notifies the topic directly (it concerns the stage, not one model).

    The drift job (a DriftJob child: one AWS Lambda function per stage on an EventBridge Scheduler schedule) runs
    mlinfra's drift engine on each captured model and publishes the `mlinfra/Drift` metrics these alarms watch; only
    models with data capture (real-time endpoints) are monitored, since nothing could publish drift for the others.

    Security: the topic is encrypted with the registry key and only CloudWatch in this account may publish, over TLS;
    notification endpoints stay secret; the drift job's role reads only its models' capture and version files, writes
    only their monitoring/ prefixes, uses the key only through S3 and puts metrics only into `mlinfra/Drift`.
    """

    topic_arn: pulumi.Output[str]
    dashboard_name: pulumi.Output[str]
    drift_alarm_names: dict[str, pulumi.Output[str]]
    job: DriftJob | None

    def __init__(
        self,
        name: str,
        args: DriftMonitoringArgs,
        opts: pulumi.ResourceOptions | None = None,
        *,
        package: jobpackage.JobPackage | None = None,
    ) -> None:
        super().__init__(f"{TYPE_PREFIX}:DriftMonitoring", name, None, opts)
        self._prefix = name
        self._spec = args
        settings = args.settings

        self.topic = self._alert_topic()
        self.topic_arn = self.topic.arn

        self.drift_alarm_names = {}
        watched = [e for e in args.endpoints if settings.drift and monitored(e.settings)]
        jobs: list[ModelJob] = [self._model_job(endpoint) for endpoint in watched]

        self.job = None
        if jobs:
            self.job = DriftJob(
                f"{name}-drift-job",
                DriftJobArgs(
                    project=args.project,
                    stage=args.stage,
                    owner=args.owner,
                    region=args.region,
                    account_id=args.account_id,
                    schedule=settings.schedule,
                    memory_mb=settings.job_memory_mb,
                    log_retention_days=settings.log_retention_days,
                    models=jobs,
                    registry_bucket=args.registry_bucket,
                    registry_bucket_arn=args.registry_bucket_arn,
                    registry_key_arn=args.registry_key_arn,
                    topic_arn=self.topic_arn,
                    package=package if package is not None else jobpackage.build(),
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )

        for endpoint in args.endpoints:
            drift_alarms: list[aws.cloudwatch.MetricAlarm] = []
            if any(endpoint is w for w in watched):
                # The silent alarm after the job's first run, whose heartbeat it then finds (no page before it).
                first_run = [self.job.first_run] if self.job is not None else []
                drift_alarms = [self._drift_alarm(endpoint), self._silent_alarm(endpoint, first_run)]
                self.drift_alarm_names[endpoint.model] = drift_alarms[0].name
            self._composite_alarm(endpoint, drift_alarms)

        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=naming.dashboard(args.project, args.stage),
            dashboard_body=self._dashboard_body(),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.dashboard_name = dashboard.dashboard_name

        self.register_outputs(
            {
                "topicArn": self.topic_arn,
                "dashboardName": self.dashboard_name,
                "driftAlarmNames": self.drift_alarm_names,
                "driftJobName": self.job.function_name if self.job is not None else None,
            }
        )

    def _alert_topic(self) -> aws.sns.Topic:
        """Declare the stage's SNS topic, its publish policy and one subscription per configured notification."""
        name, args = self._prefix, self._spec
        child = pulumi.ResourceOptions(parent=self)
        topic = aws.sns.Topic(
            f"{name}-topic",
            name=naming.topic(args.project, args.stage),
            # The registry key's policy already lets cloudwatch.amazonaws.com use it; without that grant CloudWatch
            # could not publish to an encrypted topic and alarms would fail silently.
            kms_master_key_id=args.registry_key_arn,
            tags=tags(args.stage, args.owner),
            opts=child,
        )
        aws.sns.TopicPolicy(
            f"{name}-topic-policy",
            arn=topic.arn,
            policy=policy_document(
                statement(
                    "CloudWatchAlarmsOfThisAccountPublish",
                    ["sns:Publish"],
                    [topic.arn],
                    principal={"Service": "cloudwatch.amazonaws.com"},
                    # Confused-deputy guard: alarms of other accounts cannot use this topic.
                    condition={"StringEquals": {"aws:SourceAccount": args.account_id}},
                ),
                deny_everyone(
                    "DenyInsecureTransport",
                    ["sns:Publish"],
                    [topic.arn],
                    {"Bool": {"aws:SecureTransport": "false"}},
                ),
            ),
            opts=child,
        )
        for index, notification in enumerate(args.settings.notifications):
            # Named by position, not by endpoint: the endpoint may be a secret and must not leak into a logical name.
            aws.sns.TopicSubscription(
                f"{name}-subscription-{index}",
                topic=topic.arn,
                protocol=notification.protocol,
                endpoint=pulumi.Output.secret(notification.endpoint),
                opts=child,
            )
        return topic

    def _model_job(self, endpoint: MonitoredEndpoint) -> ModelJob:
        """What the drift job does for one model: its pinned version's baseline against its endpoint's capture."""
        args, model, pinned = self._spec, endpoint.model, endpoint.settings.pinned
        if pinned is None:
            raise ValueError(f"{model} has no pinned version in {args.stage}; only pinned endpoints are monitored")
        endpoint_name = naming.endpoint(args.project, args.stage, model)
        return ModelJob(
            model=model,
            version=pinned.version,
            capture_prefix=layout.capture_endpoint_prefix(model, endpoint_name, naming.VARIANT_NAME),
            baseline_key=f"{layout.version_prefix(model, pinned.version)}baseline.json",
            monitoring_prefix=layout.monitoring_prefix(model),
            drift_psi=endpoint.settings.alarms.drift_psi,
            drift_js=endpoint.settings.alarms.drift_js,
            drift_ks_pvalue=endpoint.settings.alarms.drift_ks_pvalue,
            drift_min_rows=endpoint.settings.alarms.drift_min_rows,
        )

    def _drift_alarm(self, endpoint: MonitoredEndpoint) -> aws.cloudwatch.MetricAlarm:
        """Declare the model's alarm on the drift job's MaxPSI (the highest PSI over all features of one run)."""
        args, model = self._spec, endpoint.model
        return aws.cloudwatch.MetricAlarm(
            f"{self._prefix}-{model}-drift",
            name=naming.alarm(args.project, args.stage, model, naming.ALARM_DRIFT),
            alarm_description=(
                f"{model} in {args.stage}: input drift (max PSI over features) above "
                f"{endpoint.settings.alarms.drift_psi}; the drift job's report is under "
                f"{layout.monitoring_prefix(model)} in the registry, "
                f"or run `mlinfra drift {model} --stack {args.stage}`"
            ),
            namespace=metrics.NAMESPACE,
            metric_name=metrics.MAX_PSI,
            dimensions={metrics.STAGE_DIMENSION: args.stage, metrics.MODEL_DIMENSION: model},
            statistic="Maximum",
            comparison_operator="GreaterThanThreshold",
            threshold=endpoint.settings.alarms.drift_psi,
            period=DRIFT_PERIOD_SECONDS[args.settings.schedule],
            evaluation_periods=1,
            datapoints_to_alarm=1,
            # A run that found no traffic publishes no MaxPSI (nothing measured is not "no drift"): the alarm keeps its
            # state until a run measures again. A job that stopped running is the drift-silent alarm's concern.
            treat_missing_data="ignore",
            tags=tags(args.stage, args.owner, model),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _silent_alarm(
        self, endpoint: MonitoredEndpoint, after: Sequence[pulumi.Resource] = ()
    ) -> aws.cloudwatch.MetricAlarm:
        """Declare the model's alarm on the drift job's silence: no run reported for two schedule periods."""
        args, model = self._spec, endpoint.model
        period = DRIFT_PERIOD_SECONDS[args.settings.schedule]
        return aws.cloudwatch.MetricAlarm(
            f"{self._prefix}-{model}-drift-silent",
            name=naming.alarm(args.project, args.stage, model, naming.ALARM_DRIFT_SILENT),
            alarm_description=(
                f"{model} in {args.stage}: the drift job has not reported for {SILENT_PERIODS} "
                f"{args.settings.schedule} runs, so drift is not being measured; see the drift job's log group "
                f"{log_group_name(args.project, args.stage)}"
            ),
            namespace=metrics.NAMESPACE,
            metric_name=metrics.ROWS,
            dimensions={metrics.STAGE_DIMENSION: args.stage, metrics.MODEL_DIMENSION: model},
            # Every run puts one Rows datapoint per model, 0 included: the count of datapoints is the heartbeat.
            statistic="SampleCount",
            comparison_operator="LessThanThreshold",
            threshold=1,
            period=period,
            evaluation_periods=SILENT_PERIODS,
            datapoints_to_alarm=SILENT_PERIODS,
            # Missing heartbeats are what this alarm is for: a silent job must not look like a healthy model.
            treat_missing_data="breaching",
            tags=tags(args.stage, args.owner, model),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)),
        )

    def _composite_alarm(self, endpoint: MonitoredEndpoint, drift_alarms: Sequence[aws.cloudwatch.MetricAlarm]) -> None:
        """Declare the endpoint's alarm that ORs its health and drift alarms and notifies the topic."""
        args, model = self._spec, endpoint.model
        # Health alarms arrive as names (they belong to the ModelEndpoint); the Output carries the dependency on them.
        health = pulumi.Output.from_input(endpoint.health_alarm_names)
        # Every ModelEndpoint declares its health alarms, so the rule is never empty (alarm_rule refuses one that is).
        # CloudWatch rejects a rule naming an alarm that does not exist yet: hence the names as Outputs and depends_on.
        rule: pulumi.Output[str] = pulumi.Output.all(health, *[a.name for a in drift_alarms]).apply(
            lambda names: alarm_rule([*names[0], *names[1:]])
        )
        aws.cloudwatch.CompositeAlarm(
            f"{self._prefix}-{model}-health",
            alarm_name=naming.alarm(args.project, args.stage, model, naming.ALARM_HEALTH),
            alarm_description=(
                f"{model} in {args.stage}: an error, latency, drift or drift-job alarm is firing; "
                f"see dashboard {naming.dashboard(args.project, args.stage)}"
            ),
            alarm_rule=rule,
            actions_enabled=True,
            alarm_actions=[self.topic_arn],
            ok_actions=[self.topic_arn],
            tags=tags(args.stage, args.owner, model),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(drift_alarms)),
        )

    def _dashboard_body(self) -> pulumi.Output[str]:
        """Build the dashboard: per endpoint traffic, errors, p99 latency and drift; a note when nothing is pinned."""
        args = self._spec
        widgets: list[dict[str, Any]] = []
        if not args.endpoints:
            widgets.append(
                {
                    "type": "text",
                    "x": 0,
                    "y": 0,
                    "width": _DASHBOARD_WIDTH,
                    "height": 3,
                    "properties": {
                        "markdown": (
                            f"No model is pinned in the {args.stage} stage yet: "
                            f"`mlinfra promote MODEL --to {args.stage}` pins one."
                        )
                    },
                }
            )
        for row, endpoint in enumerate(args.endpoints):
            dims = ["EndpointName", endpoint.endpoint_name, "VariantName", naming.VARIANT_NAME]
            drift = [metrics.STAGE_DIMENSION, args.stage, metrics.MODEL_DIMENSION, endpoint.model]
            panels: list[tuple[str, list[Any], str, dict[str, Any]]] = [
                ("invocations", ["AWS/SageMaker", "Invocations", *dims], "Sum", {}),
                ("5XX errors", ["AWS/SageMaker", "Invocation5XXErrors", *dims], "Sum", {}),
                # ModelLatency is reported in microseconds.
                ("p99 model latency (µs)", ["AWS/SageMaker", "ModelLatency", *dims], "p99", {}),
                (
                    "drift (max PSI)",
                    [metrics.NAMESPACE, metrics.MAX_PSI, *drift],
                    "Maximum",
                    {"horizontal": [{"label": "alarm", "value": endpoint.settings.alarms.drift_psi}]},
                ),
            ]
            for column, (title, metric, stat, extra) in enumerate(panels):
                properties: dict[str, Any] = {
                    "title": f"{endpoint.model}: {title}",
                    "view": "timeSeries",
                    "region": args.region,
                    "stat": stat,
                    "period": endpoint.settings.alarms.period_seconds,
                    "metrics": [metric],
                }
                if extra:
                    properties["annotations"] = extra
                widgets.append(
                    {
                        "type": "metric",
                        "x": column * _WIDGET_WIDTH,
                        "y": row * _WIDGET_HEIGHT,
                        "width": _WIDGET_WIDTH,
                        "height": _WIDGET_HEIGHT,
                        "properties": properties,
                    }
                )
        if self.job is not None:
            widgets += self._job_widgets(len(args.endpoints) * _WIDGET_HEIGHT)
        return pulumi.Output.json_dumps({"widgets": widgets})

    def _job_widgets(self, y: int) -> list[dict[str, Any]]:
        """One row for the drift job: its runs, its errors and how long a run takes (against the 15-minute limit)."""
        args = self._spec
        function = ["FunctionName", naming.drift_job(args.project, args.stage)]
        period = DRIFT_PERIOD_SECONDS[args.settings.schedule]
        panels = [
            ("runs", "Invocations", "Sum"),
            ("failed runs", "Errors", "Sum"),
            ("run duration (ms)", "Duration", "Maximum"),
        ]
        return [
            {
                "type": "metric",
                "x": column * _WIDGET_WIDTH,
                "y": y,
                "width": _WIDGET_WIDTH,
                "height": _WIDGET_HEIGHT,
                "properties": {
                    "title": f"drift job: {title}",
                    "view": "timeSeries",
                    "region": args.region,
                    "stat": stat,
                    "period": period,
                    "metrics": [["AWS/Lambda", metric, *function]],
                },
            }
            for column, (title, metric, stat) in enumerate(panels)
        ]
