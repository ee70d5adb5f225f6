"""DriftJob: a stage's scheduled drift job, an AWS Lambda function running mlinfra's own drift engine on the capture.

Per monitored stage: the code package (built by `mlinfra_infra.jobpackage`, stored content-addressed in the
registry), a log group with retention, a least-privilege execution role, the function, an EventBridge Scheduler
schedule with its own invoke-only role, and an alarm on the function's Errors that notifies the stage's topic.
This replaces SageMaker Model Monitor, which AWS closed to new customers on 2026-07-30.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mlinfra_drift import metrics
from mlinfra_drift.jobspec import JobSpec, ModelJob
from mlinfra_infra import jobpackage, naming
from mlinfra_infra.layout import CODE_PREFIX, MODELS_PREFIX

from .common import TYPE_PREFIX, policy_document, statement, tags

# EventBridge Scheduler cron: minutes hours day-of-month month day-of-week year. Five minutes past the hour, so the
# capture of the hour that just ended has settled (JobSpec.settle_seconds).
SCHEDULE_EXPRESSIONS = {"hourly": "cron(5 * * * ? *)", "daily": "cron(5 0 * * ? *)"}
PERIOD_SECONDS = {"hourly": 3600, "daily": 86_400}
# Lambda's ceiling for one invocation; a run that needs longer resumes from its checkpoint in the next one.
TIMEOUT_SECONDS = 900
# Scheduler retries only failures to invoke (throttling, a missing role); the job's own failures are not retried
# (the next run resumes from the checkpoint) and raise the Errors alarm instead.
SCHEDULER_RETRIES = 3
SCHEDULER_EVENT_AGE_SECONDS = 3600


@dataclass
class DriftJobArgs:
    """The stage, its registry and the models the job watches."""

    project: str
    stage: str
    owner: str
    region: str
    account_id: pulumi.Input[str]
    schedule: str
    memory_mb: int
    log_retention_days: int
    models: Sequence[ModelJob]
    registry_bucket: pulumi.Input[str]
    registry_bucket_arn: pulumi.Input[str]
    registry_key_arn: pulumi.Input[str]
    topic_arn: pulumi.Input[str]
    package: jobpackage.JobPackage


def job_spec(args: DriftJobArgs, bucket: str) -> str:
    """The schedule's input: the JobSpec JSON the handler reads from its event."""
    period = PERIOD_SECONDS[args.schedule]
    spec = JobSpec(
        stage=args.stage,
        bucket=bucket,
        period_seconds=period,
        # A first run scores one period; a run never reads more than a day, or two periods of a daily job (so a late
        # daily run still reaches back to its previous watermark).
        first_lookback_seconds=period,
        max_lookback_seconds=max(86_400, 2 * period),
        models=list(args.models),
    )
    return spec.model_dump_json(by_alias=True)


class DriftJob(pulumi.ComponentResource):
    """The stage's drift job: code, logs, roles, function, schedule and an alarm on its failures."""

    function_name: pulumi.Output[str]
    errors_alarm_name: pulumi.Output[str]
    first_run: aws.lambda_.Invocation

    def __init__(self, name: str, args: DriftJobArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:DriftJob", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stage_tags = tags(args.stage, args.owner)
        function_name = naming.drift_job(args.project, args.stage)
        account = pulumi.Output.from_input(args.account_id)
        bucket_arn = pulumi.Output.from_input(args.registry_bucket_arn)

        # At the edge of Lambda's 50 MB direct-upload limit, so the package goes through S3: content-addressed, so a new
        # package is a new object and the function updates; SSE-KMS with the registry key (the bucket policy refuses
        # anything else) and a SHA-256 checksum (Object Lock buckets refuse uploads without one).
        code = aws.s3.BucketObjectv2(
            f"{name}-code",
            bucket=args.registry_bucket,
            key=f"{CODE_PREFIX}{args.package.key_name}",
            source=pulumi.FileAsset(str(args.package.path)),
            content_type="application/zip",
            server_side_encryption="aws:kms",
            kms_key_id=args.registry_key_arn,
            checksum_algorithm="SHA256",
            tags=stage_tags,
            opts=child,
        )

        # Declared before the function, with retention; the function logs here (logging_config), not to a group
        # Lambda would create itself and keep forever.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=log_group_name(args.project, args.stage),
            retention_in_days=args.log_retention_days,
            # The registry key's policy lets CloudWatch Logs use it for the stage's /mlinfra/<project>-<stage>/ groups.
            kms_key_id=args.registry_key_arn,
            tags=stage_tags,
            opts=child,
        )

        role = aws.iam.Role(
            f"{name}-role",
            description=f"mlinfra drift job of {args.stage}: reads capture and baselines, writes monitoring/",
            assume_role_policy=_trust("lambda.amazonaws.com"),
            tags=stage_tags,
            opts=child,
        )
        role_policy = aws.iam.RolePolicy(
            f"{name}-role-policy",
            role=role.id,
            policy=_job_policy(args, bucket_arn, account, function_name),
            opts=child,
        )

        function = aws.lambda_.Function(
            f"{name}-function",
            name=function_name,
            description=f"mlinfra drift job of {args.stage}: scores captured requests against each model's baseline",
            runtime=args.package.target.runtime,
            architectures=[args.package.target.arch],
            handler=jobpackage.HANDLER,
            s3_bucket=code.bucket,
            s3_key=code.key,
            role=role.arn,
            memory_size=args.memory_mb,
            timeout=TIMEOUT_SECONDS,
            logging_config={
                "log_format": "JSON",
                "log_group": log_group.name,
                "application_log_level": "INFO",
                "system_log_level": "WARN",
            },
            tags=stage_tags,
            # The role's permissions and the log group must exist before the first run.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy, log_group]),
        )
        aws.lambda_.FunctionEventInvokeConfig(
            f"{name}-invoke-config",
            function_name=function.name,
            maximum_retry_attempts=0,
            maximum_event_age_in_seconds=min(PERIOD_SECONDS[args.schedule], 21_600),
            opts=child,
        )

        scheduler_role = aws.iam.Role(
            f"{name}-scheduler-role",
            description=f"EventBridge Scheduler invokes the mlinfra drift job of {args.stage}",
            # Confused-deputy guard: only schedules of this account may use the role.
            assume_role_policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "scheduler.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                        }
                    ],
                }
            ),
            tags=stage_tags,
            opts=child,
        )
        # Scheduler's failed invocations (after its retries) land here instead of vanishing; an alarm notifies.
        # Encrypted by SQS (SSE-SQS): Scheduler sends with its role, which then needs no key grant.
        dead_letters = aws.sqs.Queue(
            f"{name}-dead-letters",
            # Named under the stage's prefix: the deploy role may create SQS queues by that name only.
            name=f"{function_name}-dead-letters",
            sqs_managed_sse_enabled=True,
            message_retention_seconds=14 * 86_400,
            tags=stage_tags,
            opts=child,
        )
        scheduler_policy = aws.iam.RolePolicy(
            f"{name}-scheduler-role-policy",
            role=scheduler_role.id,
            policy=policy_document(
                statement(
                    "InvokeTheDriftJob",
                    ["lambda:InvokeFunction"],
                    [function.arn, pulumi.Output.concat(function.arn, ":*")],
                ),
                statement("DeadLetterFailedInvocations", ["sqs:SendMessage"], [dead_letters.arn]),
            ),
            opts=child,
        )
        aws.scheduler.Schedule(
            f"{name}-schedule",
            name=function_name,
            description=f"Runs the mlinfra drift job of {args.stage} {args.schedule}",
            schedule_expression=SCHEDULE_EXPRESSIONS[args.schedule],
            schedule_expression_timezone="UTC",
            flexible_time_window={"mode": "OFF"},
            state="ENABLED",
            target={
                "arn": function.arn,
                "role_arn": scheduler_role.arn,
                "input": pulumi.Output.from_input(args.registry_bucket).apply(lambda b: job_spec(args, b)),
                "retry_policy": {
                    "maximum_retry_attempts": SCHEDULER_RETRIES,
                    "maximum_event_age_in_seconds": SCHEDULER_EVENT_AGE_SECONDS,
                },
                "dead_letter_config": {"arn": dead_letters.arn},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[scheduler_policy]),
        )
        aws.cloudwatch.MetricAlarm(
            f"{name}-dead-letters-alarm",
            name=f"{function_name}-dead-letters",
            alarm_description=(
                f"EventBridge Scheduler could not invoke the drift job of {args.stage} (after {SCHEDULER_RETRIES} "
                "retries): the failed events are in this queue; drift was not measured for that run."
            ),
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": dead_letters.name},
            statistic="Maximum",
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
            period=300,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            treat_missing_data="notBreaching",
            actions_enabled=True,
            alarm_actions=[args.topic_arn],
            ok_actions=[args.topic_arn],
            tags=stage_tags,
            opts=child,
        )
        # The first run at deployment (and again whenever the models watched change): it publishes each model's
        # heartbeat (ScoredRows, 0 when nothing is captured yet) before the drift-silent alarms exist, so they do
        # not page for a model the scheduled job has not reached yet. A failing job fails the apply, loudly.
        self.first_run = aws.lambda_.Invocation(
            f"{name}-first-run",
            function_name=function.name,
            input=pulumi.Output.from_input(args.registry_bucket).apply(lambda b: job_spec(args, b)),
            triggers={"models": ",".join(sorted(f"{m.model}@{m.version}" for m in args.models))},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
        )

        period = PERIOD_SECONDS[args.schedule]
        errors = aws.cloudwatch.MetricAlarm(
            f"{name}-errors",
            name=naming.drift_job_errors_alarm(args.project, args.stage),
            alarm_description=(
                f"The drift job of {args.stage} failed (an error or a timeout); its log group "
                f"{log_group_name(args.project, args.stage)} says why. Until it runs again drift is not being measured."
            ),
            namespace="AWS/Lambda",
            metric_name="Errors",
            dimensions={"FunctionName": function_name},
            statistic="Sum",
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
            period=period,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            # No invocation, no Errors datapoint: silence is the drift-silent alarms' job, not this one's.
            treat_missing_data="notBreaching",
            actions_enabled=True,
            alarm_actions=[args.topic_arn],
            ok_actions=[args.topic_arn],
            tags=stage_tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[function]),
        )
        self.function_name = function.name
        self.errors_alarm_name = errors.name
        self.register_outputs({"functionName": self.function_name, "errorsAlarmName": self.errors_alarm_name})


def log_group_name(project: str, stage: str) -> str:
    """The job's log group, under the stage's `/mlinfra/<project>-<stage>/` rather than Lambda's `/aws/lambda/`.

    That is where the stage's log groups live, and the prefix the registry key's policy lets CloudWatch Logs use.
    """
    return f"/mlinfra/{project}-{stage}/drift-job"


def _trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def listing_statement(models: Sequence[ModelJob], bucket_arn: pulumi.Input[str]) -> dict[str, object]:
    """s3:ListBucket where the job lists (capture) and where it reads keys that may be missing.

    Its checkpoint before the first run and a baseline may be missing: S3 answers a GetObject of a missing key with
    404 only to a caller allowed to list it, and with 403 AccessDenied otherwise, which the job cannot tell from a
    real denial. Found by the access contract (infra/policy/access-contract.json), checked by
    tests/infra/test_access_contract.py.
    """
    prefixes = sorted(
        {
            *(f"{m.capture_prefix}*" for m in models),
            *(f"{m.monitoring_prefix}*" for m in models),
            *(f"{m.baseline_key.rsplit('/', 2)[0]}/*" for m in models),
        }
    )
    return statement("ListCaptureAndReadsThatMayMiss", ["s3:ListBucket"], [bucket_arn],
                     condition={"StringLike": {"s3:prefix": prefixes}})  # fmt: skip


def _job_policy(
    args: DriftJobArgs, bucket_arn: pulumi.Output[str], account: pulumi.Output[str], function_name: str
) -> pulumi.Output[str]:
    """The job's permissions: its models' capture and version files, its monitoring/ prefixes, the key, metrics."""
    models = sorted(args.models, key=lambda m: m.model)
    return policy_document(
        statement(
            "ReadCaptureAndBaselines",
            ["s3:GetObject"],
            [pulumi.Output.concat(bucket_arn, "/", m.capture_prefix, "*") for m in models]
            + [pulumi.Output.concat(bucket_arn, f"/{MODELS_PREFIX}{m.model}/versions/*") for m in models],
        ),
        listing_statement(models, bucket_arn),
        statement(
            "ReadAndWriteCheckpointsAndReports",
            ["s3:GetObject", "s3:PutObject"],
            [pulumi.Output.concat(bucket_arn, "/", m.monitoring_prefix, "*") for m in models],
        ),
        # Capture and reports are SSE-KMS with the registry key; the key is usable only through S3.
        statement(
            "UseRegistryKeyThroughS3",
            ["kms:Decrypt", "kms:GenerateDataKey"],
            [args.registry_key_arn],
            condition={"StringEquals": {"kms:ViaService": f"s3.{args.region}.amazonaws.com"}},
        ),
        # PutMetricData has no resource-level permissions; the namespace condition is the only scope there is.
        statement(
            "PublishDriftMetrics",
            ["cloudwatch:PutMetricData"],
            ["*"],
            condition={"StringEquals": {"cloudwatch:namespace": metrics.NAMESPACE}},
        ),
        statement(
            "WriteOwnLogs",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [
                pulumi.Output.concat(
                    "arn:aws:logs:",
                    args.region,
                    ":",
                    account,
                    ":log-group:",
                    log_group_name(args.project, args.stage),
                    ":*",
                )
            ],
        ),
    )
