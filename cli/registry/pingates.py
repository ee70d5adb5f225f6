"""Gates where the pin is applied: `mlinfra check` re-evaluates the promotion gates of every new pin in a stage.

`mlinfra promote` evaluates a stage's gates on the analyst's machine, but what deploys is the pin that reaches main:
a pull request can wait while the source stage regresses, and a pin can be written by hand. So before CI plans an
apply (stacks.yml's plan job runs `mlinfra check --stack S`), every pin of the committed stack file that differs
from what the stage pointer records is checked again, with the gates of the committed config:

- registry: the pinned version and digest are in this stage's registry (a promotion copied them);
- source stage: the version comes from the stage the gates name (fromStage, else the preceding stage);
- approval, metrics, source alarms, soak (counted from the recorded deployment in the source stage), as `promote`.

A pin of a version this stage ran before is a rollback: its gates are skipped, as `mlinfra rollback` skips them. A
promotion forced with `--force --reason` (its audit record, for this version and digest) is honoured. Any failed
gate refuses the stage (exit 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlinfra.aws import aws_errors
from mlinfra.registry import gates as gate_checks
from mlinfra.registry.gates import GateResult
from mlinfra.registry.store import MissingRegistryError

if TYPE_CHECKING:
    from mlinfra.registry.protocol import Context
    from mlinfra.registry.store import StageRegistry
    from mlinfra.stacks.project import Project
    from mlinfra_infra.config import ModelConfig, StackConfig


@dataclass
class PinCheck:
    """One pinned model of a stage: whether its pin is new (differs from the pointer), and its gates' verdicts."""

    model: str
    version: int
    digest: str
    pointer: int | None
    checked: bool  # False: the pin is what the pointer records (nothing new to apply)
    gates: list[GateResult] = field(default_factory=list)
    note: str | None = None

    @property
    def failed(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]

    def to_json(self) -> dict[str, Any]:
        """As `mlinfra check --json` prints it under "pins"."""
        return {
            "model": self.model,
            "version": self.version,
            "digest": self.digest,
            "pointer": self.pointer,
            "checked": self.checked,
            "passed": not self.failed,
            "gates": [g.to_json() for g in self.gates],
            "note": self.note,
        }


def recheck(project: Project, stage: str) -> list[PinCheck]:
    """The gates of every pin of `stage` (as its stack file holds it now) that the stage pointer does not record."""
    from mlinfra.registry.protocol import Context

    ctx = Context.load(project, stage)
    config = ctx.stages[stage].config
    if stage == config.entry_stage or not config.pinned_models:
        return []  # the entry stage pins nothing: versions enter it by registration
    target = ctx.registry(stage)
    return [_check_pin(ctx, target, config, model, settings) for model, settings in config.pinned_models.items()]


def _check_pin(ctx: Context, target: StageRegistry, config: StackConfig, model: str, settings: ModelConfig) -> PinCheck:
    pin = settings.pinned
    assert pin is not None  # noqa: S101 - pinned_models holds pinned models only
    stage = target.stage
    with aws_errors(f"reading {model}'s pointer in {stage}"):
        try:
            pointer = target.pointer(model)
        except MissingRegistryError:
            pointer = None
    recorded = pointer.data if pointer is not None else {}
    check = PinCheck(model, pin.version, pin.digest, recorded.get("version"), checked=False)
    if recorded.get("version") == pin.version and recorded.get("digest") == pin.digest:
        check.note = f"v{pin.version} is what {stage}'s pointer records"
        return check
    check.checked = True
    with aws_errors(f"re-checking the gates of {model} v{pin.version} in {stage}"):
        record = target.version(model, pin.version)
        history = target.audit_records(model)
        ran = _ran_before(history, pin.version, pin.digest)
        if ran is not None:
            check.gates.append(
                GateResult("rollback", True, f"{stage} ran v{pin.version} before (deployed {ran}): gates skipped")
            )
            return check
        check.gates += _promotion_gates(ctx, config, model, settings, version=pin.version, digest=pin.digest)
        if record is None or record.get("digest") != pin.digest:
            found = "has no such version" if record is None else f"records {str(record.get('digest'))[:19]}..."
            check.gates.append(
                GateResult(
                    "registry",
                    False,
                    f"the pin says v{pin.version} ({pin.digest[:19]}...), {stage}'s registry {found}: promote it "
                    "with `mlinfra promote` instead of writing the pin by hand",
                )
            )
        else:
            check.gates.append(GateResult("registry", True, f"v{pin.version} is in {stage}'s registry"))
        forced = _forced(history, pin.version, pin.digest)
        if check.failed and forced is not None:
            check.note = (
                f"gates failed but the promotion was forced by {forced.get('actor', 'someone')}: "
                f"{forced.get('reason') or 'no reason'}"
            )
            check.gates = [GateResult(g.gate, True, f"{g.reason} (forced)") if not g.passed else g for g in check.gates]
    return check


def _promotion_gates(
    ctx: Context, config: StackConfig, model: str, settings: ModelConfig, *, version: int, digest: str
) -> list[GateResult]:
    """The gates `mlinfra promote` evaluates, for a version that must come from the stage the gates name."""
    gates = settings.gates
    stage = config.stage
    source = gates.from_stage or config.previous_stage(stage)
    if source is None:
        return [GateResult("source-stage", False, f"{stage} has no stage to promote from")]
    source_reg = ctx.source_registry(source)
    record = source_reg.version(model, version)
    if record is None or record.get("digest") != digest:
        return [
            GateResult("source-stage", False, f"v{version} ({digest[:19]}...) is not a version of {model} in {source}")
        ]
    results = [gate_checks.source_stage_gate(gates, config.previous_stage(stage), source)]
    package = source_reg.package_of(model, record) if gates.require_approval else None
    results.append(gate_checks.approval_gate(gates, package, source, version, model=model, target=stage))
    results += gate_checks.metric_gates(gates, record.get("metrics") or {})
    results.append(gate_checks.source_alarm_gate(gates, source_reg, model))
    results.append(gate_checks.soak_gate(gates, source_reg.pointer(model), source, version))
    return results


def _ran_before(history: list[dict[str, Any]], version: int, digest: str) -> str | None:
    """When this stage first recorded a deployment of the version (a rollback target), else None."""
    times = sorted(
        str(r["time"])
        for r in history
        if r.get("action") == "deploy" and r.get("version") == version and r.get("digest") == digest
    )
    return times[0] if times else None


def _forced(history: list[dict[str, Any]], version: int, digest: str) -> dict[str, Any] | None:
    """The newest forced promotion of exactly this version and digest into this stage, if any."""
    forced = [
        r
        for r in history
        if r.get("action") == "promote"
        and r.get("forced")
        and r.get("version") == version
        and r.get("digest") == digest
    ]
    return max(forced, key=lambda r: str(r["time"])) if forced else None


def refusal(stage: str, checks: list[PinCheck]) -> str | None:
    """The one-line reason the stage is refused (the first failed gate of each model), None when every gate passed."""
    failed = [c for c in checks if c.failed]
    if not failed:
        return None
    parts = [f"{c.model} v{c.version}: " + "; ".join(f"{g.gate}: {g.reason}" for g in c.failed) for c in failed]
    return f"stack {stage}: a pin that differs from the stage pointer fails its gates — {'; '.join(parts)}"


def recheck_all(project: Project, stages: list[str]) -> dict[str, list[PinCheck]]:
    """`recheck` of each stage, in order."""
    return {stage: recheck(project, stage) for stage in stages}


def lines(checks: list[PinCheck]) -> list[str]:
    """One line per pin, for `mlinfra check`'s report (rich markup)."""
    from rich.markup import escape

    out = []
    for check in checks:
        head = f"  pin {check.model} v{check.version}"
        if not check.checked:
            out.append(f"{head}: {escape(check.note or 'unchanged')}")
        elif check.failed:
            failed = "; ".join(f"{g.gate}: {g.reason}" for g in check.failed)
            out.append(f"{head}: [red]gates fail[/red] ({escape(failed)})")
        else:
            out.append(f"{head}: gates pass ({escape(', '.join(g.gate for g in check.gates))})")
        if check.checked and check.note:
            out.append(f"    {escape(check.note)}")
    return out
