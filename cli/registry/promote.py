"""Moving immutable model versions between stages: promote, approve and rollback.

Each follows the commit protocol of mlinfra.registry.protocol (check, write create-only, move the pointer, pin, audit).
"""

from __future__ import annotations

from typing import Any

from mlinfra.aws import aws_errors
from mlinfra.errors import BadInputError, RefusedError
from mlinfra.records import Stored, audit_record, promoted_record
from mlinfra.registry import gates as gate_checks
from mlinfra.registry import proposals
from mlinfra.registry.protocol import (
    Context,
    Plan,
    actor,
    catch_up,
    commit,
    current_pointer,
    next_stage,
    repair_audit,
    require_model,
    same_request,
)
from mlinfra.registry.store import StageRegistry
from mlinfra.stacks.files import load_stage
from mlinfra.stacks.project import Project


def promote(
    project: Project,
    model: str,
    to: str,
    *,
    version: int | None,
    source: str | None,
    reason: str | None,
    force: bool,
) -> dict[str, Any]:
    """Promote a version into stage `to`; returns {"model","stage","version","previous","digest"} (+ details)."""
    if force and not reason:
        raise BadInputError("--force skips the gates and needs --reason saying why")
    project.require_stage(to)
    ctx = Context.load(project, to)
    target_stage = ctx.stages[to]
    require_model(target_stage, model)
    cfg = target_stage.config
    if to == cfg.entry_stage:
        raise BadInputError(f"{to} is the entry stage: versions enter it with `mlinfra register`, not promote")
    model_cfg = cfg.models[model]
    expected_source = model_cfg.gates.from_stage or cfg.previous_stage(to)
    source = source or expected_source
    if source is None or source == to:
        raise BadInputError(f"cannot promote {model} into {to} from {source}")
    project.require_stage(source)
    if source not in ctx.stages:
        ctx.stages[source] = load_stage(project, source)
    require_model(ctx.stages[source], model)
    checkout = proposals.preflight(ctx, to)  # a pullRequest stage needs a git checkout with an origin: before AWS
    if checkout is not None:
        from mlinfra.delivery.gatesync import refuse_local_gate_edits

        refuse_local_gate_edits(project, checkout, target_stage, model)  # origin's gates are the ones CI enforces

    source_reg = ctx.source_registry(source)
    with aws_errors(f"reading {model} in {source}"):
        source_pointer = current_pointer(source_reg, model)
        if version is None:
            if source_pointer is None:
                raise BadInputError(f"no version of {model} runs in {source} yet; give --version N")
            version = int(source_pointer.data["version"])
        record = source_reg.require_version(model, version)
        # With the target stage's own credentials, as the copy reads it: the source's read role reads no artifact.
        ctx.registry(to).verify_copy_source(source_reg, model, record["digest"])

    results: list[gate_checks.GateResult] = [
        gate_checks.source_stage_gate(model_cfg.gates, cfg.previous_stage(to), source),
    ]
    with aws_errors(f"evaluating {to}'s gates"):
        package = source_reg.package_of(model, record) if model_cfg.gates.require_approval else None
        results.append(gate_checks.approval_gate(model_cfg.gates, package, source, version, model=model, target=to))
        results += gate_checks.metric_gates(model_cfg.gates, record.get("metrics") or {})
        results.append(gate_checks.source_alarm_gate(model_cfg.gates, source_reg, model))
        results.append(gate_checks.soak_gate(model_cfg.gates, source_pointer, source, version))
    failed = [r for r in results if not r.passed]
    if failed and not force:
        lines = "; ".join(f"{r.gate}: {r.reason}" for r in failed)
        raise RefusedError(
            f"{model} v{version} may not enter {to} ({len(failed)} gate(s) failed): {lines}",
            [r.to_json() for r in failed],
        )

    plan = Plan(model, to, source, version, record, results, None)
    return _execute(ctx, plan, action="promote", reason=reason or "", forced=bool(failed) and force)


def rollback(project: Project, model: str, stage: str, *, to: int | None, reason: str) -> dict[str, Any]:
    """Return a stage to the version it ran before (or version `to`); integrity checked, metric gates skipped."""
    project.require_stage(stage)
    ctx = Context.load(project, stage)
    require_model(ctx.stages[stage], model)
    cfg = ctx.stages[stage].config
    if stage == cfg.entry_stage:
        following = next_stage(cfg) or "STAGE"
        raise BadInputError(
            f"{stage} is the entry stage: it runs no endpoint and pins no version, so there is nothing to roll "
            f"back; promote the version you want into the next stage instead (`mlinfra promote {model} --to "
            f"{following} --version {to or 'N'}`)"
        )
    proposals.preflight(ctx, stage)
    registry = ctx.registry(stage)
    with aws_errors(f"reading {model} in {stage}"):
        pointer = current_pointer(registry, model)
        if pointer is None:
            raise BadInputError(f"{model} has never run in {stage}; nothing to roll back")
        current = int(pointer.data["version"])
        if to is None:
            to = _rerun_target(registry, model, stage, pointer, reason) or _previous_version(
                registry, model, pointer, current
            )
        record = registry.require_version(model, to)
        registry.verify_artifact(model, record["digest"])
    results = [gate_checks.GateResult("metrics", True, "skipped for a rollback")]
    plan = Plan(model, stage, stage, to, record, results, current, expected=pointer)
    return _execute(ctx, plan, action="rollback", reason=reason, forced=False)


def _rerun_target(registry: StageRegistry, model: str, stage: str, pointer: Stored, reason: str) -> int | None:
    """The version a committed rollback of this very request moved to (its re-run is done), else None.

    Without it a re-run would work out "the previous version" again from the pointer the first run already moved,
    and silently undo the rollback.
    """
    request = {"action": "rollback", "model": model, "stage": stage, "reason": reason, "source": stage}
    last = pointer.data.get("record")
    if not isinstance(last, dict) or not isinstance(last.get("version"), int):
        return None
    if same_request(last, {**request, **actor(registry.aws), "version": last["version"]}):
        return int(last["version"])
    return None


def _previous_version(registry: StageRegistry, model: str, pointer: Stored, current: int) -> int:
    previous = pointer.data.get("record", {}).get("previous")
    if isinstance(previous, int) and previous != current:
        return previous
    for record in sorted(registry.audit_records(model), key=lambda r: r["time"], reverse=True):
        if record.get("action") in {"promote", "rollback"} and record.get("version") != current:
            return int(record["version"])
    raise BadInputError(f"{model} has run no other version in {registry.stage}; give --to N")


def _execute(ctx: Context, plan: Plan, *, action: str, reason: str, forced: bool) -> dict[str, Any]:
    model, record = plan.model, plan.record
    target = ctx.registry(plan.target)
    source = ctx.source_registry(plan.source) if plan.source != plan.target else target
    who = actor(target.aws)
    request = {
        "action": action,
        "model": model,
        "stage": plan.target,
        "version": plan.version,
        "reason": reason,
        "source": plan.source,
        **who,
    }
    with aws_errors(f"{action} of {model} v{plan.version} into {plan.target}"):
        current = plan.expected or current_pointer(target, model)
        repair_audit(target, model, current)
        if current is not None and same_request(current.data.get("record", {}), request):
            # A re-run of an action that committed: the audit record is written (above); the stack file follows
            # the pointer as it is now, read under the stage lock (another action may have moved it since).
            catch_up(ctx, target, model, current)
            return _summary(current.data["record"], target, model, record, already=True, pointer=current)
        if current is not None and current.data.get("version") == plan.version:
            done = current.data.get("record", {})
            raise BadInputError(
                f"{model} already runs v{plan.version} in {plan.target} (since {current.data.get('since')}, "
                f"{done.get('action', 'moved')} by {done.get('actor', 'someone')}); nothing to do, nothing recorded"
            )

        if plan.target != plan.source:
            target.require_group(model)  # before the copy: a refusal leaves nothing in the target
            target.copy_artifact_from(source, model, record["digest"], int(record["size"]))
            target.verify_artifact(model, record["digest"])
            target.copy_version_files_from(source, model, plan.version)
            package = target.create_package(
                model,
                record["digest"],
                record["image"],
                target.artifact_uri(model, record["digest"]),
                {
                    "digest": record["digest"],
                    "version": str(plan.version),
                    "sourceStage": plan.source,
                    "sourcePackageArn": str(record.get("packageArn")),
                },
            )
            target_record = promoted_record(
                record,
                source_stage=plan.source,
                stage=plan.target,
                artifact=target.artifact_uri(model, record["digest"]),
                package_arn=package["ModelPackageArn"],
            )
            target.write_version(target_record)
            record = target.require_version(model, plan.version)
        if ctx.stages[plan.target].config.delivery_mode == "pullRequest":
            previous = current.data.get("version") if current else None
            return proposals.propose(ctx, plan, target, record, request, previous=previous, forced=forced)
        audit = audit_record(
            action,
            model=model,
            stage=plan.target,
            version=plan.version,
            previous=current.data.get("version") if current else None,
            digest=record["digest"],
            reason=reason,
            source=plan.source,
            who=who,
            forced=forced,
            gates=[g.to_json() for g in plan.gates],
        )
        commit(ctx, target, model, record=record, audit=audit, expected=current, pin=True)
    return _summary(audit, target, model, record, already=False, pointer=current)


def _summary(
    audit: dict[str, Any],
    target: StageRegistry,
    model: str,
    record: dict[str, Any],
    *,
    already: bool,
    pointer: Stored | None,
) -> dict[str, Any]:
    from mlinfra.records import deployed_of

    deployed = deployed_of(pointer)
    return {
        "model": model,
        "stage": target.stage,
        "version": audit["version"],
        "previous": audit.get("previous"),
        "digest": record["digest"],
        "artifact": target.artifact_uri(model, record["digest"]),
        "action": audit["action"],
        "forced": audit.get("forced", False),
        "gates": audit.get("gates", []),
        "alreadyDone": already,
        "deployed": deployed.version if deployed else None,
    }


def sentence(result: dict[str, Any]) -> str:
    """What a promotion or rollback did, in one true line: pinned is not deployed until an apply is recorded."""
    model, stage, version = result["model"], result["stage"], result["version"]
    previous = f"v{result['previous']}" if result.get("previous") else "nothing"
    if result.get("delivery") == "pullRequest":
        branch = (result.get("pullRequest") or {}).get("branch")
        if branch is None:
            base = result.get("base", "main")
            return f"{model}: origin/{base} already pins v{version} for {stage}; nothing to propose"
        return (
            f"{model}: v{version} proposed for {stage} on branch {branch}; {stage} runs {previous} until it is "
            "merged and applied"
        )
    done = " (already done; caught up)" if result.get("alreadyDone") else ""
    if result.get("deployed") == version:
        return f"{model}: {stage} runs v{version} (was {previous}){done}"
    return f"{model}: v{version} pinned in {stage} (was {previous}); deploys on the next apply{done}"


def approve(project: Project, model: str, version: int, stage: str, reason: str) -> dict[str, Any]:
    """Approve version `version` for promotion into `stage`: its package in the preceding stage becomes Approved."""
    project.require_stage(stage)
    ctx = Context.load(project, stage)
    cfg = ctx.stages[stage].config
    require_model(ctx.stages[stage], model)
    source = cfg.models[model].gates.from_stage or cfg.previous_stage(stage)
    if source is None:
        raise BadInputError(f"{stage} is the entry stage: nothing is promoted into it, so nothing to approve")
    source_reg = ctx.source_registry(source)
    target = ctx.registry(stage)
    with aws_errors(f"approving {model} v{version} for {stage}"):
        record = source_reg.require_version(model, version)
        # The one write on the source stage: through its approval role where it has one (never its read role).
        approver = ctx.registry(source, "approval")
        approver.approve_package(model, record, f"approved for {stage}: {reason}")
        audit = audit_record(
            "approve",
            model=model,
            stage=stage,
            version=version,
            digest=record["digest"],
            reason=reason,
            source=source,
            who=actor(approver.aws),
        )
        target.write_audit(audit)
    return {"model": model, "stage": stage, "version": version, "approvedIn": source, "actor": audit["actor"]}
