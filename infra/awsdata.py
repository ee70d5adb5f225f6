"""AWS's own data, read from botocore's bundled files: instance-type enums and the regions of every partition.

Validation asks these instead of hand-written lists, so an instance type AWS does not offer for hosting, or a
misspelt region, fails when the stack config is loaded, with a "did you mean". The JSON files are read lazily,
once per process, straight from botocore's `data/` folder (newest API version, gzip or plain, as botocore's own
loader finds them) without importing botocore, creating a session or touching the network: about 70 ms for the
SageMaker model and 100 ms for EC2's, which only stacks with the VM read. The data is as new as the installed
botocore: a type or region launched after it is refused with a message saying to upgrade botocore.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import importlib.metadata
import importlib.util
import json
from pathlib import Path
from typing import Any

# Shapes in botocore's service models whose enums list what an API accepts.
SAGEMAKER_HOSTING_SHAPE = "ProductionVariantInstanceType"  # CreateEndpointConfig's ProductionVariants[].InstanceType
SAGEMAKER_PROCESSING_SHAPE = "ProcessingInstanceType"  # processing and monitoring jobs
EC2_INSTANCE_SHAPE = "InstanceType"  # RunInstances' InstanceType


@functools.cache
def _data_dir() -> Path:
    spec = importlib.util.find_spec("botocore")
    if spec is None or spec.origin is None:
        raise ValueError("botocore is not installed; it is a dependency of mlinfra (pip install mlinfra)")
    return Path(spec.origin).parent / "data"


def _read_json(path: Path) -> Any:
    """A botocore data file, compressed (`.json.gz`, as botocore ships most service models) or not."""
    gz = path.with_name(path.name + ".gz")
    if gz.exists():
        return json.loads(gzip.decompress(gz.read_bytes()))
    return json.loads(path.read_text())


@functools.cache
def _enum(service: str, shape: str) -> frozenset[str]:
    # API versions are dated directories; botocore uses the newest, and so does this.
    newest = max(p.name for p in (_data_dir() / service).iterdir() if p.is_dir())
    model = _read_json(_data_dir() / service / newest / "service-2.json")
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
    data = _read_json(_data_dir() / "partitions.json")
    found: dict[str, str] = {}
    for partition in data["partitions"]:
        for region in partition.get("regions", {}):
            found[region] = partition["id"]
    return found


def botocore_version() -> str:
    """The installed botocore's version, named in errors about data it does not have."""
    return importlib.metadata.version("botocore")


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
