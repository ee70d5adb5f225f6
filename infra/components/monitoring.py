"""DriftMonitoring: a stage's alert topic, drift alarms, Model Monitor schedules and dashboard."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from mlinfra_infra import naming
from mlinfra_infra.config import ModelConfig, MonitoringSettings
from mlinfra_infra.layout import CAPTURE_PREFIX, MODELS_PREFIX, MONITORING_PREFIX

from .common import TYPE_PREFIX, policy_document, service_trust_policy, statement, tags

# Registry prefix where Model Monitor writes its reports (statistics, constraint violations) per model.

# mlinfra's own drift metric, published by `mlinfra drift --publish` (see ARCHITECTURE.md, "Drift").
DRIFT_NAMESPACE = "mlinfra/Drift"
DRIFT_METRIC = "MaxPSI"
# Where Model Monitor publishes data-quality metrics (feature_baseline_drift_<feature>, ...) for endpoint input.
MODEL_MONITOR_NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"

SCHEDULE_EXPRESSIONS = {"hourly": "cron(0 * ? * * *)", "daily": "cron(0 0 ? * * *)"}
# Drift is a point measurement published once per run, not a continuous signal: the drift alarm's period matches the
# schedule so that one breaching run keeps the alarm in ALARM until the next run reports.
DRIFT_PERIOD_SECONDS = {"hourly": 3600, "daily": 86_400}
# A monitoring job must finish before the next one starts; SageMaker caps an hourly data-quality job at one hour.
MONITOR_MAX_RUNTIME_SECONDS = 3600
MONITOR_VOLUME_GB = 20
# Container paths are required by the CreateDataQualityJobDefinition API; these are the ones the analyzer expects.
MONITOR_INPUT_PATH = "/opt/ml/processing/input"
MONITOR_OUTPUT_PATH = "/opt/ml/processing/output"

# The AWS-owned ECR accounts of the Model Monitor analyzer image, as listed in the SageMaker Python SDK
# (src/sagemaker/image_uri_config/model-monitor.json). The program does not import the sagemaker SDK, so the regions
# mlinfra deploys to are listed here.
ANALYZER_REPOSITORY = "sagemaker-model-monitor-analyzer"
ANALYZER_ACCOUNTS = {
    "us-east-1": "156813124566",
    "us-east-2": "777275614652",
    "us-west-2": "159807026194",
    "eu-west-1": "468650794304",
    "eu-west-2": "749857270468",
    "eu-central-1": "048819808253",
    "ap-southeast-2": "563025443158",
}

_DASHBOARD_WIDTH = 24
_WIDGET_WIDTH = 6
_WIDGET_HEIGHT = 6


def analyzer_account(region: str) -> str:
    """Return the ECR account of the Model Monitor analyzer image in `region`; ValueError for an unknown region."""
    try:
        return ANALYZER_ACCOUNTS[region]
    except KeyError:
        known = ", ".join(sorted(ANALYZER_ACCOUNTS))
        raise ValueError(
            f"the SageMaker Model Monitor analyzer image is not known for region {region!r} (known: {known}); "
            "add its ECR account (see the SageMaker Python SDK's image_uri_config/model-monitor.json) to "
            "ANALYZER_ACCOUNTS in infra/components/monitoring.py, or set mlinfra:monitoring.drift to false"
        ) from None


def analyzer_image(region: str) -> str:
    """Return the Model Monitor analyzer image URI for `region` (untagged, as the SageMaker SDK resolves it)."""
    return f"{analyzer_account(region)}.dkr.ecr.{region}.amazonaws.com/{ANALYZER_REPOSITORY}"


def schedule_name(endpoint_name: str) -> str:
    """Return the fixed monitoring schedule name of an endpoint; ValueError beyond SageMaker's 63 characters."""
    name = f"{endpoint_name}-dq"
    if len(name) > naming.SAGEMAKER_NAME_MAX:
        raise ValueError(
            f"monitoring schedule name {name!r} is {len(name)} characters; SageMaker allows "
            f"{naming.SAGEMAKER_NAME_MAX} (shorten the project, stage or model name)"
        )
    return name


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
    """The stage's alert topic, per-endpoint drift alarm, Model Monitor schedule and composite alarm, and dashboard.

    Health alarms (5XX, p99 latency) belong to each ModelEndpoint, whose blue/green auto-rollback watches them; they
    have no actions. Here one composite alarm per endpoint ORs them with the drift alarm and is the only alarm that
    notifies the topic, so a bad deployment pages once, not once per metric.

    Security: the topic is encrypted with the registry key and only CloudWatch in this account may publish, over TLS;
    notification endpoints stay secret; each Model Monitor job runs network-isolated under a role limited to its own
    model's prefixes, with KMS on its output and volume.
    """

    topic_arn: pulumi.Output[str]
    dashboard_name: pulumi.Output[str]
    drift_alarm_names: dict[str, pulumi.Output[str]]
    schedule_names: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: DriftMonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:DriftMonitoring", name, None, opts)
        self._prefix = name
        self._spec = args
        settings = args.settings

        self.topic = self._alert_topic()
        self.topic_arn = self.topic.arn

        self.drift_alarm_names = {}
        self.schedule_names = {}
        for endpoint in args.endpoints:
            drift_alarm: aws.cloudwatch.MetricAlarm | None = None
            if settings.drift:
                drift_alarm = self._drift_alarm(endpoint)
                self.drift_alarm_names[endpoint.model] = drift_alarm.name
                # Model Monitor analyses captured requests, so it needs data capture, which only real-time endpoints
                # have (serverless endpoints support no capture). The mlinfra/Drift alarm above covers those too.
                if endpoint.settings.mode == "realtime" and endpoint.settings.capture.enabled:
                    self.schedule_names[endpoint.model] = self._model_monitor(endpoint)
            self._composite_alarm(endpoint, drift_alarm)

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
                "scheduleNames": self.schedule_names,
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
                statement(
                    "DenyInsecureTransport",
                    ["sns:Publish"],
                    [topic.arn],
                    effect="Deny",
                    principal={"AWS": "*"},
                    condition={"Bool": {"aws:SecureTransport": "false"}},
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

    def _drift_alarm(self, endpoint: MonitoredEndpoint) -> aws.cloudwatch.MetricAlarm:
        """Declare the endpoint's alarm on mlinfra's own drift metric (the highest PSI over all features)."""
        args, model = self._spec, endpoint.model
        # Model Monitor also publishes feature_baseline_drift_<feature> metrics, but the features are only known once
        # a baseline exists, not at deploy time; `mlinfra drift` reduces them to one MaxPSI per model, watched here.
        return aws.cloudwatch.MetricAlarm(
            f"{self._prefix}-{model}-drift",
            name=naming.alarm(args.project, args.stage, model, naming.ALARM_DRIFT),
            alarm_description=(
                f"{model} in {args.stage}: input drift (max PSI over features) above "
                f"{endpoint.settings.alarms.drift_psi}; run `mlinfra drift {model} --stack {args.stage}` for details"
            ),
            namespace=DRIFT_NAMESPACE,
            metric_name=DRIFT_METRIC,
            dimensions={"Stage": args.stage, "Model": model},
            statistic="Maximum",
            comparison_operator="GreaterThanThreshold",
            threshold=endpoint.settings.alarms.drift_psi,
            period=DRIFT_PERIOD_SECONDS[args.settings.schedule],
            evaluation_periods=1,
            datapoints_to_alarm=1,
            # No run in a period is no evidence of drift; the stage must not page between runs.
            treat_missing_data="notBreaching",
            tags=tags(args.stage, args.owner, model),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _monitor_role(
        self, endpoint: MonitoredEndpoint, analyzer_repository_arn: str
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        """Declare a least-privilege execution role for one model's Model Monitor job; return it and its policy."""
        name, args, model = self._prefix, self._spec, endpoint.model
        bucket_arn = pulumi.Output.from_input(args.registry_bucket_arn)
        account = pulumi.Output.from_input(args.account_id)
        role = aws.iam.Role(
            f"{name}-{model}-role",
            description=f"SageMaker Model Monitor data-quality job of {model} in {args.stage}",
            # Only SageMaker acting for this account's resources in this region may assume it (confused deputy).
            assume_role_policy=service_trust_policy(
                "sagemaker.amazonaws.com",
                account,
                pulumi.Output.concat(f"arn:aws:sagemaker:{args.region}:", account, ":*"),
            ),
            tags=tags(args.stage, args.owner, model),
            opts=pulumi.ResourceOptions(parent=self),
        )
        document = policy_document(
            statement(
                "ReadBaselineAndCapture",
                ["s3:GetObject"],
                [
                    pulumi.Output.concat(bucket_arn, f"/{MODELS_PREFIX}{model}/*"),
                    pulumi.Output.concat(bucket_arn, f"/{CAPTURE_PREFIX}{model}/*"),
                ],
            ),
            statement(
                "ListOwnCapture",
                ["s3:ListBucket"],
                [bucket_arn],
                condition={"StringLike": {"s3:prefix": [f"{CAPTURE_PREFIX}{model}/*"]}},
            ),
            statement(
                "WriteReports",
                ["s3:PutObject"],
                [pulumi.Output.concat(bucket_arn, f"/{MONITORING_PREFIX}{model}/*")],
            ),
            statement(
                "UseRegistryKey",
                ["kms:Decrypt", "kms:GenerateDataKey"],
                [args.registry_key_arn],
            ),
            # The job's ML storage volume is encrypted with the registry key, which SageMaker attaches through a grant.
            statement(
                "GrantRegistryKeyToJobVolume",
                ["kms:CreateGrant", "kms:DescribeKey"],
                [args.registry_key_arn],
                condition={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
            statement(
                "WriteJobLogs",
                ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                [
                    pulumi.Output.concat(
                        "arn:aws:logs:", args.region, ":", account, ":log-group:/aws/sagemaker/ProcessingJobs*"
                    )
                ],
            ),
            # PutMetricData has no resource-level permissions; the namespace condition is the only scope there is.
            statement(
                "PublishDataQualityMetrics",
                ["cloudwatch:PutMetricData"],
                ["*"],
                condition={"StringEquals": {"cloudwatch:namespace": MODEL_MONITOR_NAMESPACE}},
            ),
            # GetAuthorizationToken has no resource-level permissions either; the pull itself is limited to one repo.
            statement("AuthenticateToEcr", ["ecr:GetAuthorizationToken"], ["*"]),
            statement(
                "PullAnalyzerImage",
                ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                [analyzer_repository_arn],
            ),
        )
        role_policy = aws.iam.RolePolicy(
            f"{name}-{model}-role-policy",
            role=role.id,
            policy=document,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return role, role_policy

    def _model_monitor(self, endpoint: MonitoredEndpoint) -> pulumi.Output[str]:
        """Declare a Model Monitor data-quality job definition and its schedule; return the schedule name."""
        name, args, model, settings = self._prefix, self._spec, endpoint.model, endpoint.settings
        pinned = settings.pinned
        if pinned is None:
            raise ValueError(f"{model} has no pinned version in {args.stage}; only pinned endpoints are monitored")
        account = analyzer_account(args.region)
        repository_arn = f"arn:aws:ecr:{args.region}:{account}:repository/{ANALYZER_REPOSITORY}"
        role, role_policy = self._monitor_role(endpoint, repository_arn)
        bucket = pulumi.Output.from_input(args.registry_bucket)
        # The baseline is the one stored with the pinned version, so a promotion re-baselines the monitor with it.
        baseline = pulumi.Output.concat("s3://", bucket, f"/{MODELS_PREFIX}{model}/versions/{pinned.version}/")
        model_tags = tags(args.stage, args.owner, model)
        # Every field of a job definition forces replacement, so it is auto-named: a fixed name would make the
        # replacement collide with the definition it replaces. The schedule points at it by name and updates in place.
        # Logical name "<endpoint>-dq": Pulumi adds 8 random characters, which naming.check_model_names reserves.
        job = aws.sagemaker.DataQualityJobDefinition(
            naming.endpoint(args.project, args.stage, model) + "-dq",
            role_arn=role.arn,
            data_quality_app_specification={
                "image_uri": analyzer_image(args.region),
                # Publishes feature_baseline_drift_* metrics next to the violations report.
                "environment": {"publish_cloudwatch_metrics": "Enabled"},
            },
            data_quality_baseline_config={
                "constraints_resource": {"s3_uri": pulumi.Output.concat(baseline, "constraints.json")},
                "statistics_resource": {"s3_uri": pulumi.Output.concat(baseline, "statistics.json")},
            },
            data_quality_job_input={
                "endpoint_input": {"endpoint_name": endpoint.endpoint_name, "local_path": MONITOR_INPUT_PATH},
            },
            data_quality_job_output_config={
                "kms_key_id": args.registry_key_arn,
                "monitoring_outputs": {
                    "s3_output": {
                        "s3_uri": pulumi.Output.concat("s3://", bucket, f"/{MONITORING_PREFIX}{model}"),
                        "local_path": MONITOR_OUTPUT_PATH,
                        "s3_upload_mode": "EndOfJob",
                    }
                },
            },
            job_resources={
                "cluster_config": {
                    "instance_count": 1,
                    "instance_type": args.settings.instance_type,
                    "volume_size_in_gb": MONITOR_VOLUME_GB,
                    "volume_kms_key_id": args.registry_key_arn,
                }
            },
            network_config={"enable_network_isolation": True, "enable_inter_container_traffic_encryption": True},
            stopping_condition={"max_runtime_in_seconds": MONITOR_MAX_RUNTIME_SECONDS},
            tags=model_tags,
            # The role's permissions must be in place before SageMaker validates and first runs the job.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
        )
        schedule = aws.sagemaker.MonitoringSchedule(
            f"{name}-{model}-schedule",
            name=pulumi.Output.from_input(endpoint.endpoint_name).apply(schedule_name),
            monitoring_schedule_config={
                "monitoring_type": "DataQuality",
                "monitoring_job_definition_name": job.name,
                "schedule_config": {"schedule_expression": SCHEDULE_EXPRESSIONS[args.settings.schedule]},
            },
            tags=model_tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return schedule.name

    def _composite_alarm(self, endpoint: MonitoredEndpoint, drift_alarm: aws.cloudwatch.MetricAlarm | None) -> None:
        """Declare the endpoint's alarm that ORs its health and drift alarms and notifies the topic."""
        args, model = self._spec, endpoint.model
        # Health alarms arrive as names (they belong to the ModelEndpoint); the Output carries the dependency on them.
        health = pulumi.Output.from_input(endpoint.health_alarm_names)

        # Every ModelEndpoint declares its health alarms, so the rule is never empty (alarm_rule refuses one that is).
        rule: pulumi.Output[str] = health.apply(alarm_rule)
        depends_on: list[pulumi.Resource] = []
        if drift_alarm is not None:
            # CloudWatch rejects a rule naming an alarm that does not exist yet.
            rule = pulumi.Output.all(health, drift_alarm.name).apply(lambda both: alarm_rule([*both[0], both[1]]))
            depends_on = [drift_alarm]
        aws.cloudwatch.CompositeAlarm(
            f"{self._prefix}-{model}-health",
            alarm_name=naming.alarm(args.project, args.stage, model, naming.ALARM_HEALTH),
            alarm_description=(
                f"{model} in {args.stage}: an error, latency or drift alarm is firing; "
                f"see dashboard {naming.dashboard(args.project, args.stage)}"
            ),
            alarm_rule=rule,
            actions_enabled=True,
            alarm_actions=[self.topic_arn],
            ok_actions=[self.topic_arn],
            tags=tags(args.stage, args.owner, model),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
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
            drift = ["Stage", args.stage, "Model", endpoint.model]
            panels: list[tuple[str, list[Any], str, dict[str, Any]]] = [
                ("invocations", ["AWS/SageMaker", "Invocations", *dims], "Sum", {}),
                ("5XX errors", ["AWS/SageMaker", "Invocation5XXErrors", *dims], "Sum", {}),
                # ModelLatency is reported in microseconds.
                ("p99 model latency (µs)", ["AWS/SageMaker", "ModelLatency", *dims], "p99", {}),
                (
                    "drift (max PSI)",
                    [DRIFT_NAMESPACE, DRIFT_METRIC, *drift],
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
        return pulumi.Output.json_dumps({"widgets": widgets})
