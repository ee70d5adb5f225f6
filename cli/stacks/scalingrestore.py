"""A failed `mlinfra up` gives back the scalable targets it released for an instance type change.

`mlinfra up` deregisters the scalable target of an autoscaled endpoint whose instance type changes (see
mlinfra.stacks.scaling), which also deletes its scaling policies; Pulumi registers them again after the endpoint
update. When the apply fails instead, the endpoint keeps its old type, and without this module it would stay
without autoscaling until the next successful apply. So the targets and policies are read before they are released,
and `released_for_apply` registers them again exactly as they were when the apply fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlinfra.aws import aws_errors
from mlinfra.stacks.scaling import DIMENSION, release_for_type_changes, resource_id
from mlinfra_infra import naming

if TYPE_CHECKING:
    from mlinfra.aws import StageAws
    from mlinfra_infra.config import StackConfig

NAMESPACE = "sagemaker"
# The policy fields put_scaling_policy takes back (describe_scaling_policies adds ARNs, alarms and times).
POLICY_FIELDS = (
    "PolicyName",
    "PolicyType",
    "TargetTrackingScalingPolicyConfiguration",
    "StepScalingPolicyConfiguration",
)


@dataclass(frozen=True)
class SavedTarget:
    """A scalable target as registered before `mlinfra up` touched it, with its scaling policies."""

    resource: str
    min_capacity: int
    max_capacity: int
    policies: list[dict[str, Any]] = field(default_factory=list)


def save_targets(aws: StageAws, config: StackConfig) -> list[SavedTarget]:
    """The registered targets (and policies) of the stage's autoscaled endpoints, read before anything changes."""
    resources = [
        resource_id(naming.endpoint(config.project, config.stage, model))
        for model, settings in config.pinned_models.items()
        if settings.mode == "realtime" and settings.autoscaling.enabled
    ]
    if not resources:
        return []
    client = aws.client("application-autoscaling")
    with aws_errors("reading the scalable targets before the apply"):
        targets = client.describe_scalable_targets(
            ServiceNamespace=NAMESPACE, ResourceIds=resources, ScalableDimension=DIMENSION
        ).get("ScalableTargets", [])
        saved = []
        for target in targets:
            policies = client.describe_scaling_policies(
                ServiceNamespace=NAMESPACE, ResourceId=target["ResourceId"], ScalableDimension=DIMENSION
            ).get("ScalingPolicies", [])
            saved.append(
                SavedTarget(
                    target["ResourceId"],
                    int(target["MinCapacity"]),
                    int(target["MaxCapacity"]),
                    [{k: p[k] for k in POLICY_FIELDS if k in p} for p in policies],
                )
            )
    return saved


def restore_targets(aws: StageAws, saved: list[SavedTarget]) -> list[str]:
    """Register again each saved target that is no longer registered, with its policies; one line per target."""
    if not saved:
        return []
    client = aws.client("application-autoscaling")
    lines = []
    with aws_errors("registering the released scalable targets again"):
        present = {
            t["ResourceId"]
            for t in client.describe_scalable_targets(
                ServiceNamespace=NAMESPACE, ResourceIds=[s.resource for s in saved], ScalableDimension=DIMENSION
            ).get("ScalableTargets", [])
        }
        for target in saved:
            if target.resource in present:
                continue
            client.register_scalable_target(
                ServiceNamespace=NAMESPACE,
                ResourceId=target.resource,
                ScalableDimension=DIMENSION,
                MinCapacity=target.min_capacity,
                MaxCapacity=target.max_capacity,
            )
            for policy in target.policies:
                client.put_scaling_policy(
                    ServiceNamespace=NAMESPACE, ResourceId=target.resource, ScalableDimension=DIMENSION, **policy
                )
            lines.append(
                f"{target.resource}: the apply failed, so its scalable target ({target.min_capacity}-"
                f"{target.max_capacity} instances) and {len(target.policies)} scaling polic"
                f"{'y' if len(target.policies) == 1 else 'ies'} are registered again as they were"
            )
    return lines


@contextlib.contextmanager
def released_for_apply(aws: StageAws, config: StackConfig, echo: Callable[[str], None]) -> Iterator[list[str]]:
    """Release the targets an instance type change needs released (echoing why); give them back if the body fails.

    The body is the apply: any exception it raises (a failed `pulumi up`) first restores what was released.
    """
    saved = save_targets(aws, config)
    released = release_for_type_changes(aws, config)
    for line in released:
        echo(line)
    try:
        yield released
    except BaseException:
        if released:
            for line in restore_targets(aws, saved):
                echo(line)
        raise
