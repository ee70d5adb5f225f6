"""No config change replaces a fixed-name resource: its force-new inputs stay put unless its name changes too.

pulumi-aws replaces a resource when a force-new input changes, creating the new one before deleting the old. For a
resource with a fixed name (the endpoint, alarms, topic, bucket, package groups, ...) the new one collides with the
old. The force-new inputs of every such type are in tests/infra/data/force_new.json (read from the provider's
source: the installed wheel bundles no schema). Each stage is rendered under many config changes; for every
fixed-name resource, the force-new inputs must be identical in every variant that keeps its name.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from mlinfra.stacks.files import raw_config
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import RenderedStack, render
from tests.builders import IMAGE, merge, pin

REPO = Project(Path(__file__).resolve().parents[2])
SCHEMA = json.loads((Path(__file__).parent / "data" / "force_new.json").read_text())
FORCE_NEW: dict[str, dict[str, Any]] = SCHEMA["types"]
# Inputs that carry a resource's own name; a resource without any of them is auto-named by Pulumi. (`bucket` or
# `domain` on other types refer to another resource.)
NAME_INPUTS = ("name", "alarmName", "dashboardName", "modelPackageGroupName")
OWN_NAME_BY_TYPE = {
    "aws:s3/bucket:Bucket": "bucket",
    "aws:codeartifact/domain:Domain": "domain",
    "aws:codeartifact/repository:Repository": "repository",
}


def dig(inputs: dict[str, Any], path: str) -> Any:
    value: Any = inputs
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def other_pin(stage: str) -> dict[str, Any]:
    """A new version: new digest, artifact and image tag (what every promotion changes)."""
    new = pin(version=7, stage=stage)
    return {**new, "image": IMAGE.replace(":1.2-1-cpu-py3", ":1.4-2-cpu-py3")}


# Config changes an operator makes in a stage's life; each variant changes many knobs at once.
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "prod": [
        {},
        {"mlinfra:models": {"churn": {"pinned": other_pin("prod")}}},
        {
            "mlinfra:modelDefaults": {
                "instanceType": "ml.c5.2xlarge",
                "autoscaling": {"minCapacity": 3, "maxCapacity": 8, "targetInvocationsPerInstance": 50},
                "instanceCount": 3,
                "capture": {"samplingPercent": 5},
                "deployment": {"strategy": "linear", "trafficPercent": 25, "waitMinutes": 6, "timeoutMinutes": 55},
                "alarms": {"errors5xx": 3, "latencyP99Ms": 900, "evaluationPeriods": 5, "datapointsToAlarm": 3},
            }
        },
        {
            "mlinfra:modelDefaults": {
                "autoscaling": {"enabled": False},
                "deployment": {"strategy": "all-at-once", "terminationWaitMinutes": 15},
            }
        },
        {
            "mlinfra:registry": {
                "objectLock": None,
                "protect": False,
                "captureRetentionDays": 7,
                "readerRoleArns": ["arn:aws:iam::444444444444:role/x"],
            }
        },
        {"mlinfra:registry": {"objectLock": {"mode": "COMPLIANCE", "days": 3650}, "accessLogDays": 30}},
        {"mlinfra:monitoring": {"drift": False, "schedule": "daily", "notifications": []}},
        {"mlinfra:models": {"churn": {"networkIsolation": False, "capture": {"enabled": False}}}},
    ],
    "dev": [
        {},
        {"mlinfra:models": {"churn": {"pinned": other_pin("dev")}}},
        {"mlinfra:modelDefaults": {"serverlessMemoryMb": 6144, "serverlessMaxConcurrency": 50}},
        {"mlinfra:modelDefaults": {"mode": "realtime", "networkIsolation": True}},
        {"mlinfra:monitoring": {"enabled": True, "drift": True}},
    ],
    "sandbox": [
        {},
        {
            "mlinfra:sandbox": {
                "instanceType": "m7i.2xlarge",
                "rootVolumeGb": 200,
                "stopSchedule": "cron(0 21 ? * * *)",
                "startSchedule": None,
                "sessionLogDays": 90,
                "mlinfraWheel": {"key": "code/wheels/mlinfra-0.2.0-py3-none-any.whl", "sha256": "cd" * 32},
                "network": {"cidr": "10.7.0.0/16"},
            }
        },
        {"mlinfra:registry": {"objectLock": {"mode": "GOVERNANCE", "days": 30}, "protect": True}},
    ],
}


def rendered(stage: str, variant: dict[str, Any]) -> RenderedStack:
    raw = merge(raw_config(REPO, stage), {"mlinfra:models": {"churn": {"pinned": pin(stage=stage)}}})
    raw = merge(raw, variant)
    # merge() cannot delete: None means "remove this key".
    for key, block in variant.items():
        if isinstance(block, dict):
            for sub, value in block.items():
                if value is None:
                    raw[key].pop(sub, None)
    return render(raw, project=REPO.name, stage=stage, source=f"stacks/Pulumi.{stage}.yaml")


@pytest.fixture(scope="module")
def renders() -> dict[str, list[RenderedStack]]:
    return {stage: [rendered(stage, v) for v in variants] for stage, variants in VARIANTS.items()}


@pytest.mark.parametrize("stage", list(VARIANTS))
def test_no_change_replaces_a_fixed_name_resource(renders: dict[str, list[RenderedStack]], stage: str) -> None:
    seen: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for stack in renders[stage]:
        for resource in stack.resources:
            spec = FORCE_NEW.get(resource.type)
            if spec is None or resource.inputs.get(spec["name"]) is None:
                continue
            values = seen[(resource.type, str(resource.inputs[spec["name"]]))]
            for path in spec["forceNew"]:
                values[path].add(json.dumps(dig(resource.inputs, path), sort_keys=True))
    assert seen, f"{stage}: no fixed-name resource rendered"
    for (type_token, name), values in seen.items():
        for path, distinct in values.items():
            assert len(distinct) == 1, (
                f"{stage}: {type_token} {name!r}: changing config changes force-new input {path} "
                f"({sorted(distinct)}); the replacement would collide with the fixed name"
            )


@pytest.mark.parametrize("stage", list(VARIANTS))
def test_every_fixed_name_type_has_its_force_new_inputs_listed(
    renders: dict[str, list[RenderedStack]], stage: str
) -> None:
    for stack in renders[stage]:
        for resource in stack.resources:
            if not resource.custom or resource.type in FORCE_NEW:
                continue
            keys = (*NAME_INPUTS, OWN_NAME_BY_TYPE.get(resource.type, "name"))
            fixed = [key for key in keys if isinstance(resource.inputs.get(key), str)]
            # Auto-named types only: a type declared with a fixed name must be listed with its force-new inputs.
            assert not fixed, (
                f"{stage}: {resource.name} ({resource.type}) has a fixed {fixed[0]}; add its force-new inputs to "
                "tests/infra/data/force_new.json"
            )


def test_the_endpoints_rollback_alarms_are_derived_from_its_name(renders: dict[str, list[RenderedStack]]) -> None:
    # The one nested force-new input: auto-rollback alarms are named from project, stage and model, like the endpoint.
    for stack in renders["prod"]:
        endpoint = stack.one("aws:sagemaker/endpoint:Endpoint").inputs
        alarms = [a["alarmName"] for a in endpoint["deploymentConfig"]["autoRollbackConfiguration"]["alarms"]]
        assert alarms == [f"{endpoint['name']}-5xx", f"{endpoint['name']}-latency-p99"]


def test_the_check_catches_a_colliding_replacement() -> None:
    # Had the bucket's objectLockEnabled followed the objectLock setting (as before), variants would differ.
    spec = FORCE_NEW["aws:s3/bucket:Bucket"]
    before = {"bucket": "mlinfra-prod-1-eu-west-1", "objectLockEnabled": False}
    after = {"bucket": "mlinfra-prod-1-eu-west-1", "objectLockEnabled": True}
    changed = [p for p in spec["forceNew"] if dig(before, p) != dig(after, p)]
    assert changed == ["objectLockEnabled"]
