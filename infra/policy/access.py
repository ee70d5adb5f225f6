"""Rules for IAM, CloudWatch alarms, SNS, log groups and tags."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .engine import Context, Index, Resource, as_list, document, get, resource_rule, stack_rule, statements
from .tokens import (
    ADMIN_POLICIES,
    ATTACHMENT,
    COMPOSITE_ALARM,
    ENDPOINT,
    ENDPOINT_CONFIG,
    FUNCTION,
    LOG_GROUP,
    METRIC_ALARM,
    POLICY,
    REQUIRED_TAGS,
    ROLE,
    ROLE_POLICY,
    SUBSCRIPTION,
    TAGGED_TYPES,
    TOPIC,
)

# ---------------------------------------------------------------------------------------------------------------
# The pack's own footing


@stack_rule(
    "stage-context",
    "The pack could load the stage's context (allow-listed instance types, protection, retention) from its stack "
    "file; without it the other rules would judge on defaults, so this fails closed.",
    level="mandatory",
)
def stage_context(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    if ctx.error:
        yield "stack", ctx.error


# ---------------------------------------------------------------------------------------------------------------
# IAM


@resource_rule(
    "iam-no-star-on-star",
    "No identity policy allows every action on every resource.",
    (ROLE_POLICY, POLICY),
    ("CKV_AWS_62", "CKV_AWS_63", "CKV_AWS_1"),
)
def iam_no_star(resource: Resource, ctx: Context) -> Iterable[str]:
    for statement in statements(document(resource.inputs.get("policy"))):
        actions = as_list(statement.get("Action"))
        if statement.get("Effect") == "Allow" and ("*" in actions) and "*" in as_list(statement.get("Resource")):
            yield f"statement {statement.get('Sid', '?')} allows * on *"


@resource_rule(
    "iam-no-admin-policies",
    "No role carries AWS's administrator, power-user or IAM-full-access managed policies.",
    (ATTACHMENT, ROLE),
    ("CKV_AWS_274", "CKV2_AWS_56"),
)
def iam_no_admin(resource: Resource, ctx: Context) -> Iterable[str]:
    arns = [resource.inputs.get("policyArn"), *as_list(resource.inputs.get("managedPolicyArns"))]
    for arn in arns:
        if isinstance(arn, str) and arn.rsplit("/", 1)[-1] in ADMIN_POLICIES:
            yield f"attaches {arn}"


# Roles passed to a resource in this account (iam:PassRole is the guard) rather than assumed by a service acting for
# arbitrary callers: EC2 instance profiles and Lambda execution roles. AWS's confused-deputy guidance targets the
# latter kind; these are left to the PassRole permission.
UNSCOPED_TRUST = frozenset({"ec2.amazonaws.com", "lambda.amazonaws.com"})


@resource_rule(
    "iam-service-trust-scoped",
    "Roles assumed by AWS services restrict the trust to this account (aws:SourceAccount / aws:SourceArn); EC2 "
    "instance profiles and Lambda execution roles are exempt (passed to a resource; iam:PassRole guards them).",
    (ROLE,),
    ("CKV_AWS_60",),
)
def iam_trust_scoped(resource: Resource, ctx: Context) -> Iterable[str]:
    for statement in statements(document(resource.inputs.get("assumeRolePolicy"))):
        services = as_list(get(statement, "Principal.Service"))
        if statement.get("Effect") != "Allow" or not services or set(services) <= UNSCOPED_TRUST:
            continue
        condition = statement.get("Condition") or {}
        keys = {key for block in condition.values() if isinstance(block, dict) for key in block}
        if not keys & {"aws:SourceAccount", "aws:SourceArn"}:
            yield f"trust for {services} has no aws:SourceAccount/aws:SourceArn condition (confused deputy)"


# ---------------------------------------------------------------------------------------------------------------
# CloudWatch and SNS


def _endpoint_alarm_names(index: Index, endpoint_name: str, metric: str) -> list[str]:
    return [
        str(a.inputs.get("name"))
        for a in index.of(METRIC_ALARM)
        if a.inputs.get("metricName") == metric and get(a.inputs, "dimensions.EndpointName") == endpoint_name
    ]


def _endpoint_alarm_rule(metric: str, rule_id: str, what: str) -> None:
    def check(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
        index = Index(resources)
        for endpoint in index.of(ENDPOINT):
            if not _endpoint_alarm_names(index, str(endpoint.inputs.get("name")), metric):
                yield endpoint.name, f"no {what} alarm ({metric}) on this endpoint"

    stack_rule(rule_id, f"Every endpoint has a {what} alarm on {metric}.")(check)


_endpoint_alarm_rule("Invocation5XXErrors", "cloudwatch-endpoint-5xx-alarm", "5XX")
_endpoint_alarm_rule("ModelLatency", "cloudwatch-endpoint-latency-alarm", "latency")


def _captured_models(index: Index) -> dict[str, str]:
    """Endpoint config name -> model tag, for configs that capture data."""
    return {
        c.name: str(get(c.inputs, "tags.model", ""))
        for c in index.of(ENDPOINT_CONFIG)
        if get(c.inputs, "dataCaptureConfig.enableCapture") is True
    }


@stack_rule(
    "cloudwatch-drift-alarm",
    "Every endpoint that captures data has a drift alarm (endpoints without capture are exempt: nothing publishes "
    "their drift metric).",
)
def cloudwatch_drift_alarm(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    index = Index(resources)
    drift_models = {
        str(get(a.inputs, "dimensions.Model")) for a in index.of(METRIC_ALARM) if a.inputs.get("metricName") == "MaxPSI"
    }
    for config, model in _captured_models(index).items():
        if model not in drift_models:
            yield config, f"{model} captures data but has no drift (MaxPSI) alarm"


@stack_rule(
    "cloudwatch-alarms-reach-subscriber",
    "Every endpoint alarm reaches an SNS topic with a subscription (directly or through a composite alarm); "
    "applies after the entry stage.",
    ("CKV_AWS_319",),
)
def cloudwatch_alarms_reach(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    if ctx.stage == ctx.entry_stage:
        return
    index = Index(resources)
    subscribed = {str(s.inputs.get("topic")) for s in index.of(SUBSCRIPTION)}
    topics = {str(t.inputs.get("name")) for t in index.of(TOPIC)}

    def reaches(actions: Any) -> bool:
        return any(str(a) in subscribed and str(a).rsplit(":", 1)[-1] in topics for a in as_list(actions))

    composites = [
        c
        for c in index.of(COMPOSITE_ALARM)
        if c.inputs.get("actionsEnabled", True) is not False and reaches(c.inputs.get("alarmActions"))
    ]
    for alarm in index.of(METRIC_ALARM):
        name = str(alarm.inputs.get("name"))
        if not get(alarm.inputs, "dimensions.EndpointName") and alarm.inputs.get("metricName") != "MaxPSI":
            continue
        direct = alarm.inputs.get("actionsEnabled", True) is not False and reaches(alarm.inputs.get("alarmActions"))
        via = any(f'ALARM("{name}")' in str(c.inputs.get("alarmRule", "")) for c in composites)
        if not (direct or via):
            yield alarm.name, f"alarm {name} reaches no subscribed SNS topic"


@stack_rule(
    "lambda-errors-alarm",
    "Every Lambda function (the drift job) has an alarm on its AWS/Lambda Errors metric, so a failing job notifies.",
)
def lambda_errors_alarm(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    index = Index(resources)
    watched = {
        str(get(a.inputs, "dimensions.FunctionName"))
        for a in index.of(METRIC_ALARM)
        if a.inputs.get("namespace") == "AWS/Lambda" and a.inputs.get("metricName") == "Errors"
    }
    for function in index.of(FUNCTION):
        name = str(function.inputs.get("name") or function.name)
        if name not in watched:
            yield function.name, f"no AWS/Lambda Errors alarm on function {name}: a failing run would go unnoticed"


@resource_rule("sns-encrypted", "Alert topics are encrypted with the stage's key.", (TOPIC,), ("CKV_AWS_26",))
def sns_encrypted(resource: Resource, ctx: Context) -> Iterable[str]:
    if not resource.inputs.get("kmsMasterKeyId"):
        yield "no kmsMasterKeyId"


@resource_rule("logs-encrypted", "Log groups are encrypted with the stage's key.", (LOG_GROUP,), ("CKV_AWS_158",))
def logs_encrypted(resource: Resource, ctx: Context) -> Iterable[str]:
    if not resource.inputs.get("kmsKeyId"):
        yield "no kmsKeyId"


@resource_rule("logs-retention", "Log groups set a retention period.", (LOG_GROUP,), ("CKV_AWS_66",))
def logs_retention(resource: Resource, ctx: Context) -> Iterable[str]:
    if not resource.inputs.get("retentionInDays"):
        yield "no retentionInDays: logs are kept (and billed) forever"


# ---------------------------------------------------------------------------------------------------------------
# Tags


@resource_rule(
    "tags-required",
    f"Taggable resources carry the tags {', '.join(REQUIRED_TAGS)} (cost allocation and ownership).",
    TAGGED_TYPES,
)
def tags_required(resource: Resource, ctx: Context) -> Iterable[str]:
    tags = resource.inputs.get("tags") or {}
    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    if missing:
        yield f"missing tags: {', '.join(missing)}"
    elif tags.get("stage") != ctx.stage:
        yield f"tag stage={tags.get('stage')} on a resource of stage {ctx.stage}"
