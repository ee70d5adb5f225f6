"""DriftMonitoring under the mock runtime: alert topic, drift alarms, Model Monitor, composite alarms, dashboard."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from mlinfra.render import MASK, MOCK_ACCOUNT, RenderedResource, RenderedStack
from mlinfra_infra import naming
from mlinfra_infra.components import common
from mlinfra_infra.components.monitoring import (
    ANALYZER_ACCOUNTS,
    analyzer_account,
    analyzer_image,
    schedule_name,
)
from tests.builders import PROJECT, REGION, pin
from tests.conftest import policy

Render = Callable[..., RenderedStack]

STAGE = "staging"
COMPONENT = "monitoring"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
COMPOSITE_ALARM = "aws:cloudwatch/compositeAlarm:CompositeAlarm"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
JOB_DEFINITION = "aws:sagemaker/dataQualityJobDefinition:DataQualityJobDefinition"
SCHEDULE = "aws:sagemaker/monitoringSchedule:MonitoringSchedule"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
# Types that take no tags in the AWS provider.
UNTAGGABLE = {TOPIC_POLICY, SUBSCRIPTION, ROLE_POLICY, DASHBOARD}

REALTIME_WITH_CAPTURE: dict[str, Any] = {"pinned": pin(stage=STAGE), "capture": {"enabled": True}}
SERVERLESS: dict[str, Any] = {"pinned": pin(stage=STAGE), "mode": "serverless", "networkIsolation": False}


def staging(
    render_stack: Render,
    monitoring: dict[str, Any] | None = None,
    models: dict[str, Any] | None = None,
) -> RenderedStack:
    """Render the staging stack with monitoring (and drift) on and one captured real-time model by default."""
    return render_stack(
        {
            "mlinfra:monitoring": {"enabled": True, "drift": True, **(monitoring or {})},
            "mlinfra:models": models if models is not None else {"churn": REALTIME_WITH_CAPTURE},
        },
        stage=STAGE,
    )


def children(stack: RenderedStack, type_token: str) -> list[RenderedResource]:
    """The component's children of one type."""
    return [r for r in stack.children(COMPONENT) if r.type == type_token]


def only_child(stack: RenderedStack, type_token: str) -> RenderedResource:
    found = children(stack, type_token)
    assert len(found) == 1, f"expected one {type_token} under {COMPONENT}, found {[r.name for r in found]}"
    return found[0]


def rule_alarms(rule: str) -> list[str]:
    """The alarm names an `ALARM("a") OR ALARM("b")` rule references, in order."""
    assert re.fullmatch(r'ALARM\("[^"]+"\)(?: OR ALARM\("[^"]+"\))*', rule), f"unexpected alarm rule {rule!r}"
    return re.findall(r'ALARM\("([^"]+)"\)', rule)


def health_alarm_names(stack: RenderedStack, model: str) -> list[str]:
    """The health alarms the model's endpoint component actually declared."""
    return [r.inputs["name"] for r in stack.children(f"{model}-endpoint") if r.type == METRIC_ALARM]


# ---------------------------------------------------------------------------------------------------------------
# Alert topic


def test_topic_is_named_for_the_stage_and_encrypted_with_the_registry_key(render_stack: Render) -> None:
    stack = staging(render_stack)
    topic = stack.one(TOPIC)
    assert topic.parent == COMPONENT
    assert topic.inputs["name"] == naming.topic(PROJECT, STAGE)
    assert topic.inputs["kmsMasterKeyId"] == stack.outputs["registryKeyArn"], "topic must use the registry key"
    assert stack.outputs["alertTopicArn"].endswith(f":{naming.topic(PROJECT, STAGE)}")
    assert stack.outputs["dashboardName"] == naming.dashboard(PROJECT, STAGE)


def test_only_cloudwatch_of_this_account_may_publish_and_only_over_tls(render_stack: Render) -> None:
    stack = staging(render_stack)
    topic_policy = stack.one(TOPIC_POLICY)
    assert topic_policy.inputs["arn"] == stack.outputs["alertTopicArn"]
    statements = policy(topic_policy.inputs)["Statement"]

    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert len(allows) == 1, f"topic policy allows more than CloudWatch: {allows}"
    (allow,) = allows
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == ["sns:Publish"]
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": MOCK_ACCOUNT}}

    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert "sns:Publish" in deny["Action"]
    assert deny["Principal"] == {"AWS": "*"}
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_one_subscription_per_notification_with_masked_endpoints(render_stack: Render) -> None:
    notifications = [
        {"protocol": "email", "endpoint": "ml@example.com"},
        {"protocol": "https", "endpoint": "https://hooks.example.com/mlinfra"},
    ]
    stack = staging(render_stack, {"notifications": notifications})
    subscriptions = sorted(children(stack, SUBSCRIPTION), key=lambda r: r.name)
    assert [s.inputs["protocol"] for s in subscriptions] == ["email", "https"]
    for subscription in subscriptions:
        assert subscription.inputs["topic"] == stack.outputs["alertTopicArn"], subscription.name
        # Output.secret masks even plain-text endpoints: they may come from `secure:` values.
        assert subscription.inputs["endpoint"] == MASK, subscription.name
    rendered = json.dumps(stack.to_json())
    assert "ml@example.com" not in rendered
    assert "hooks.example.com" not in rendered


def test_secure_notification_endpoint_renders_as_placeholder(render_stack: Render) -> None:
    stack = staging(render_stack, {"notifications": [{"protocol": "email", "endpoint": {"secure": "v1:abc"}}]})
    subscription = stack.one(SUBSCRIPTION)
    assert subscription.inputs["endpoint"] == MASK
    assert "v1:abc" not in json.dumps(stack.to_json())


def test_no_notifications_means_no_subscriptions(render_stack: Render) -> None:
    stack = staging(render_stack)
    assert stack.of_type(SUBSCRIPTION) == []
    stack.one(TOPIC)


# ---------------------------------------------------------------------------------------------------------------
# Drift alarm and Model Monitor


def test_drift_alarm_uses_configured_threshold_and_ignores_missing_data(render_stack: Render) -> None:
    models = {"churn": {**REALTIME_WITH_CAPTURE, "alarms": {"driftPsi": 0.35}}}
    stack = staging(render_stack, models=models)
    (alarm,) = children(stack, METRIC_ALARM)
    assert alarm.inputs["name"] == naming.alarm(PROJECT, STAGE, "churn", "drift")
    assert alarm.inputs["namespace"] == "mlinfra/Drift"
    assert alarm.inputs["metricName"] == "MaxPSI"
    assert alarm.inputs["dimensions"] == {"Stage": STAGE, "Model": "churn"}
    assert alarm.inputs["statistic"] == "Maximum"
    assert alarm.inputs["comparisonOperator"] == "GreaterThanThreshold"
    assert alarm.inputs["threshold"] == 0.35
    assert alarm.inputs["treatMissingData"] == "notBreaching"
    # The composite alarm notifies; the drift alarm itself stays silent.
    assert not alarm.inputs.get("alarmActions")


def test_no_drift_alarm_or_model_monitor_when_drift_is_off(render_stack: Render) -> None:
    stack = staging(render_stack, {"drift": False})
    assert children(stack, METRIC_ALARM) == []
    assert stack.of_type(JOB_DEFINITION) == []
    assert stack.of_type(SCHEDULE) == []


def test_model_monitor_checks_against_the_pinned_versions_baseline(render_stack: Render) -> None:
    models = {"churn": {**REALTIME_WITH_CAPTURE, "pinned": pin(version=7, stage=STAGE)}}
    stack = staging(render_stack, {"instanceType": "ml.c5.xlarge"}, models)
    key_arn = stack.outputs["registryKeyArn"]
    bucket = stack.outputs["registryBucket"]
    job = only_child(stack, JOB_DEFINITION)
    inputs = job.inputs

    assert "name" not in inputs, "job definitions are replaced on every change and must be auto-named"
    baseline = inputs["dataQualityBaselineConfig"]
    assert baseline["constraintsResource"]["s3Uri"] == f"s3://{bucket}/models/churn/versions/7/constraints.json"
    assert baseline["statisticsResource"]["s3Uri"] == f"s3://{bucket}/models/churn/versions/7/statistics.json"
    assert inputs["dataQualityAppSpecification"]["imageUri"] == analyzer_image(REGION)
    assert inputs["dataQualityJobInput"]["endpointInput"]["endpointName"] == naming.endpoint(PROJECT, STAGE, "churn")

    output = inputs["dataQualityJobOutputConfig"]
    assert output["kmsKeyId"] == key_arn
    assert output["monitoringOutputs"]["s3Output"]["s3Uri"] == f"s3://{bucket}/monitoring/churn"

    cluster = inputs["jobResources"]["clusterConfig"]
    assert cluster["volumeKmsKeyId"] == key_arn
    assert cluster["instanceType"] == "ml.c5.xlarge"
    assert inputs["networkConfig"]["enableNetworkIsolation"] is True

    role = only_child(stack, ROLE)
    assert re.fullmatch(rf"arn:aws:iam::{MOCK_ACCOUNT}:role/{re.escape(role.name)}-[0-9a-f]{{7}}", inputs["roleArn"])


@pytest.mark.parametrize(("schedule", "expression"), [("hourly", "cron(0 * ? * * *)"), ("daily", "cron(0 0 ? * * *)")])
def test_schedule_runs_the_job_definition_hourly_or_daily(render_stack: Render, schedule: str, expression: str) -> None:
    stack = staging(render_stack, {"schedule": schedule})
    scheduled = only_child(stack, SCHEDULE)
    config = scheduled.inputs["monitoringScheduleConfig"]
    assert config["scheduleConfig"]["scheduleExpression"] == expression
    assert config["monitoringType"] == "DataQuality"
    job = only_child(stack, JOB_DEFINITION)
    # The mock auto-names "<logical name>-<7 hex>", as Pulumi does.
    assert re.fullmatch(rf"{re.escape(job.name)}-[0-9a-f]{{7}}", config["monitoringJobDefinitionName"])
    assert scheduled.inputs["name"] == naming.endpoint(PROJECT, STAGE, "churn") + "-dq"


@pytest.mark.parametrize(
    "model",
    [SERVERLESS, {"pinned": pin(stage=STAGE), "capture": {"enabled": False}}],
    ids=["serverless", "realtime-without-capture"],
)
def test_no_model_monitor_without_capture_but_drift_alarm_stays(render_stack: Render, model: dict[str, Any]) -> None:
    stack = staging(render_stack, models={"churn": model})
    assert stack.of_type(JOB_DEFINITION) == []
    assert stack.of_type(SCHEDULE) == []
    assert children(stack, ROLE) == []
    (alarm,) = children(stack, METRIC_ALARM)
    assert alarm.inputs["name"] == naming.alarm(PROJECT, STAGE, "churn", "drift")


def test_monitor_role_is_least_privilege(render_stack: Render) -> None:
    stack = staging(render_stack)
    bucket_arn = f"arn:aws:s3:::{stack.outputs['registryBucket']}"
    role = only_child(stack, ROLE)
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    statements = policy(only_child(stack, ROLE_POLICY).inputs)["Statement"]
    for stmt in statements:
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
        wildcard_action = any(a == "*" or a.endswith(":*") for a in actions)
        assert not (wildcard_action and "*" in resources), f"monitor role allows * on *: {stmt}"
        assert not wildcard_action, f"monitor role has a wildcard action: {stmt}"
    s3_objects = {
        r
        for stmt in statements
        for r in stmt["Resource"]
        if any(a.startswith("s3:") for a in stmt["Action"]) and r != bucket_arn
    }
    assert s3_objects == {
        f"{bucket_arn}/models/churn/*",
        f"{bucket_arn}/capture/churn/*",
        f"{bucket_arn}/monitoring/churn/*",
    }
    writes = {r for stmt in statements if "s3:PutObject" in stmt["Action"] for r in stmt["Resource"]}
    assert writes == {f"{bucket_arn}/monitoring/churn/*"}
    (metrics,) = [s for s in statements if "cloudwatch:PutMetricData" in s["Action"]]
    assert "cloudwatch:namespace" in metrics["Condition"]["StringEquals"]


def test_analyzer_image_lookup() -> None:
    assert analyzer_account("us-east-1") == "156813124566"
    image = analyzer_image("eu-west-1")
    assert image == "468650794304.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-model-monitor-analyzer"
    assert all(re.fullmatch(r"\d{12}", account) for account in ANALYZER_ACCOUNTS.values())


def test_unknown_region_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"not known for region 'mars-north-1'") as info:
        analyzer_account("mars-north-1")
    message = str(info.value)
    assert "eu-west-1" in message, "the error lists the known regions"
    assert "ANALYZER_ACCOUNTS" in message, "the error says how to fix it"


def test_schedule_name_longer_than_sagemaker_allows_is_refused() -> None:
    assert schedule_name("mlinfra-staging-churn") == "mlinfra-staging-churn-dq"
    with pytest.raises(ValueError, match="SageMaker allows 63"):
        schedule_name("x" * 62)


# ---------------------------------------------------------------------------------------------------------------
# Composite alarm


def test_composite_alarm_ors_the_health_alarms_and_the_drift_alarm(render_stack: Render) -> None:
    stack = staging(render_stack)
    composite = only_child(stack, COMPOSITE_ALARM)
    assert composite.inputs["alarmName"] == naming.alarm(PROJECT, STAGE, "churn", "health")
    expected = [*health_alarm_names(stack, "churn"), naming.alarm(PROJECT, STAGE, "churn", "drift")]
    assert sorted(rule_alarms(composite.inputs["alarmRule"])) == sorted(expected)
    declared = {r.inputs["name"] for r in stack.of_type(METRIC_ALARM)}
    assert set(expected) <= declared, "the rule may only name alarms the stack declares"
    topic_arn = stack.outputs["alertTopicArn"]
    assert composite.inputs["alarmActions"] == [topic_arn]
    assert composite.inputs["okActions"] == [topic_arn]


def test_composite_alarm_without_drift_covers_the_health_alarms_only(render_stack: Render) -> None:
    stack = staging(render_stack, {"drift": False})
    health = health_alarm_names(stack, "churn")
    composites = children(stack, COMPOSITE_ALARM)
    if not health:
        # CloudWatch refuses an empty rule: no alarm to watch, no composite.
        assert composites == []
        return
    (composite,) = composites
    assert sorted(rule_alarms(composite.inputs["alarmRule"])) == sorted(health)


def test_one_drift_alarm_and_composite_per_endpoint(render_stack: Render) -> None:
    models = {
        "churn": REALTIME_WITH_CAPTURE,
        "fraud": {**REALTIME_WITH_CAPTURE, "pinned": pin("fraud", stage=STAGE)},
        "unpinned": {},
    }
    stack = staging(render_stack, models=models)
    assert sorted(a.inputs["name"] for a in children(stack, METRIC_ALARM)) == [
        naming.alarm(PROJECT, STAGE, model, "drift") for model in ("churn", "fraud")
    ]
    assert sorted(a.inputs["alarmName"] for a in children(stack, COMPOSITE_ALARM)) == [
        naming.alarm(PROJECT, STAGE, model, "health") for model in ("churn", "fraud")
    ]
    assert len(children(stack, SCHEDULE)) == 2


# ---------------------------------------------------------------------------------------------------------------
# Dashboard


def test_dashboard_shows_traffic_errors_latency_and_drift_per_endpoint(render_stack: Render) -> None:
    stack = staging(render_stack)
    dashboard = only_child(stack, DASHBOARD)
    assert dashboard.inputs["dashboardName"] == naming.dashboard(PROJECT, STAGE)
    body = json.loads(dashboard.inputs["dashboardBody"])
    widgets = body["widgets"]
    endpoint = naming.endpoint(PROJECT, STAGE, "churn")
    metrics = {}
    for widget in widgets:
        properties = widget["properties"]
        assert properties["region"] == REGION, widget
        for metric in properties["metrics"]:
            metrics[(metric[0], metric[1])] = (metric[2:], properties["stat"])
    sagemaker_dims = ["EndpointName", endpoint, "VariantName", naming.VARIANT_NAME]
    assert metrics[("AWS/SageMaker", "Invocations")][0] == sagemaker_dims
    assert metrics[("AWS/SageMaker", "Invocation5XXErrors")][0] == sagemaker_dims
    assert metrics[("AWS/SageMaker", "ModelLatency")] == (sagemaker_dims, "p99")
    assert metrics[("mlinfra/Drift", "MaxPSI")][0] == ["Stage", STAGE, "Model", "churn"]


def test_dashboard_without_pinned_models_says_so(render_stack: Render) -> None:
    stack = staging(render_stack, models={"churn": {}})
    assert stack.of_type("mlinfra:aws:ModelEndpoint") == []
    body = json.loads(only_child(stack, DASHBOARD).inputs["dashboardBody"])
    (widget,) = body["widgets"]
    assert widget["type"] == "text"
    assert "No model is pinned" in widget["properties"]["markdown"]
    assert children(stack, COMPOSITE_ALARM) == []
    stack.one(TOPIC)


# ---------------------------------------------------------------------------------------------------------------
# The component as a whole


def test_monitoring_disabled_declares_no_component(render_stack: Render) -> None:
    stack = render_stack({"mlinfra:models": {"churn": REALTIME_WITH_CAPTURE}}, stage=STAGE)
    assert stack.of_type("mlinfra:aws:DriftMonitoring") == []
    assert stack.of_type(TOPIC) == []
    assert stack.of_type(DASHBOARD) == []
    assert "alertTopicArn" not in stack.outputs


def test_every_child_is_parented_and_tagged(render_stack: Render) -> None:
    stack = staging(render_stack, {"notifications": [{"protocol": "email", "endpoint": "ml@example.com"}]})
    component = stack.one("mlinfra:aws:DriftMonitoring")
    assert component.parent is None
    monitoring_types = {TOPIC, TOPIC_POLICY, SUBSCRIPTION, COMPOSITE_ALARM, DASHBOARD, JOB_DEFINITION, SCHEDULE}
    stray = [r.name for r in stack.resources if r.type in monitoring_types and r.parent != COMPONENT]
    assert stray == [], f"monitoring resources outside the component: {stray}"
    for resource in stack.children(COMPONENT):
        if resource.type in UNTAGGABLE:
            continue
        model = resource.inputs["tags"].get("model")
        assert resource.inputs["tags"] == common.tags(STAGE, "ml-platform", model), resource.name
