"""A failed apply gives back the scalable target `mlinfra up` released for an instance type change (emulator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from mlinfra.aws import StageAws
from mlinfra.stacks.files import load_stage
from mlinfra.stacks.project import Project
from mlinfra.stacks.scaling import DIMENSION, resource_id
from mlinfra.stacks.scalingrestore import released_for_apply
from tests.builders import pin
from tests.cli.test_preview import edit_stack
from tests.cli.test_scaling import ENDPOINT, live_endpoint, targets

pytestmark = pytest.mark.emulator
POLICY = {
    "TargetValue": 200.0,
    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
    "ScaleInCooldown": 300,
    "ScaleOutCooldown": 60,
}


def policies() -> list[dict[str, Any]]:
    client = boto3.client("application-autoscaling", region_name="eu-west-1")
    return list(client.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"])


def with_policy() -> None:
    live_endpoint("ml.m5.xlarge")
    boto3.client("application-autoscaling", region_name="eu-west-1").put_scaling_policy(
        PolicyName="mlinfra-prod-churn-scaling",
        ServiceNamespace="sagemaker",
        ResourceId=resource_id(ENDPOINT),
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=POLICY,
    )


def as_aws_does() -> None:
    """Deregistering a scalable target deletes its scaling policies in AWS (DeregisterScalableTarget's API
    reference); the emulator keeps them, so the test deletes them as AWS would have."""
    client = boto3.client("application-autoscaling", region_name="eu-west-1")
    for policy in policies():
        client.delete_scaling_policy(
            PolicyName=policy["PolicyName"],
            ServiceNamespace="sagemaker",
            ResourceId=policy["ResourceId"],
            ScalableDimension=DIMENSION,
        )
    assert policies() == []


def stage_with_type(project_dir: Path, instance_type: str) -> Any:
    edit_stack(
        project_dir, "prod", "mlinfra:models", {"churn": {"pinned": pin(stage="prod"), "instanceType": instance_type}}
    )
    return load_stage(Project(project_dir), "prod").config


def test_a_failed_apply_registers_the_released_target_and_its_policy_again(project_dir: Path, aws_env: str) -> None:
    with_policy()
    config = stage_with_type(project_dir, "ml.c5.xlarge")
    lines: list[str] = []
    aws = StageAws(config, project_dir)
    with pytest.raises(RuntimeError, match="pulumi up failed"), released_for_apply(aws, config, lines.append) as out:
        assert len(out) == 1 and targets() == []
        as_aws_does()
        raise RuntimeError("pulumi up failed")
    (target,) = targets()
    assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == (resource_id(ENDPOINT), 2, 6)
    (policy,) = policies()
    assert policy["PolicyName"] == "mlinfra-prod-churn-scaling"
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 200.0
    assert lines[-1] == (
        f"{resource_id(ENDPOINT)}: the apply failed, so its scalable target (2-6 instances) and 1 scaling policy "
        "are registered again as they were"
    )


def test_a_successful_apply_leaves_the_target_to_pulumi(project_dir: Path, aws_env: str) -> None:
    with_policy()
    config = stage_with_type(project_dir, "ml.c5.xlarge")
    with released_for_apply(StageAws(config, project_dir), config, lambda line: None) as released:
        assert len(released) == 1
    assert targets() == [], "Pulumi registers it again after the endpoint update, not mlinfra"


def test_nothing_released_nothing_restored(project_dir: Path, aws_env: str) -> None:
    with_policy()
    config = stage_with_type(project_dir, "ml.m5.xlarge")  # same type: nothing to release
    aws = StageAws(config, project_dir)
    with pytest.raises(RuntimeError), released_for_apply(aws, config, lambda line: None) as released:
        assert released == []
        raise RuntimeError("pulumi up failed")
    assert len(targets()) == 1 and len(policies()) == 1


class FailingStack:
    """A stand-in for the Automation API's stack (no Pulumi engine here): records how `up` was called, then fails
    as `pulumi up` fails (CommandError)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def up(self, **kwargs: Any) -> Any:
        from pulumi import automation as auto

        self.calls.append(kwargs)
        assert targets() == [], "released before the apply"
        as_aws_does()
        raise auto.errors.CommandError(auto.CommandResult(stdout="", stderr="error: update failed", code=255))


def test_mlinfra_up_refreshes_and_gives_the_target_back_when_pulumi_up_fails(
    project_dir: Path, aws_env: str, monkeypatch: pytest.MonkeyPatch, run: Any
) -> None:
    from mlinfra.commands import deploy

    with_policy()
    stage_with_type(project_dir, "ml.c5.xlarge")
    stack = FailingStack()
    monkeypatch.setattr(deploy, "require_pulumi_cli", lambda: "pulumi")
    monkeypatch.setattr(deploy, "_select", lambda project, stage: stack)
    result = run("up", "--stack", "prod", "--yes")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: pulumi up failed for prod:") and "update failed" in result.stderr
    assert [call["refresh"] for call in stack.calls] == [True]
    assert "its scalable target is deregistered for the update" in result.stdout
    assert "the apply failed, so its scalable target (2-6 instances) and 1 scaling policy" in result.stdout
    assert len(targets()) == 1 and len(policies()) == 1
