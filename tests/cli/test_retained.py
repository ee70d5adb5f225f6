"""The clean-up after an apply (mlinfra.stacks.retained) on the emulator: Models and EndpointConfigurations that Pulumi
retained are deleted only when no endpoint references them and the stack no longer declares them."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from mlinfra.stacks.retained import clean_up, declared_names

ROLE = "arn:aws:iam::123456789012:role/endpoint"
IMAGE = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/sklearn-inference:1.2-1-cpu-py3"


def _pair(sm: Any, model: str, suffix: str) -> tuple[str, str]:
    name = f"mlinfra-prod-{model}-m-{suffix}"
    config = f"mlinfra-prod-{model}-c-{suffix}"
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {"VariantName": "primary", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.xlarge"}
        ],
    )
    return name, config


@pytest.mark.emulator
@pytest.mark.usefixtures("aws_env")
def test_only_unreferenced_retained_pairs_are_deleted() -> None:
    sm = boto3.client("sagemaker")
    live_model, live_config = _pair(sm, "churn", "aaaaaaa")  # the rolled-back endpoint still runs on these
    new_model, new_config = _pair(sm, "churn", "bbbbbbb")  # what the stack declares now
    old_model, old_config = _pair(sm, "churn", "ccccccc")  # an earlier version: nothing uses it
    other_model, other_config = _pair(sm, "fraud", "ddddddd")  # fraud's only pair; its endpoint runs it
    foreign = "someone-elses-model"
    sm.create_model(ModelName=foreign, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint(EndpointName="mlinfra-prod-churn", EndpointConfigName=live_config)
    sm.create_endpoint(EndpointName="mlinfra-prod-fraud", EndpointConfigName=other_config)

    outputs = {"endpointResources": {"churn": {"model": new_model, "config": new_config}}}
    result = clean_up(sm, "mlinfra", "prod", declared_names(outputs))

    assert result.deleted_configs == [old_config]
    assert result.deleted_models == [old_model]
    configs = {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]}
    models = {m["ModelName"] for m in sm.list_models()["Models"]}
    assert configs == {live_config, new_config, other_config}
    assert models == {live_model, new_model, other_model, foreign}
    assert result.lines() == [
        f"deleted retained SageMaker resource no endpoint references: {old_config}",
        f"deleted retained SageMaker resource no endpoint references: {old_model}",
    ]
    # Run again: nothing left to delete.
    assert clean_up(sm, "mlinfra", "prod", declared_names(outputs)).lines() == []


def test_nothing_is_deleted_while_an_endpoint_is_updating() -> None:
    # botocore's Stubber (responses validated against the model): the emulator finishes an update at once.
    from botocore.stub import Stubber

    sm = boto3.client("sagemaker", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(sm)
    now = "2026-12-07T05:00:00Z"
    stubber.add_response(
        "list_endpoints",
        {"Endpoints": [{"EndpointName": "mlinfra-prod-churn", "EndpointArn": "arn:aws:sagemaker:eu-west-1:1:endpoint/x",
                        "CreationTime": now, "LastModifiedTime": now, "EndpointStatus": "Updating"}]},
    )  # fmt: skip
    stubber.add_response(
        "describe_endpoint",
        {"EndpointName": "mlinfra-prod-churn", "EndpointArn": "arn:aws:sagemaker:eu-west-1:1:endpoint/x",
         "EndpointConfigName": "mlinfra-prod-churn-c-aaaaaaa", "EndpointStatus": "Updating",
         "CreationTime": now, "LastModifiedTime": now},
        {"EndpointName": "mlinfra-prod-churn"},
    )  # fmt: skip
    with stubber:
        result = clean_up(sm, "mlinfra", "prod", set())
    assert result.skipped == "endpoint mlinfra-prod-churn is Updating"
    assert result.deleted_configs == [] and result.deleted_models == []
    assert result.lines() == [
        "retained SageMaker models and configs: not cleaned up (endpoint mlinfra-prod-churn is Updating)"
    ]
