"""After a refresh, the next apply replaces no protected or fixed-name resource.

`pulumi refresh` (and `mlinfra up`'s refresh after releasing a scaling target) replaces each resource's state with
what AWS reports. A force-new input the program sets to a value AWS reports differently then plans a replacement:
for a protected resource the apply fails, for a fixed-name one the new resource collides with the old. This test
renders every stack, builds the state a refresh reads back after an apply (the inputs, overridden by what AWS
reports: Object Lock on where a BucketObjectLockConfiguration enables it, and the provider's defaults), and diffs the
next render against it with the force-new rules of mlinfra.stacks.forcenew (read from the provider's source and the
installed pulumi-aws SDK). An input the program leaves unset is Optional+Computed there: no diff.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlinfra.stacks.files import raw_config
from mlinfra.stacks.forcenew import replaces
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import RenderedResource, RenderedStack, render
from tests.builders import merge, pin

REPO = Project(Path(__file__).resolve().parents[2])
LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
NAME_INPUTS = ("name", "bucket", "alarmName", "dashboardName", "modelPackageGroupName", "domain", "repository")

Refresh = Callable[[RenderedResource, RenderedStack], dict[str, Any]]


def _bucket(resource: RenderedResource, stack: RenderedStack) -> dict[str, Any]:
    # S3 reports Object Lock as enabled once a BucketObjectLockConfiguration turned it on (GetObjectLockConfiguration).
    locked = any(lock.inputs.get("bucket") == resource.inputs.get("bucket") for lock in stack.of_type(LOCK))
    return {"objectLockEnabled": locked, "forceDestroy": resource.inputs.get("forceDestroy", False)}


# What a refresh reads back for inputs the program may set, per type (AWS's reported value or the provider's default).
REFRESH: dict[str, Refresh] = {
    "aws:s3/bucket:Bucket": _bucket,
    "aws:kms/key:Key": lambda r, s: {"customerMasterKeySpec": "SYMMETRIC_DEFAULT", "keyUsage": "ENCRYPT_DECRYPT",
                                     "multiRegion": False},
    "aws:iam/role:Role": lambda r, s: {"path": "/"},
    "aws:iam/policy:Policy": lambda r, s: {"path": "/"},
    "aws:iam/instanceProfile:InstanceProfile": lambda r, s: {"path": "/"},
    "aws:cloudwatch/logGroup:LogGroup": lambda r, s: {"logGroupClass": "STANDARD"},
    "aws:sns/topic:Topic": lambda r, s: {"fifoTopic": False},
    "aws:lambda/function:Function": lambda r, s: {"packageType": "Zip"},
    "aws:cloudwatch/eventRule:EventRule": lambda r, s: {"eventBusName": "default"},
    "aws:scheduler/schedule:Schedule": lambda r, s: {"groupName": "default"},
    "aws:ec2/instance:Instance": lambda r, s: {"tenancy": "default", "associatePublicIpAddress": False},
}  # fmt: skip


def _paths(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _paths(sub, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, value


def refreshed_state(stack: RenderedStack) -> dict[str, dict[str, Any]]:
    """Each resource's state after an apply and a refresh: its inputs with what AWS reports for the listed fields."""
    state = {}
    for resource in stack.resources:
        reads = REFRESH.get(resource.type)
        state[resource.name] = {**resource.inputs, **(reads(resource, stack) if reads else {})}
    return state


def replacements(desired: RenderedStack, state: dict[str, dict[str, Any]]) -> list[tuple[RenderedResource, str]]:
    """(resource, force-new path) for each input the next apply would change and that replaces the resource."""
    found = []
    for resource in desired.resources:
        if not resource.custom or resource.name not in state:
            continue
        before = dict(_paths(state[resource.name]))
        for path, value in _paths(resource.inputs):
            if path in before and before[path] != value and replaces(resource.type, path):
                found.append((resource, path))
    return found


def _fixed_name(resource: RenderedResource) -> bool:
    return any(isinstance(resource.inputs.get(key), str) for key in NAME_INPUTS)


def rendered(stage: str, overrides: dict[str, Any] | None = None) -> RenderedStack:
    raw = merge(raw_config(REPO, stage), {"mlinfra:models": {"churn": {"pinned": pin(stage=stage)}}})
    raw = merge(raw, overrides or {})
    return render(raw, project=REPO.name, stage=stage, source=f"stacks/Pulumi.{stage}.yaml")


CASES = {
    "sandbox": None,
    "dev": None,
    "staging": None,
    "prod": None,
    "sandbox-with-object-lock": ("sandbox", {"mlinfra:registry": {"objectLock": {"mode": "GOVERNANCE", "days": 30}}}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_no_protected_or_fixed_name_resource_is_replaced_after_a_refresh(case: str) -> None:
    stage, overrides = CASES[case] or (case, None)
    stack = rendered(stage, overrides)
    state = refreshed_state(stack)
    again = rendered(stage, overrides)
    hurt = [
        f"{r.name} ({r.type}): {path} is {state[r.name].get(path)!r} after a refresh, the program sets "
        f"{r.inputs.get(path)!r}"
        for r, path in replacements(again, state)
        if r.protect or _fixed_name(r)
    ]
    assert hurt == []


def test_prod_locks_its_registry_and_protects_it() -> None:
    # The case above is meaningful only if prod renders Object Lock and a protected, fixed-name bucket.
    stack = rendered("prod")
    bucket = next(b for b in stack.of_type("aws:s3/bucket:Bucket") if b.inputs.get("bucket"))
    assert bucket.protect
    assert stack.of_type(LOCK)
    assert refreshed_state(stack)[bucket.name]["objectLockEnabled"] is True


def test_the_check_catches_an_explicit_object_lock_false() -> None:
    # Today's registry component before the fix set objectLockEnabled=False on the locked, protected bucket.
    stack = rendered("prod")
    state = refreshed_state(stack)
    bucket = next(b for b in stack.resources if b.type == "aws:s3/bucket:Bucket" and b.inputs.get("bucket"))
    broken = RenderedResource(
        bucket.type, bucket.name, bucket.parent, {**bucket.inputs, "objectLockEnabled": False}, True, protect=True
    )
    desired = RenderedStack(stack.stack, [broken])
    assert [(r.name, path) for r, path in replacements(desired, state)] == [(bucket.name, "objectLockEnabled")]
