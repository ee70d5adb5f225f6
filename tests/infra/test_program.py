"""The whole program on every shipped stack: stage defaults, outputs, tags, and the component contract."""

from __future__ import annotations

import importlib
import inspect
from collections import Counter
from pathlib import Path
from typing import Any

import pulumi
import pytest

from mlinfra.stacks.files import raw_config
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import RenderedStack, render
from mlinfra_infra import outputs
from tests.builders import merge, pin

REPO = Project(Path(__file__).resolve().parents[2])
STAGES = ("sandbox", "dev", "staging", "prod")


def shipped(stage: str, *, pinned: bool = True, extra: dict[str, Any] | None = None) -> RenderedStack:
    """Render a shipped stack file, with `churn` pinned (as `mlinfra promote` would) unless told otherwise."""
    raw = raw_config(REPO, stage)
    if pinned:
        raw = merge(raw, {"mlinfra:models": {"churn": {"pinned": pin(stage=stage)}}})
    raw = merge(raw, extra or {})
    return render(raw, project=REPO.name, stage=stage, source=f"stacks/Pulumi.{stage}.yaml")


@pytest.fixture(scope="module")
def stacks() -> dict[str, RenderedStack]:
    return {stage: shipped(stage) for stage in STAGES}


def endpoint_config(stack: RenderedStack) -> dict[str, Any]:
    return stack.one("aws:sagemaker/endpointConfiguration:EndpointConfiguration").inputs


def test_the_project_ships_exactly_the_four_stages() -> None:
    assert REPO.stages() == list(STAGES)


@pytest.mark.parametrize("stage", STAGES)
def test_unpinned_shipped_stack_declares_registry_and_package_group_only(stage: str) -> None:
    stack = shipped(stage, pinned=False)
    assert stack.one("aws:sagemaker/modelPackageGroup:ModelPackageGroup").inputs["modelPackageGroupName"] == (
        f"mlinfra-{stage}-churn"
    )
    assert not stack.of_type("aws:sagemaker/endpoint:Endpoint")
    assert not stack.of_type("aws:sagemaker/model:Model")


def test_only_sandbox_has_the_vm_and_it_has_no_monitoring(stacks: dict[str, RenderedStack]) -> None:
    sandbox = stacks["sandbox"]
    assert sandbox.of_type("mlinfra:aws:SandboxVM")
    assert sandbox.outputs[outputs.SANDBOX_INSTANCE_ID]
    assert not sandbox.of_type("mlinfra:aws:DriftMonitoring")
    assert [s for s in STAGES if stacks[s].of_type("mlinfra:aws:SandboxVM")] == ["sandbox"]


def test_dev_serves_serverless_with_health_alarms_on_a_subscribed_topic(stacks: dict[str, RenderedStack]) -> None:
    dev = stacks["dev"]
    variant = endpoint_config(dev)["productionVariants"][0]
    assert variant["serverlessConfig"]["memorySizeInMb"] == 2048
    assert "instanceType" not in variant
    alarms = [a for a in dev.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if a.parent == "churn-endpoint"]
    assert len(alarms) >= 2
    # dev's health alarms reach a topic with a subscriber; no drift alarm on dev.
    assert dev.one("aws:sns/topicSubscription:TopicSubscription").inputs["protocol"] == "email"
    assert not [a for a in dev.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if a.name.endswith("-drift")]


@pytest.mark.parametrize("stage", ["dev", "staging", "prod"])
def test_every_stage_with_endpoints_alerts_a_subscriber(stacks: dict[str, RenderedStack], stage: str) -> None:
    stack = stacks[stage]
    topic = stack.one("aws:sns/topic:Topic")
    subscriptions = stack.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert subscriptions, f"{stage}: the alert topic {topic.inputs['name']} has no subscriber"
    composites = stack.of_type("aws:cloudwatch/compositeAlarm:CompositeAlarm")
    assert composites, f"{stage}: no composite alarm"
    for composite in composites:
        assert composite.inputs["alarmActions"], f"{stage}: {composite.name} notifies nobody"


def test_staging_captures_everything_and_monitors_drift(stacks: dict[str, RenderedStack]) -> None:
    staging = stacks["staging"]
    capture = endpoint_config(staging)["dataCaptureConfig"]
    assert capture["initialSamplingPercentage"] == 100
    # The drift job (Lambda on a schedule) replaces Model Monitor, which no shipped stack declares any more.
    assert staging.one("aws:lambda/function:Function").inputs["name"] == "mlinfra-staging-drift-job"
    staging.one("aws:scheduler/schedule:Schedule")
    for stack in stacks.values():
        assert not [r for r in stack.resources if r.type.startswith("aws:sagemaker/") and "onitor" in r.type]
        assert not stack.of_type("aws:sagemaker/dataQualityJobDefinition:DataQualityJobDefinition")
    routing = staging.one("aws:sagemaker/endpoint:Endpoint").inputs["deploymentConfig"]["blueGreenUpdatePolicy"][
        "trafficRoutingConfiguration"
    ]
    assert routing["type"] == "ALL_AT_ONCE"
    assert staging.one("aws:sagemaker/model:Model").inputs["enableNetworkIsolation"] is True


def test_prod_is_locked_scaled_sampled_canaried_and_notifies(stacks: dict[str, RenderedStack]) -> None:
    prod = stacks["prod"]
    assert prod.one("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration").inputs[
        "objectLockEnabled"
    ] == ("Enabled")
    variant = endpoint_config(prod)["productionVariants"][0]
    assert variant["initialInstanceCount"] >= 2
    target = prod.one("aws:appautoscaling/target:Target").inputs
    assert target["minCapacity"] >= 2
    assert endpoint_config(prod)["dataCaptureConfig"]["initialSamplingPercentage"] < 100
    deployment = prod.one("aws:sagemaker/endpoint:Endpoint").inputs["deploymentConfig"]
    assert deployment["blueGreenUpdatePolicy"]["trafficRoutingConfiguration"]["type"] == "CANARY"
    assert deployment["autoRollbackConfiguration"]["alarms"], "prod canary must roll back on alarms"
    assert prod.one("aws:sns/topicSubscription:TopicSubscription").inputs["protocol"] == "email"


def test_every_output_is_exported_under_its_shared_name() -> None:
    stack = shipped("prod", extra={"mlinfra:sandbox": {"enabled": True}})
    assert set(stack.outputs) == set(outputs.ALL)
    assert stack.outputs[outputs.ENDPOINT_NAMES] == {"churn": "mlinfra-prod-churn"}
    assert stack.outputs[outputs.ALERT_TOPIC_ARN].startswith("arn:aws:sns:")


def _tag_support(type_token: str) -> bool:
    package, module_path, class_name = type_token.split(":")
    if package != "aws":
        return False
    module_name = module_path.split("/")[0]
    module = importlib.import_module(f"pulumi_aws.{'lambda_' if module_name == 'lambda' else module_name}")
    cls = getattr(module, class_name)
    return "tags" in inspect.signature(cls._internal_init).parameters


@pytest.mark.parametrize("stage", STAGES)
def test_every_taggable_resource_carries_the_standard_tags(stacks: dict[str, RenderedStack], stage: str) -> None:
    stack = stacks[stage]
    checked = 0
    for resource in stack.resources:
        if not resource.custom or not _tag_support(resource.type):
            continue
        tags = resource.inputs.get("tags") or {}
        for key, value in (("stage", stage), ("owner", "ml-platform"), ("managed-by", "mlinfra")):
            assert tags.get(key) == value, f"{resource.name} ({resource.type}): tag {key} is {tags.get(key)!r}"
        checked += 1
    assert checked >= 5


def test_model_scoped_resources_carry_the_model_tag(stacks: dict[str, RenderedStack]) -> None:
    for resource in stacks["prod"].children("churn-endpoint"):
        if resource.custom and _tag_support(resource.type):
            assert resource.inputs["tags"].get("model") == "churn", resource.name


def test_every_component_registers_its_outputs_exactly_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: Counter[str] = Counter()
    original = pulumi.ComponentResource.register_outputs

    def counting(self: pulumi.ComponentResource, outputs_: Any) -> None:
        calls[self._name] += 1
        original(self, outputs_)

    monkeypatch.setattr(pulumi.ComponentResource, "register_outputs", counting)
    stack = shipped("prod", extra={"mlinfra:sandbox": {"enabled": True}})
    components = {r.name for r in stack.resources if not r.custom}
    assert components == {"registry", "churn-endpoint", "monitoring", "monitoring-drift-job", "sandbox"}
    assert {name: calls[name] for name in components} == dict.fromkeys(components, 1)

    # And every ComponentResource class in the components package is among them.
    from mlinfra_infra import components

    declared = set()
    for module_info in Path(components.__file__).parent.glob("*.py"):
        module = importlib.import_module(f"mlinfra_infra.components.{module_info.stem}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, pulumi.ComponentResource) and cls.__module__ == module.__name__:
                declared.add(cls.__name__)
    rendered_types = {r.type.rsplit(":", 1)[1] for r in stack.resources if not r.custom}
    assert declared == rendered_types


def test_children_are_parented_to_their_component(stacks: dict[str, RenderedStack]) -> None:
    for stack in stacks.values():
        for resource in stack.resources:
            if resource.custom:
                assert resource.parent is not None, f"{stack.stack}: {resource.name} has no parent component"


def test_fifty_models_render() -> None:
    models = {f"model-{i:02d}": {"pinned": pin(f"model-{i:02d}", 1, "staging")} for i in range(50)}
    stack = shipped("staging", pinned=False, extra={"mlinfra:models": models})
    assert len(stack.of_type("aws:sagemaker/endpoint:Endpoint")) == 50
    names = {r.inputs["name"] for r in stack.of_type("aws:sagemaker/endpoint:Endpoint")}
    assert len(names) == 50
