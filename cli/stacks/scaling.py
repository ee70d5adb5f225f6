"""Changing the instance type of an autoscaled endpoint in one `mlinfra up`: release its scalable target first.

Application Auto Scaling refuses an UpdateEndpoint that changes the instance type of a variant registered as a
scalable target, and Pulumi cannot deregister the target before the endpoint update it depends on
(https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling-update.html). `mlinfra up` therefore compares each
autoscaled endpoint's live instance type with the stack file before it runs Pulumi; where they differ it
deregisters the target (which deletes its scaling policies) and runs `pulumi up` with a refresh: the refresh drops
the target and its policy from Pulumi's state, the endpoint update goes through, and Pulumi registers the target
and policy again from the stack file once the endpoint is in service. Until then the variant keeps its instance
count (Application Auto Scaling is suspended during an update anyway). If that `pulumi up` fails, the next one
registers the target again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlinfra.aws import aws_errors, error_code
from mlinfra_infra import naming

if TYPE_CHECKING:
    from mlinfra.aws import StageAws
    from mlinfra_infra.config import StackConfig

DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def resource_id(endpoint: str) -> str:
    """The Application Auto Scaling resource id of an endpoint's (fixed-name) variant."""
    return f"endpoint/{endpoint}/variant/{naming.VARIANT_NAME}"


def live_instance_type(sagemaker: Any, endpoint: str) -> str | None:
    """The instance type the endpoint's variant runs on now, None when there is no such endpoint."""
    try:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
        config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    except Exception as exc:
        if error_code(exc) in {"ValidationException", "ResourceNotFound"}:
            return None
        raise
    for variant in config.get("ProductionVariants", []):
        if variant.get("VariantName") == naming.VARIANT_NAME:
            return str(variant["InstanceType"]) if variant.get("InstanceType") else None
    return None


def release_for_type_changes(aws: StageAws, config: StackConfig) -> list[str]:
    """Deregister the scalable target of every autoscaled endpoint whose instance type the stack file changes.

    Returns one line per target released (empty when nothing changes type). Nothing is touched for endpoints that do
    not exist yet, are not autoscaled, or keep their type.
    """
    released: list[str] = []
    sagemaker, scaling = aws.client("sagemaker"), aws.client("application-autoscaling")
    for model, settings in config.pinned_models.items():
        if settings.mode != "realtime" or not settings.autoscaling.enabled:
            continue
        endpoint = naming.endpoint(config.project, config.stage, model)
        with aws_errors(f"reading {endpoint}'s instance type and scalable target"):
            live = live_instance_type(sagemaker, endpoint)
            if live is None or live == settings.instance_type:
                continue
            targets = scaling.describe_scalable_targets(
                ServiceNamespace="sagemaker", ResourceIds=[resource_id(endpoint)], ScalableDimension=DIMENSION
            ).get("ScalableTargets", [])
            if not targets:
                continue
        with aws_errors(f"deregistering {endpoint}'s scalable target"):
            scaling.deregister_scalable_target(
                ServiceNamespace="sagemaker", ResourceId=resource_id(endpoint), ScalableDimension=DIMENSION
            )
        released.append(
            f"{endpoint}: instance type {live} -> {settings.instance_type}; its scalable target is deregistered for "
            "the update and registered again by this `pulumi up`"
        )
    return released
