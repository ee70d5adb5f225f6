"""AWS's own data, read from botocore's bundled files: instance-type enums and the regions of every partition.

Validation asks these instead of hand-written lists, so an instance type AWS does not offer for hosting, or a
misspelt region, fails when the stack config is loaded, with a "did you mean". The JSON is read lazily, once per
process, with botocore's data loader (which understands the compressed service models); no boto3 session and no
network. The data is as new as the installed botocore: a type or region launched after it is refused with a
message saying to upgrade botocore.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

# Shapes in botocore's service models whose enums list what an API accepts.
SAGEMAKER_HOSTING_SHAPE = "ProductionVariantInstanceType"  # CreateEndpointConfig's ProductionVariants[].InstanceType
SAGEMAKER_PROCESSING_SHAPE = "ProcessingInstanceType"  # processing and monitoring jobs
EC2_INSTANCE_SHAPE = "InstanceType"  # RunInstances' InstanceType


@functools.cache
def _loader() -> Any:
    from botocore.loaders import create_loader  # noqa: PLC0415 - read lazily: the CLI loads configs often

    return create_loader()


@functools.cache
def _enum(service: str, shape: str) -> frozenset[str]:
    model = _loader().load_service_model(service, "service-2")
    return frozenset(model["shapes"][shape]["enum"])


def sagemaker_hosting_types() -> frozenset[str]:
    """Instance types SageMaker real-time endpoints accept (botocore's ProductionVariantInstanceType enum)."""
    return _enum("sagemaker", SAGEMAKER_HOSTING_SHAPE)


def sagemaker_processing_types() -> frozenset[str]:
    """Instance types SageMaker processing and monitoring jobs accept (ProcessingInstanceType)."""
    return _enum("sagemaker", SAGEMAKER_PROCESSING_SHAPE)


def ec2_instance_types() -> frozenset[str]:
    """Instance types EC2 RunInstances accepts (botocore's InstanceType enum)."""
    return _enum("ec2", EC2_INSTANCE_SHAPE)


@functools.cache
def regions() -> dict[str, str]:
    """Every region botocore knows, mapped to its partition (aws, aws-cn, aws-us-gov, ...)."""
    data = _loader().load_data("partitions")
    found: dict[str, str] = {}
    for partition in data["partitions"]:
        for region in partition.get("regions", {}):
            found[region] = partition["id"]
    return found


def botocore_version() -> str:
    """The installed botocore's version, named in errors about data it does not have."""
    import botocore  # noqa: PLC0415 - see _loader

    return str(botocore.__version__)


def did_you_mean(value: str, choices: frozenset[str] | set[str] | list[str]) -> str:
    """A ' (did you mean X?)' suffix for the closest of `choices`, or ''."""
    close = difflib.get_close_matches(value, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_instance_type(value: str, known: frozenset[str], what: str) -> None:
    """Raise ValueError unless `value` is in `known` (one of the enums above), suggesting the closest one."""
    if value not in known:
        hint = f" (did you mean {'ml.' + value!r}?)" if f"ml.{value}" in known else did_you_mean(value, known)
        raise ValueError(
            f"{value!r} is not an instance type {what} accepts{hint} "
            f"(from botocore {botocore_version()}'s service model; upgrade botocore if the type is new)"
        )


def check_region(value: str) -> None:
    """Raise ValueError unless `value` is a region of some AWS partition, suggesting the closest one."""
    known = regions()
    if value not in known:
        raise ValueError(
            f"{value!r} is not an AWS region{did_you_mean(value, set(known))} "
            f"(from botocore {botocore_version()}'s partition data; upgrade botocore if the region is new)"
        )


def partition_of(region: str) -> str:
    """The partition a region belongs to (`aws`, `aws-cn`, `aws-us-gov`, ...)."""
    return regions()[region]
