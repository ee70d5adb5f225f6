"""DriftJob under the mock runtime: the Lambda function, its schedule, roles, logs, code package and Errors alarm."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from parliament import analyze_policy_string

from mlinfra.stacks.render import MOCK_ACCOUNT, RenderedResource, RenderedStack
from mlinfra_drift import metrics
from mlinfra_drift.jobspec import JobSpec
from mlinfra_infra import jobpackage, naming
from tests.builders import PROJECT, REGION, pin
from tests.conftest import policy

Render = Callable[..., RenderedStack]

STAGE = "staging"
JOB = "monitoring-drift-job"
FUNCTION = "aws:lambda/function:Function"
SCHEDULE = "aws:scheduler/schedule:Schedule"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
CODE = "aws:s3/bucketObjectv2:BucketObjectv2"
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
INVOKE_CONFIG = "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
CAPTURED: dict[str, Any] = {"capture": {"enabled": True}}
FUNCTION_NAME = f"{PROJECT}-{STAGE}-drift-job"


def staging(render_stack: Render, monitoring: dict[str, Any] | None = None, **models: dict[str, Any]) -> RenderedStack:
    chosen = models or {"churn": {"pinned": pin(stage=STAGE), **CAPTURED}}
    return render_stack(
        {
            "mlinfra:monitoring": {"enabled": True, "drift": True, **(monitoring or {})},
            "mlinfra:models": chosen,
        },
        stage=STAGE,
    )


def job_child(stack: RenderedStack, type_token: str, suffix: str | None = None) -> RenderedResource:
    found = [r for r in stack.children(JOB) if r.type == type_token and (suffix is None or r.name.endswith(suffix))]
    assert len(found) == 1, f"expected one {type_token} under {JOB}, found {[r.name for r in found]}"
    return found[0]


def statements(resource: RenderedResource) -> list[dict[str, Any]]:
    return list(policy(resource.inputs)["Statement"])


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------------------------------------------------------
# The function and its schedule


def test_function_runs_the_drift_package_on_python_with_bounded_time(render_stack: Render) -> None:
    stack = staging(render_stack, {"jobMemoryMb": 2048})
    function = job_child(stack, FUNCTION)
    inputs = function.inputs
    assert inputs["name"] == FUNCTION_NAME == naming.drift_job(PROJECT, STAGE)
    assert inputs["runtime"] == "python3.13"
    assert inputs["architectures"] == ["x86_64"]
    assert inputs["handler"] == "mlinfra_drift.job.handler"
    assert inputs["memorySize"] == 2048
    assert inputs["timeout"] == 900, "Lambda's ceiling for one invocation"
    # Code through S3 (the package is at the edge of the 50 MB direct-upload limit), from the registry's code/.
    code = job_child(stack, CODE)
    assert inputs["s3Bucket"] == code.inputs["bucket"] == stack.outputs["registryBucket"]
    assert inputs["s3Key"] == code.inputs["key"]
    assert re.fullmatch(r"code/drift-job-[0-9a-f]{64}\.zip", code.inputs["key"])
    role = job_child(stack, ROLE, "-drift-job-role")
    assert re.fullmatch(rf"arn:aws:iam::{MOCK_ACCOUNT}:role/{re.escape(role.name)}-[0-9a-f]{{7}}", inputs["role"])
    logs = job_child(stack, LOG_GROUP)
    assert inputs["loggingConfig"]["logGroup"] == logs.inputs["name"] == f"/mlinfra/{PROJECT}-{STAGE}/drift-job"
    assert logs.inputs["retentionInDays"] == 30
    assert logs.inputs["kmsKeyId"] == stack.outputs["registryKeyArn"]
    # A failed run is not retried: the next one resumes from the checkpoint, and the Errors alarm says it failed.
    invoke = job_child(stack, INVOKE_CONFIG)
    assert invoke.inputs["maximumRetryAttempts"] == 0
    assert invoke.inputs["functionName"] == FUNCTION_NAME


def test_code_package_is_encrypted_with_the_registry_key_and_checksummed(render_stack: Render) -> None:
    stack = staging(render_stack)
    code = job_child(stack, CODE).inputs
    assert code["serverSideEncryption"] == "aws:kms"
    assert code["kmsKeyId"] == stack.outputs["registryKeyArn"]
    # Object Lock buckets (prod) refuse a PutObject without a checksum.
    assert code["checksumAlgorithm"] == "SHA256"
    package = jobpackage.build()
    assert code["key"] == f"code/{package.key_name}"
    assert code["source"] == {"file": package.path.name}


@pytest.mark.parametrize(
    ("schedule", "expression", "period"),
    [("hourly", "cron(5 * * * ? *)", 3600), ("daily", "cron(5 0 * * ? *)", 86_400)],
)
def test_schedule_invokes_the_function_with_the_job_spec(
    render_stack: Render, schedule: str, expression: str, period: int
) -> None:
    stack = staging(render_stack, {"schedule": schedule})
    scheduled = job_child(stack, SCHEDULE).inputs
    function = job_child(stack, FUNCTION)
    assert scheduled["name"] == FUNCTION_NAME
    assert scheduled["scheduleExpression"] == expression
    assert scheduled["scheduleExpressionTimezone"] == "UTC"
    assert scheduled["flexibleTimeWindow"] == {"mode": "OFF"}
    assert scheduled["state"] == "ENABLED"
    target = scheduled["target"]
    assert target["arn"] == f"arn:aws:lambda:{REGION}:{MOCK_ACCOUNT}:function:{function.inputs['name']}"
    scheduler_role = job_child(stack, ROLE, "-scheduler-role")
    assert target["roleArn"].startswith(f"arn:aws:iam::{MOCK_ACCOUNT}:role/{scheduler_role.name}-")
    # botocore's limits for the retry policy.
    assert 0 <= target["retryPolicy"]["maximumRetryAttempts"] <= 185
    assert 60 <= target["retryPolicy"]["maximumEventAgeInSeconds"] <= 86_400

    spec = JobSpec.model_validate_json(target["input"])
    assert spec.stage == STAGE
    assert spec.bucket == stack.outputs["registryBucket"]
    assert spec.period_seconds == period
    assert spec.first_lookback_seconds == period
    # Longer than the gap between two runs, so a late run still starts at the previous one's watermark.
    assert spec.max_lookback_seconds >= 2 * period
    (model,) = spec.models
    assert model.model == "churn"
    assert model.version == 3
    endpoint = naming.endpoint(PROJECT, STAGE, "churn")
    assert model.capture_prefix == f"capture/churn/{endpoint}/{naming.VARIANT_NAME}/"
    assert model.baseline_key == "models/churn/versions/3/baseline.json"
    assert model.monitoring_prefix == "monitoring/churn/"
    assert model.drift_psi == 0.2


def test_scheduler_role_may_only_invoke_this_function_and_only_for_this_account(render_stack: Render) -> None:
    stack = staging(render_stack)
    role = job_child(stack, ROLE, "-scheduler-role")
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": MOCK_ACCOUNT}}
    allow, dead_letters = statements(job_child(stack, ROLE_POLICY, "-scheduler-role-policy"))
    arn = f"arn:aws:lambda:{REGION}:{MOCK_ACCOUNT}:function:{FUNCTION_NAME}"
    assert allow["Action"] == ["lambda:InvokeFunction"]
    assert allow["Resource"] == [arn, f"{arn}:*"]
    # ... and send its failed invocations to the job's own dead-letter queue.
    queue = job_child(stack, "aws:sqs/queue:Queue")
    assert dead_letters["Action"] == ["sqs:SendMessage"]
    # Named under the stage's prefix (the bootstrap stack's deploy role creates queues by that name only).
    assert queue.inputs["name"] == "mlinfra-staging-drift-job-dead-letters"
    assert dead_letters["Resource"] == [f"arn:aws:sqs:{REGION}:{MOCK_ACCOUNT}:{queue.inputs['name']}"]


# ---------------------------------------------------------------------------------------------------------------
# Least privilege of the job's role


def test_job_role_reads_only_its_models_capture_and_versions_and_writes_only_monitoring(render_stack: Render) -> None:
    fraud = {"pinned": pin("fraud", version=5, stage=STAGE), **CAPTURED}
    stack = staging(render_stack, churn={"pinned": pin(stage=STAGE), **CAPTURED}, fraud=fraud, serverless={})
    bucket_arn = f"arn:aws:s3:::{stack.outputs['registryBucket']}"
    role = job_child(stack, ROLE, "-drift-job-role")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "lambda.amazonaws.com"
    }
    found = statements(job_child(stack, ROLE_POLICY, "-drift-job-role-policy"))
    by_action: dict[str, set[str]] = {}
    for stmt in found:
        assert stmt["Effect"] == "Allow"
        for action in as_list(stmt["Action"]):
            assert "*" not in action, f"wildcard action in {stmt}"
            by_action.setdefault(action, set()).update(as_list(stmt["Resource"]))
    endpoints = {m: naming.endpoint(PROJECT, STAGE, m) for m in ("churn", "fraud")}
    assert by_action["s3:GetObject"] == {
        *(f"{bucket_arn}/capture/{m}/{e}/primary/*" for m, e in endpoints.items()),
        *(f"{bucket_arn}/models/{m}/versions/*" for m in endpoints),
        *(f"{bucket_arn}/monitoring/{m}/*" for m in endpoints),
    }
    assert by_action["s3:PutObject"] == {f"{bucket_arn}/monitoring/{m}/*" for m in endpoints}
    assert by_action["s3:ListBucket"] == {bucket_arn}
    (listing,) = [s for s in found if "s3:ListBucket" in as_list(s["Action"])]
    # Listing where it lists (capture) and where it reads keys that may be missing (its checkpoint before the first
    # run, a baseline): S3 answers 403, not 404, for a missing key to a caller that may not list it.
    assert listing["Condition"] == {
        "StringLike": {
            "s3:prefix": sorted(
                [f"capture/{m}/{e}/primary/*" for m, e in endpoints.items()]
                + [f"models/{m}/versions/*" for m in endpoints]
                + [f"monitoring/{m}/*" for m in endpoints]
            )
        }
    }
    assert set(by_action) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "cloudwatch:PutMetricData",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }, "nothing else: no sagemaker, no delete, no iam"

    (kms,) = [s for s in found if "kms:Decrypt" in as_list(s["Action"])]
    assert kms["Resource"] == [stack.outputs["registryKeyArn"]]
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}
    (put_metrics,) = [s for s in found if "cloudwatch:PutMetricData" in as_list(s["Action"])]
    assert put_metrics["Resource"] == ["*"], "PutMetricData has no resource-level permissions"
    assert put_metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": metrics.NAMESPACE}}
    (logs,) = [s for s in found if "logs:PutLogEvents" in as_list(s["Action"])]
    assert logs["Resource"] == [
        f"arn:aws:logs:{REGION}:{MOCK_ACCOUNT}:log-group:/mlinfra/{PROJECT}-{STAGE}/drift-job:*"
    ]


@pytest.mark.parametrize("policy_name", ["-drift-job-role-policy", "-scheduler-role-policy"])
def test_parliament_finds_nothing_in_the_job_policies(render_stack: Render, policy_name: str) -> None:
    stack = staging(render_stack)
    document = job_child(stack, ROLE_POLICY, policy_name).inputs["policy"]
    findings = analyze_policy_string(document).findings
    assert [(f.issue, f.detail) for f in findings] == [], document


# ---------------------------------------------------------------------------------------------------------------
# Its own failures alarm


def test_errors_alarm_notifies_the_stage_topic(render_stack: Render) -> None:
    stack = staging(render_stack)
    alarm = job_child(stack, METRIC_ALARM, "-errors").inputs
    assert alarm["name"] == naming.drift_job_errors_alarm(PROJECT, STAGE)
    assert alarm["namespace"] == "AWS/Lambda"
    assert alarm["metricName"] == "Errors"
    assert alarm["dimensions"] == {"FunctionName": FUNCTION_NAME}
    assert alarm["statistic"] == "Sum"
    assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["threshold"] == 1
    assert alarm["alarmActions"] == alarm["okActions"] == [stack.outputs["alertTopicArn"]]


def test_prod_stack_file_deploys_the_job_and_its_alarms(render_stack: Render) -> None:
    stack = render_stack(
        {
            "mlinfra:registry": {"objectLock": {"mode": "GOVERNANCE", "days": 365}},
            "mlinfra:monitoring": {"enabled": True, "drift": True},
            "mlinfra:models": {"churn": {"pinned": pin(stage="prod"), **CAPTURED}},
        },
        stage="prod",
    )
    job_child(stack, FUNCTION)
    names = {a.inputs["name"] for a in stack.of_type(METRIC_ALARM)}
    assert {
        naming.alarm(PROJECT, "prod", "churn", "drift"),
        naming.alarm(PROJECT, "prod", "churn", "drift-silent"),
        naming.drift_job_errors_alarm(PROJECT, "prod"),
    } <= names


def test_every_taggable_job_resource_is_tagged(render_stack: Render) -> None:
    stack = staging(render_stack)
    untaggable = {ROLE_POLICY, INVOKE_CONFIG, SCHEDULE, INVOCATION}
    for resource in stack.children(JOB):
        if resource.type in untaggable:
            continue
        assert resource.inputs["tags"] == {"stage": STAGE, "owner": "ml-platform", "managed-by": "mlinfra"}, (
            resource.name
        )


@pytest.mark.parametrize(
    ("monitoring", "message"),
    [
        ({"jobMemoryMb": 256}, r"mlinfra:monitoring.jobMemoryMb: .*greater than or equal to 512"),
        ({"logRetentionDays": 10}, r"mlinfra:monitoring.logRetentionDays: .*(1, 3, 5|Input should be 1)"),
    ],
)
def test_job_settings_outside_what_aws_accepts_are_refused(
    render_stack: Render, monitoring: dict[str, Any], message: str
) -> None:
    from mlinfra_infra.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        staging(render_stack, monitoring)


def test_the_registry_key_lets_cloudwatch_logs_encrypt_the_job_log_group(render_stack: Render) -> None:
    stack = staging(render_stack)
    logs = job_child(stack, LOG_GROUP).inputs
    key = policy(stack.one("aws:kms/key:Key").inputs)
    arn = f"arn:aws:logs:{REGION}:{MOCK_ACCOUNT}:log-group:{logs['name']}"
    granted = [
        s
        for s in key["Statement"]
        if s["Effect"] == "Allow"
        and s.get("Principal") == {"Service": f"logs.{REGION}.amazonaws.com"}
        and fnmatch.fnmatchcase(
            arn, s.get("Condition", {}).get("ArnLike", {}).get("kms:EncryptionContext:aws:logs:arn", "")
        )
    ]
    assert granted, f"no key policy statement lets CloudWatch Logs encrypt {arn}"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_input_is_a_property_of_the_installed_sdk_and_enums_are_botocores(render_stack: Render) -> None:
    import importlib
    import inspect

    import botocore.loaders

    stack = staging(render_stack)
    for resource in stack.children(JOB):
        _, module_path, class_name = resource.type.split(":")
        module_name = module_path.split("/")[0]
        module = importlib.import_module(f"pulumi_aws.{'lambda_' if module_name == 'lambda' else module_name}")
        accepted = set(inspect.signature(getattr(module, class_name)._internal_init).parameters)
        unknown = [key for key in resource.inputs if _snake(key) not in accepted]
        assert unknown == [], f"{resource.name} ({resource.type}): not properties of pulumi-aws: {unknown}"

    loader = botocore.loaders.create_loader()
    shapes = {
        service: loader.load_service_model(service, "service-2")["shapes"]
        for service in ("lambda", "scheduler", "cloudwatch")
    }
    function = job_child(stack, FUNCTION).inputs
    assert function["runtime"] in shapes["lambda"]["Runtime"]["enum"]
    assert set(function["architectures"]) <= set(shapes["lambda"]["Architecture"]["enum"])
    logging_config = function["loggingConfig"]
    assert logging_config["logFormat"] in shapes["lambda"]["LogFormat"]["enum"]
    assert logging_config["applicationLogLevel"] in shapes["lambda"]["ApplicationLogLevel"]["enum"]
    assert logging_config["systemLogLevel"] in shapes["lambda"]["SystemLogLevel"]["enum"]
    memory = shapes["lambda"]["MemorySize"]
    assert memory["min"] <= function["memorySize"] <= memory["max"]
    schedule = job_child(stack, SCHEDULE).inputs
    assert schedule["flexibleTimeWindow"]["mode"] in shapes["scheduler"]["FlexibleTimeWindowMode"]["enum"]
    assert schedule["state"] in shapes["scheduler"]["ScheduleState"]["enum"]
    assert len(schedule["name"]) <= shapes["scheduler"]["Name"]["max"]
    assert re.fullmatch(shapes["scheduler"]["Name"]["pattern"], schedule["name"])
    mine = [a for a in stack.of_type(METRIC_ALARM) if "drift" in a.inputs["name"]]
    assert len(mine) == 4  # drift, drift-silent, drift-job-errors, drift-job-dead-letters
    for alarm in mine:
        inputs = alarm.inputs
        assert inputs["comparisonOperator"] in shapes["cloudwatch"]["ComparisonOperator"]["enum"], alarm.name
        assert inputs["statistic"] in shapes["cloudwatch"]["Statistic"]["enum"], alarm.name
        assert inputs["period"] % 60 == 0 and inputs["period"] * inputs["evaluationPeriods"] <= 604_800, alarm.name
        assert inputs.get("treatMissingData", "missing") in {"breaching", "notBreaching", "ignore", "missing"}


def test_the_optional_js_and_ks_verdicts_reach_the_job(render_stack: Render) -> None:
    alarms = {"driftPsi": 0.3, "driftJs": 0.25, "driftKsPvalue": 0.01}
    stack = staging(render_stack, churn={"pinned": pin(stage=STAGE), **CAPTURED, "alarms": alarms})
    (model,) = JobSpec.model_validate_json(job_child(stack, SCHEDULE).inputs["target"]["input"]).models
    assert (model.drift_psi, model.drift_js, model.drift_ks_pvalue) == (0.3, 0.25, 0.01)


INVOCATION = "aws:lambda/invocation:Invocation"


def _hash(name: str) -> str:
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()[:7]


def test_failed_scheduled_invocations_land_in_an_encrypted_queue_that_alarms(render_stack: Render) -> None:
    stack = staging(render_stack)
    queue = job_child(stack, "aws:sqs/queue:Queue").inputs
    assert queue["sqsManagedSseEnabled"] is True
    schedule = job_child(stack, SCHEDULE).inputs
    assert schedule["target"]["deadLetterConfig"]["arn"].endswith(f":{queue['name']}")
    alarm = job_child(stack, METRIC_ALARM, "-dead-letters-alarm").inputs
    assert (alarm["namespace"], alarm["metricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["threshold"] == 1 and alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["alarmActions"] == [stack.outputs["alertTopicArn"]]


def test_the_job_runs_once_at_deployment_so_drift_silent_does_not_page_first(render_stack: Render) -> None:
    stack = staging(render_stack)
    first = job_child(stack, INVOCATION).inputs
    schedule = job_child(stack, SCHEDULE).inputs
    assert first["functionName"] == FUNCTION_NAME
    # The same job spec as the schedule's: the run publishes each model's heartbeat (ScoredRows, 0 included).
    assert json.loads(first["input"]) == json.loads(schedule["target"]["input"])
    assert first["triggers"] == {"models": "churn@3"}
    # A new model (or version) runs it again.
    fraud = {"pinned": pin("fraud", version=5, stage=STAGE), **CAPTURED}
    again = staging(render_stack, churn={"pinned": pin(stage=STAGE), **CAPTURED}, fraud=fraud)
    assert job_child(again, INVOCATION).inputs["triggers"] == {"models": "churn@3,fraud@5"}


def test_drift_silent_is_created_after_the_first_run(render_stack: Render) -> None:
    stack = staging(render_stack)
    first = job_child(stack, INVOCATION)
    silent = next(a for a in stack.of_type(METRIC_ALARM) if a.inputs["name"].endswith("-drift-silent"))
    assert first.name in silent.depends_on
