"""Promotion gates: what a version must satisfy to enter a stage, each evaluated to a result with its reason."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlinfra.aws import aws_errors
from mlinfra_infra import naming

if TYPE_CHECKING:
    from mlinfra.records import Stored
    from mlinfra.registry.store import StageRegistry
    from mlinfra_infra.config import GateSettings


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict and why."""

    gate: str
    passed: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        """As stored in audit records and printed by --json."""
        return asdict(self)


def source_stage_gate(gates: GateSettings, expected: str | None, source: str) -> GateResult:
    """The version must come from the stage the target requires (its fromStage, else the preceding stage)."""
    required = gates.from_stage or expected
    if required is None or source == required:
        return GateResult("source-stage", True, f"promoted from {source}")
    return GateResult("source-stage", False, f"promotes from {source}, but this stage requires {required}")


def approval_gate(
    gates: GateSettings, package: dict[str, Any] | None, source: str, version: int, *, model: str, target: str
) -> GateResult:
    """When required, the version's package in the source stage must be Approved (`mlinfra approve`)."""
    if not gates.require_approval:
        return GateResult("approval", True, "not required")
    status = (package or {}).get("ModelApprovalStatus", "missing")
    if status == "Approved":
        return GateResult("approval", True, f"approved in {source}")
    from mlinfra.aws import mlinfra_command

    approve = mlinfra_command(f'approve {model} --version {version} --stack {target} --reason "..."')
    return GateResult("approval", False, f"v{version} is {status} in {source}; run `{approve}`")


def metric_gates(gates: GateSettings, metrics: dict[str, Any]) -> list[GateResult]:
    """Each configured metric threshold against the metrics registered with the version."""
    results = []
    for name, bound in sorted(gates.metrics.items()):
        value = metrics.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            results.append(GateResult(f"metric:{name}", False, f"{name} was not registered with this version"))
            continue
        if bound.min is not None and value < bound.min:
            reason = f"{name} = {value:g} is below the minimum {bound.min:g}"
            results.append(GateResult(f"metric:{name}", False, reason))
        elif bound.max is not None and value > bound.max:
            reason = f"{name} = {value:g} is above the maximum {bound.max:g}"
            results.append(GateResult(f"metric:{name}", False, reason))
        else:
            results.append(GateResult(f"metric:{name}", True, f"{name} = {value:g}"))
    return results


def source_alarm_gate(gates: GateSettings, source: StageRegistry, model: str) -> GateResult:
    """No alarm of the model in the source stage may be in ALARM (alarms that do not exist there do not count)."""
    if not gates.block_on_source_alarm:
        return GateResult("source-alarms", True, "not checked")
    names = [naming.alarm(source.config.project, source.stage, model, kind) for kind in naming.ALARM_KINDS]
    with aws_errors(f"reading {model}'s alarms in {source.stage}"):
        alarms = source.aws.client("cloudwatch").describe_alarms(AlarmNames=names)
    firing = sorted(
        alarm["AlarmName"]
        for alarm in [*alarms.get("MetricAlarms", []), *alarms.get("CompositeAlarms", [])]
        if alarm.get("StateValue") == "ALARM"
    )
    if firing:
        return GateResult("source-alarms", False, f"in ALARM in {source.stage}: {', '.join(firing)}")
    return GateResult("source-alarms", True, f"no alarm firing in {source.stage}")


def soak_gate(gates: GateSettings, pointer: Stored | None, source: str, version: int) -> GateResult:
    """The version must have been deployed in the source stage for at least minSoakHours.

    The clock starts at the first recorded deployment of the version there (the apply's `mlinfra
    record-deployment`, or `mlinfra up`), not at its promotion: a merged-but-unapplied version has not soaked.
    """
    from mlinfra.records import deployed_of, undeployed_of

    hours = gates.min_soak_hours
    if hours <= 0:
        return GateResult("soak", True, "not required")
    deployed = deployed_of(pointer)
    undeployed = undeployed_of(pointer)
    if deployed is None and undeployed is not None and undeployed.get("version") == version:
        commit = f" by {str(undeployed['commit'])[:12]}" if undeployed.get("commit") else ""
        return GateResult(
            "soak",
            False,
            f"v{version} was undeployed from {source} at {undeployed['time']}{commit} (its stack file no longer pins "
            "it): nothing has soaked there",
        )
    if deployed is None or deployed.version != version:
        running = f"v{deployed.version}" if deployed else "nothing"
        return GateResult(
            "soak",
            False,
            f"{source} has deployed {running}, not v{version}: the soak counts from the recorded deployment "
            f"(the apply runs `mlinfra record-deployment --stack {source}`)",
        )
    soaked = deployed.hours()
    if soaked < hours:
        return GateResult(
            "soak", False, f"v{version} has been deployed {soaked:.1f} h in {source}; {hours:g} h required"
        )
    return GateResult("soak", True, f"deployed {soaked:.1f} h in {source}")
