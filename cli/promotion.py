"""Moving immutable model versions between stages: promote, approve, rollback, and the protocol they share.

Every action (here and `register` in cli/registration.py) follows one protocol so that a failure at any step leaves
the registry, the stage pointer, the audit trail and the stack file in agreement, and a re-run converges:

1. Read and check everything (stack files, records, integrity, gates) — failures write nothing.
2. Write what is content-addressed or create-only (artifact copy, model package, version record) — idempotent.
3. Commit: move the stage pointer with If-Match (the pointer carries the audit record of its move). A lost race is
   a conflict (exit 1); a dropped connection is resolved by re-reading the pointer.
4. Under a per-stage lock held across the commit, pin the version in the stack file (atomic, local).
5. Write the audit record (create-only). Until it is written, `history` shows the record the pointer carries, and
   the next action on that model and stage writes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import gates as gate_checks
from . import proposals
from .aws import StageAws, aws_errors
from .errors import BadInputError, MlinfraError, RefusedError
from .project import STATE_DIR, Project
from .registry import ConflictError, StageRegistry, Stored, now
from .stackfile import Stage, load_stage


@dataclass
class Context:
    """A project and the stages an action touches, loaded once, with their registries."""

    project: Project
    stages: dict[str, Stage]
    registries: dict[str, StageRegistry]

    @classmethod
    def load(cls, project: Project, *names: str) -> Context:
        """Load and validate the stack files first (bad input exits 2 before any AWS call)."""
        stages = {name: load_stage(project, name) for name in names}
        return cls(project, stages, {})

    def registry(self, stage: str) -> StageRegistry:
        """The registry of a loaded stage (its AWS session is created on first use)."""
        if stage not in self.registries:
            if stage not in self.stages:
                self.stages[stage] = load_stage(self.project, stage)
            self.registries[stage] = StageRegistry(StageAws(self.stages[stage].config, self.project.root))
        return self.registries[stage]


def require_model(stage: Stage, model: str) -> None:
    """BadInputError unless `model` is declared in the stage's stack file."""
    if model not in stage.config.models:
        from mlinfra_infra.config import suggest

        declared = sorted(stage.config.models)
        raise BadInputError(
            f"unknown model {model!r} in {stage.source}{suggest(model, declared)} "
            f"(declared: {', '.join(declared) or 'none'}; declare it under mlinfra:models)"
        )


def actor(aws: StageAws) -> dict[str, Any]:
    """Who acts: the caller's own AWS identity (even when a stage role is assumed), the role, and the local user."""
    return {"actor": aws.caller_arn, "role": aws.config.access.role_arn, "user": getpass.getuser()}


@contextlib.contextmanager
def stage_lock(project: Project, stage: str) -> Iterator[None]:
    """Serialise commits to one stage from this checkout, so the stack file follows the pointer's order."""
    path = project.root / STATE_DIR / "locks" / f"{stage}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _same_request(record: dict[str, Any], request: dict[str, Any]) -> bool:
    keys = ("action", "model", "stage", "version", "actor", "reason", "source")
    return all(record.get(k) == request.get(k) for k in keys)


def repair_audit(registry: StageRegistry, model: str, pointer: Stored | None) -> None:
    """Write the audit record a pointer carries if an earlier run committed but failed before writing it."""
    if pointer is not None and isinstance(pointer.data.get("record"), dict):
        registry.write_audit(pointer.data["record"])


def _pin_for(registry: StageRegistry, model: str, record: dict[str, Any]) -> dict[str, Any]:
    pin = {
        "version": record["version"],
        "digest": record["digest"],
        "image": record["image"],
        "artifact": registry.artifact_uri(model, record["digest"]),
    }
    if record.get("handler"):
        pin["handler"] = record["handler"]  # the archive's layout: the endpoint sets the container's environment
    return pin


def commit(
    ctx: Context,
    registry: StageRegistry,
    model: str,
    *,
    record: dict[str, Any],
    audit: dict[str, Any],
    expected: Stored | None,
    pin: bool,
) -> None:
    """Move the stage pointer (the commit), pin the stack file, write the audit record. See the module docstring."""
    from .stackedit import pin_version

    pointer = {
        "model": model,
        "stage": registry.stage,
        "version": record["version"],
        "digest": record["digest"],
        "since": audit["time"],
        "record": audit,
        # The deployment recorded by the last apply stays until the next one (deployments.py).
        "deployed": expected.data.get("deployed") if expected else None,
    }
    with stage_lock(ctx.project, registry.stage):
        try:
            registry.move_pointer(model, pointer, expected)
        except ConflictError:
            _resolve_uncertain(registry, model, audit, conflict=True)
        except MlinfraError:
            raise
        except Exception:  # noqa: BLE001 - any transport failure: the pointer itself says whether the write landed
            _resolve_uncertain(registry, model, audit, conflict=False)
        if pin:
            pin_version(ctx.project, registry.stage, model, _pin_for(registry, model, record))
    registry.write_audit(audit)


def _resolve_uncertain(registry: StageRegistry, model: str, audit: dict[str, Any], *, conflict: bool) -> None:
    current = registry.pointer(model)
    if current is not None and current.data.get("record", {}).get("id") == audit["id"]:
        return  # our write landed
    if not conflict:
        raise MlinfraError(
            f"moving {model}'s pointer in {registry.stage} failed; nothing was committed, re-run the command"
        )
    raise _conflict(registry, model, current)


def _conflict(registry: StageRegistry, model: str, current: Stored | None, *, pinned: bool = False) -> ConflictError:
    """The one-line error of a promotion that lost a race: who moved the pointer, and that this run changed nothing."""
    holder = current.data.get("record", {}) if current else {}
    version = current.data.get("version") if current else None
    done = f"the stack file pins v{version}, as the pointer does" if pinned else "nothing was changed here"
    return ConflictError(
        f"conflict: {model} in {registry.stage} was moved to v{version} by "
        f"{holder.get('actor', 'someone')} while this ran; {done} — check `mlinfra status` "
        "and run the command again if it is still wanted"
    )


def catch_up(ctx: Context, registry: StageRegistry, model: str, seen: Stored) -> None:
    """Finish a committed action whose pin may lag: pin what the pointer holds now, read under the stage lock.

    `seen` is the pointer this run found carrying its own request. If another action moved the pointer since, the
    stack file follows the pointer (not this run's version) and a ConflictError says who moved it.
    """
    from .stackedit import pin_version

    with stage_lock(ctx.project, registry.stage):
        current = registry.pointer(model)
        if current is None:
            raise _conflict(registry, model, current)
        record = registry.require_version(model, int(current.data["version"]))
        pin_version(ctx.project, registry.stage, model, _pin_for(registry, model, record))
        if current.data.get("record", {}).get("id") != seen.data.get("record", {}).get("id"):
            raise _conflict(registry, model, current, pinned=True)


def entry_stage(project: Project) -> tuple[Context, Stage]:
    """The project's entry stage (the first of its promotion order), loaded, in a Context."""
    names = project.stages()
    if not names:
        raise BadInputError(f"no stack files in {project.relative(project.stacks_dir)}/")
    first = load_stage(project, names[0])
    entry = first.config.entry_stage  # the first stage of the project's promotion order
    ctx = Context(project, {first.name: first}, {})
    if entry not in ctx.stages:
        ctx.stages[entry] = load_stage(project, project.require_stage(entry))
    return ctx, ctx.stages[entry]


def next_stage(config: Any) -> str | None:
    """The stage a fresh registration is promoted into first (the one after the entry stage)."""
    return config.stages[1] if len(config.stages) > 1 else None


@dataclass
class Plan:
    """A checked promotion or rollback, ready to commit."""

    model: str
    target: str
    source: str
    version: int
    record: dict[str, Any]
    gates: list[gate_checks.GateResult]
    previous: int | None
    # The pointer the plan was decided on (a rollback's "previous version"); the commit requires it unchanged.
    expected: Stored | None = None


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
    proposals.preflight(ctx, to)  # a pullRequest stage needs a git checkout with an origin: checked before AWS

    source_reg = ctx.registry(source)
    with aws_errors(f"reading {model} in {source}"):
        source_pointer = source_reg.pointer(model)
        if version is None:
            if source_pointer is None:
                raise BadInputError(f"no version of {model} runs in {source} yet; give --version N")
            version = int(source_pointer.data["version"])
        record = source_reg.require_version(model, version)
        source_reg.verify_artifact(model, record["digest"])

    results: list[gate_checks.GateResult] = [
        gate_checks.source_stage_gate(model_cfg.gates, cfg.previous_stage(to), source),
    ]
    with aws_errors(f"evaluating {to}'s gates"):
        package = source_reg.package_of(model, record) if model_cfg.gates.require_approval else None
        results.append(gate_checks.approval_gate(model_cfg.gates, package, source, version))
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
        pointer = registry.pointer(model)
        if pointer is None:
            raise BadInputError(f"{model} has never run in {stage}; nothing to roll back")
        current = int(pointer.data["version"])
        if to is None:
            to = _previous_version(registry, model, pointer, current)
        record = registry.require_version(model, to)
        registry.verify_artifact(model, record["digest"])
    results = [gate_checks.GateResult("metrics", True, "skipped for a rollback")]
    plan = Plan(model, stage, stage, to, record, results, current, expected=pointer)
    return _execute(ctx, plan, action="rollback", reason=reason, forced=False)


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
    source = ctx.registry(plan.source)
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
        current = plan.expected or target.pointer(model)
        repair_audit(target, model, current)
        if current is not None and _same_request(current.data.get("record", {}), request):
            # A re-run of an action that committed: the audit record is written (above); the stack file follows
            # the pointer as it is now, read under the stage lock (another action may have moved it since).
            catch_up(ctx, target, model, current)
            return _summary(current.data["record"], target, model, record, already=True)
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
            target_record = {
                **record,
                "stage": plan.target,
                "artifact": target.artifact_uri(model, record["digest"]),
                "packageArn": package["ModelPackageArn"],
                "lineage": {
                    "sourceStage": plan.source,
                    "sourcePackageArn": record.get("packageArn"),
                    "sourceArtifact": record.get("artifact"),
                },
            }
            target.write_version(target_record)
            record = target.require_version(model, plan.version)
        if ctx.stages[plan.target].config.delivery_mode == "pullRequest":
            previous = current.data.get("version") if current else None
            return proposals.propose(ctx, plan, target, record, request, previous=previous, forced=forced)
        audit = {
            "id": uuid.uuid4().hex,
            **request,
            "previous": current.data.get("version") if current else None,
            "digest": record["digest"],
            "time": now(),
            "forced": forced,
            "gates": [g.to_json() for g in plan.gates],
        }
        commit(ctx, target, model, record=record, audit=audit, expected=current, pin=True)
    return _summary(audit, target, model, record, already=False)


def _summary(
    audit: dict[str, Any], target: StageRegistry, model: str, record: dict[str, Any], *, already: bool
) -> dict[str, Any]:
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
    }


def approve(project: Project, model: str, version: int, stage: str, reason: str) -> dict[str, Any]:
    """Approve version `version` for promotion into `stage`: its package in the preceding stage becomes Approved."""
    project.require_stage(stage)
    ctx = Context.load(project, stage)
    cfg = ctx.stages[stage].config
    require_model(ctx.stages[stage], model)
    source = cfg.models[model].gates.from_stage or cfg.previous_stage(stage)
    if source is None:
        raise BadInputError(f"{stage} is the entry stage: nothing is promoted into it, so nothing to approve")
    source_reg = ctx.registry(source)
    target = ctx.registry(stage)
    with aws_errors(f"approving {model} v{version} for {stage}"):
        record = source_reg.require_version(model, version)
        source_reg.approve_package(model, record, f"approved for {stage}: {reason}")
        audit = {
            "id": uuid.uuid4().hex,
            "action": "approve",
            "model": model,
            "stage": stage,
            "version": version,
            "previous": None,
            "digest": record["digest"],
            "time": now(),
            "reason": reason,
            "source": source,
            "forced": False,
            "gates": [],
            **actor(source_reg.aws),
        }
        target.write_audit(audit)
    return {"model": model, "stage": stage, "version": version, "approvedIn": source, "actor": audit["actor"]}
