"""Instance-type change on an autoscaled endpoint: its scalable target is released before `pulumi up` (emulator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from mlinfra.aws import StageAws
from mlinfra.stacks.files import load_stage
from mlinfra.stacks.project import Project
from mlinfra.stacks.scaling import DIMENSION, release_for_type_changes, resource_id
from tests.builders import IMAGE, pin
from tests.cli.test_preview import edit_stack

ENDPOINT = "mlinfra-prod-churn"


def live_endpoint(instance_type: str) -> None:
    """What `pulumi up` left in the account: the endpoint on `instance_type`, registered for autoscaling."""
    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    sagemaker.create_model(
        ModelName="mlinfra-prod-churn-m-1",
        PrimaryContainer={"Image": IMAGE},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="mlinfra-prod-churn-c-1",
        ProductionVariants=[
            {
                "VariantName": "primary",
                "ModelName": "mlinfra-prod-churn-m-1",
                "InitialInstanceCount": 6,
                "InstanceType": instance_type,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="mlinfra-prod-churn-c-1")
    boto3.client("application-autoscaling", region_name="eu-west-1").register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource_id(ENDPOINT),
        ScalableDimension=DIMENSION,
        MinCapacity=2,
        MaxCapacity=6,
    )


def targets() -> list[dict[str, Any]]:
    client = boto3.client("application-autoscaling", region_name="eu-west-1")
    return list(client.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"])


def release(project_dir: Path, instance_type: str) -> list[str]:
    edit_stack(
        project_dir, "prod", "mlinfra:models", {"churn": {"pinned": pin(stage="prod"), "instanceType": instance_type}}
    )
    stage = load_stage(Project(project_dir), "prod")
    return release_for_type_changes(StageAws(stage.config, project_dir), stage.config)


@pytest.mark.emulator
def test_a_type_change_releases_the_scalable_target(project_dir: Path, aws_env: str) -> None:
    live_endpoint("ml.m5.xlarge")
    assert [t["ResourceId"] for t in targets()] == [resource_id(ENDPOINT)]
    lines = release(project_dir, "ml.c5.xlarge")
    assert lines == [
        "mlinfra-prod-churn: instance type ml.m5.xlarge -> ml.c5.xlarge; its scalable target is deregistered for the "
        "update and registered again by this `pulumi up`"
    ]
    assert targets() == []


@pytest.mark.emulator
def test_the_same_type_or_no_endpoint_touches_nothing(project_dir: Path, aws_env: str) -> None:
    assert release(project_dir, "ml.c5.xlarge") == []  # no endpoint yet: the first `pulumi up` creates it
    live_endpoint("ml.m5.xlarge")
    assert release(project_dir, "ml.m5.xlarge") == []
    assert [t["ResourceId"] for t in targets()] == [resource_id(ENDPOINT)]
