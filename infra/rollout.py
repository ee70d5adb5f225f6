"""How an endpoint update unfolds in time and capacity: alarm detection, bake periods, canary sizes, provider limits.

Pure arithmetic shared by config validation (which refuses settings under which a rollback cannot fire, or a
deployment cannot finish while `pulumi up` waits) and by the ModelEndpoint component (which sizes canaries in
instances). The numbers come from the services' documented behaviour:

- CloudWatch: an alarm goes to ALARM once `datapointsToAlarm` of the last `evaluationPeriods` periods breach. A
  period's datapoint is evaluated only after the period ends, and SageMaker publishes endpoint invocation metrics
  once a minute, so detection takes `datapointsToAlarm` periods plus up to one period of alignment plus the
  publishing delay (`DETECTION_DELAY_SECONDS`).
- SageMaker blue/green deployments watch the auto-rollback alarms during every baking period: after each traffic
  shift (`WaitIntervalInSeconds`) and after the last one (`TerminationWaitInSeconds`, the final bake). An alarm that
  needs longer than a bake to fire cannot roll that step back.
  https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-blue-green.html
- SageMaker's CapacitySize: a canary must be at most 50% of the new fleet, a linear step 10-50% (botocore's
  TrafficRoutingConfig documentation). A fleet of one instance therefore cannot be canaried.
- pulumi-aws (the Terraform provider underneath) waits 60 minutes for an endpoint to reach InService after
  UpdateEndpoint and fails on any other settled status, RollingBack included. SageMaker's own deployment timeout
  must end well inside that wait, or `pulumi up` gives up while SageMaker is still deploying.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol


class _StageConfig(Protocol):
    """What `update_hazards` reads of a stage's config (mlinfra_infra.config.StackConfig), without importing it."""

    @property
    def stage(self) -> str: ...

    @property
    def pinned_models(self) -> Mapping[str, Any]: ...


# SageMaker publishes Invocation5XXErrors and ModelLatency at one-minute resolution; CloudWatch evaluates a period
# after it closes. Two minutes covers both for the one-minute periods used here.
DETECTION_DELAY_SECONDS = 120
# How long pulumi-aws waits for UpdateEndpoint to settle (botocore's EndpointInService waiter: 120 x 30 s).
PROVIDER_WAIT_MINUTES = 60
# SageMaker's deployment must time out (and start rolling back) this long before the provider stops waiting.
PROVIDER_WAIT_MARGIN_MINUTES = 5
MAX_DEPLOYMENT_TIMEOUT_MINUTES = PROVIDER_WAIT_MINUTES - PROVIDER_WAIT_MARGIN_MINUTES
# Launching the new fleet and loading the model before traffic shifts; a timeout with less headroom than this over
# the bake times rolls back healthy deployments.
PROVISIONING_MINUTES = 10
# SageMaker's CapacitySize limits relative to the new fleet (percent).
MAX_CANARY_PERCENT = 50
MIN_LINEAR_PERCENT = 10
MAX_LINEAR_PERCENT = 50


def detection_seconds(period_seconds: int, datapoints_to_alarm: int) -> int:
    """Worst-case time from the start of a breach until the alarm is in ALARM."""
    return (datapoints_to_alarm + 1) * period_seconds + DETECTION_DELAY_SECONDS


def bake_steps(strategy: str, traffic_percent: int, fleet: int | None) -> int:
    """How many bakes of `waitMinutes` a deployment makes before its final bake (`terminationWaitMinutes`).

    All-at-once and canary bake once (after the shift, after the canary); linear once per step. `fleet` is None for
    serverless variants, whose steps are percentages.
    """
    if strategy != "linear":
        return 1
    if fleet is None:
        return math.ceil(100 / traffic_percent)
    return math.ceil(fleet / step_instances(strategy, traffic_percent, fleet))


def step_instances(strategy: str, traffic_percent: int, fleet: int) -> int:
    """Instances in a canary or a linear step: `traffic_percent` of the fleet, at least one.

    A canary rounds down (it must stay a minority); a linear step rounds up (it must reach 10% of the fleet).
    """
    exact = fleet * traffic_percent / 100
    count = math.ceil(exact) if strategy == "linear" else math.floor(exact)
    return max(1, count)


def check_step(strategy: str, traffic_percent: int, fleet: int) -> str | None:
    """Why SageMaker would refuse this canary or linear step on `fleet` instances, or None when it is valid."""
    if strategy == "all-at-once":
        return None
    count = step_instances(strategy, traffic_percent, fleet)
    if 100 * count > MAX_CANARY_PERCENT * fleet:
        return (
            f"a {strategy} step of {count} instance(s) is more than 50% of a fleet of {fleet}; SageMaker needs a "
            f"fleet of at least {2 * count} (raise instanceCount or autoscaling.maxCapacity) or use all-at-once"
        )
    if strategy == "linear" and 100 * count < MIN_LINEAR_PERCENT * fleet:
        return f"a linear step of {count} instance(s) is under 10% of a fleet of {fleet}; raise trafficPercent"
    return None


def update_hazards(before: _StageConfig, after: _StageConfig) -> list[str]:
    """Changes between two versions of one stage's config that a single `pulumi up` cannot apply, one line each.

    Application Auto Scaling refuses an UpdateEndpoint that changes the instance type of a variant registered as a
    scalable target, and Pulumi can only deregister the target after the endpoint update it depends on. `mlinfra up`
    releases the target before running Pulumi (mlinfra.stacks.scaling); a plain `pulumi up` needs two applies:
    autoscaling off (the target is deregistered), then the new type with autoscaling on (the endpoint updates first,
    then the target is registered again).
    https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling-update.html
    """
    problems: list[str] = []
    for model, new in after.pinned_models.items():
        old = before.pinned_models.get(model)
        if old is None or old.mode != "realtime" or new.mode != "realtime":
            continue
        if old.autoscaling.enabled and new.autoscaling.enabled and old.instance_type != new.instance_type:
            problems.append(
                f"stacks/Pulumi.{after.stage}.yaml: mlinfra:models.{model}.instanceType: {old.instance_type} -> "
                f"{new.instance_type} on an autoscaled endpoint fails under a plain `pulumi up` (the variant is a "
                "scalable target): apply it with `mlinfra up`, which releases the target first, or in two steps "
                "(autoscaling.enabled: false, then the new type with autoscaling on)"
            )
    return problems
