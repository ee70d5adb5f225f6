"""DriftMonitoring under the mock runtime: alert topic, drift and drift-silent alarms, composite alarms, dashboard."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from mlinfra.stacks.render import MASK, MOCK_ACCOUNT, RenderedResource, RenderedStack
from mlinfra_drift import metrics
from mlinfra_infra import naming
from mlinfra_infra.components import common
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
FUNCTION = "aws:lambda/function:Function"
SCHEDULE = "aws:scheduler/schedule:Schedule"
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
# Drift and drift-silent alarms


def drift_alarms(stack: RenderedStack) -> dict[str, RenderedResource]:
    """The component's metric alarms by name."""
    return {a.inputs["name"]: a for a in children(stack, METRIC_ALARM)}


def test_drift_alarm_watches_what_the_job_publishes_at_the_configured_threshold(render_stack: Render) -> None:
    models = {"churn": {**REALTIME_WITH_CAPTURE, "alarms": {"driftPsi": 0.35}}}
    stack = staging(render_stack, models=models)
    alarm = drift_alarms(stack)[naming.alarm(PROJECT, STAGE, "churn", "drift")]
    # Names shared with the publisher (mlinfra_drift.metrics), so the two cannot drift apart.
    assert alarm.inputs["namespace"] == metrics.NAMESPACE == "mlinfra/Drift"
    assert alarm.inputs["metricName"] == metrics.MAX_PSI == "MaxPSI"
    assert alarm.inputs["dimensions"] == {metrics.STAGE_DIMENSION: STAGE, metrics.MODEL_DIMENSION: "churn"}
    assert alarm.inputs["statistic"] == "Maximum"
    assert alarm.inputs["comparisonOperator"] == "GreaterThanThreshold"
    assert alarm.inputs["threshold"] == 0.35
    assert alarm.inputs["period"] == 3600
    # No traffic publishes no MaxPSI; the alarm keeps its state rather than turning OK on nothing measured.
    assert alarm.inputs["treatMissingData"] == "ignore"
    # The composite alarm notifies; the drift alarm itself stays silent.
    assert not alarm.inputs.get("alarmActions")


@pytest.mark.parametrize(("schedule", "period"), [("hourly", 3600), ("daily", 86_400)])
def test_silent_job_breaches_after_two_schedule_periods(render_stack: Render, schedule: str, period: int) -> None:
    stack = staging(render_stack, {"schedule": schedule})
    alarm = drift_alarms(stack)[naming.alarm(PROJECT, STAGE, "churn", "drift-silent")]
    assert alarm.inputs["namespace"] == metrics.NAMESPACE
    assert alarm.inputs["metricName"] == metrics.ROWS
    assert alarm.inputs["dimensions"] == {metrics.STAGE_DIMENSION: STAGE, metrics.MODEL_DIMENSION: "churn"}
    assert alarm.inputs["statistic"] == "SampleCount"
    assert alarm.inputs["comparisonOperator"] == "LessThanThreshold"
    assert alarm.inputs["threshold"] == 1
    assert alarm.inputs["period"] == period
    assert alarm.inputs["evaluationPeriods"] == alarm.inputs["datapointsToAlarm"] == 2
    assert alarm.inputs["treatMissingData"] == "breaching"
    # CloudWatch: period x evaluation periods at most 7 days.
    assert alarm.inputs["period"] * alarm.inputs["evaluationPeriods"] <= 604_800


def test_no_drift_alarms_or_job_when_drift_is_off(render_stack: Render) -> None:
    stack = staging(render_stack, {"drift": False})
    assert children(stack, METRIC_ALARM) == []
    assert stack.of_type(FUNCTION) == []
    assert stack.of_type(SCHEDULE) == []


@pytest.mark.parametrize(
    "model",
    [SERVERLESS, {"pinned": pin(stage=STAGE), "capture": {"enabled": False}}],
    ids=["serverless", "realtime-without-capture"],
)
def test_no_drift_alarm_without_capture_since_nothing_could_feed_it(
    render_stack: Render, model: dict[str, Any]
) -> None:
    stack = staging(render_stack, models={"churn": model})
    assert children(stack, METRIC_ALARM) == []
    assert stack.of_type(FUNCTION) == []
    assert stack.of_type(SCHEDULE) == []
    assert stack.of_type(ROLE) == [r for r in stack.of_type(ROLE) if r.parent != "monitoring-drift-job"]


def test_model_monitor_instance_type_is_refused_with_the_reason(render_stack: Render) -> None:
    from mlinfra_infra.config import ConfigError

    with pytest.raises(ConfigError, match=r"mlinfra:monitoring: instanceType sized the SageMaker Model Monitor job"):
        staging(render_stack, {"instanceType": "ml.m5.large"})


# ---------------------------------------------------------------------------------------------------------------
# Composite alarm


def test_composite_alarm_ors_the_health_drift_and_silence_alarms(render_stack: Render) -> None:
    stack = staging(render_stack)
    composite = only_child(stack, COMPOSITE_ALARM)
    assert composite.inputs["alarmName"] == naming.alarm(PROJECT, STAGE, "churn", "health")
    expected = [
        *health_alarm_names(stack, "churn"),
        naming.alarm(PROJECT, STAGE, "churn", "drift"),
        naming.alarm(PROJECT, STAGE, "churn", "drift-silent"),
    ]
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
        naming.alarm(PROJECT, STAGE, model, kind) for model in ("churn", "fraud") for kind in ("drift", "drift-silent")
    ]
    assert sorted(a.inputs["alarmName"] for a in children(stack, COMPOSITE_ALARM)) == [
        naming.alarm(PROJECT, STAGE, model, "health") for model in ("churn", "fraud")
    ]
    # One job per stage watches both models.
    (schedule,) = stack.of_type(SCHEDULE)
    spec = json.loads(schedule.inputs["target"]["input"])
    assert [m["model"] for m in spec["models"]] == ["churn", "fraud"]


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
    job = ["FunctionName", naming.drift_job(PROJECT, STAGE)]
    assert metrics[("AWS/Lambda", "Errors")] == (job, "Sum")
    assert metrics[("AWS/Lambda", "Duration")] == (job, "Maximum")


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
    monitoring_types = {TOPIC, TOPIC_POLICY, SUBSCRIPTION, COMPOSITE_ALARM, DASHBOARD}
    stray = [r.name for r in stack.resources if r.type in monitoring_types and r.parent != COMPONENT]
    assert stray == [], f"monitoring resources outside the component: {stray}"
    for resource in stack.children(COMPONENT):
        if resource.type in UNTAGGABLE or not resource.custom:
            continue
        model = resource.inputs["tags"].get("model")
        assert resource.inputs["tags"] == common.tags(STAGE, "ml-platform", model), resource.name
