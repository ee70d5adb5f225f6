"""The commit protocol every registry action shares, and the context it runs in.

Every action (promote, approve, rollback in mlinfra.registry.promote; register in mlinfra.registry.register)
follows one protocol so that a failure at any step leaves the registry, the stage pointer, the audit trail and the
stack file in agreement, and a re-run converges:

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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mlinfra.aws import Purpose, StageAws
from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.records import Stored, pin_of, pointer_of
from mlinfra.registry.gates import GateResult
from mlinfra.registry.store import ConflictError, StageRegistry
from mlinfra.stacks.files import Stage, load_stage
from mlinfra.stacks.project import STATE_DIR, Project


@dataclass
class Context:
    """A project and the stages an action touches, loaded once, with their registries.

    `acting`: the stage the command acts for (the first one loaded): another stage read as its source, or approved
    in, is reached from that stage's session.
    """

    project: Project
    stages: dict[str, Stage]
    registries: dict[str, StageRegistry]
    acting: str = ""

    @classmethod
    def load(cls, project: Project, *names: str) -> Context:
        """Load and validate the stack files first (bad input exits 2 before any AWS call)."""
        stages = {name: load_stage(project, name) for name in names}
        return cls(project, stages, {}, names[0] if names else "")

    def registry(self, stage: str, purpose: Purpose = "stage") -> StageRegistry:
        """The registry of a loaded stage (its AWS session is created on first use).

        `purpose`: "stage" for the stage the command acts for; "source" when the command's stage reads it as its
        source, "approval" to approve a package in it: then the session is the command stage's own, through the
        role the stage lends for that purpose (`access.sourceRoleArn` / `approvalRoleArn`) where it names one.
        """
        name = stage if purpose == "stage" else f"{stage}#{purpose}"
        if name not in self.registries:
            if stage not in self.stages:
                self.stages[stage] = load_stage(self.project, stage)
            acting = None
            if purpose != "stage":
                if not self.acting:
                    raise MlinfraError(f"reading {stage} as a source needs the stage the command acts for")
                acting = self.registry(self.acting).aws
            config = self.stages[stage].config
            self.registries[name] = StageRegistry(StageAws(config, self.project.root, purpose, acting))
        return self.registries[name]

    def source_registry(self, stage: str) -> StageRegistry:
        """The registry of `stage` read as the source of the command's stage (its source role, if it lends one)."""
        return self.registry(stage, "source")


def require_model(stage: Stage, model: str) -> None:
    """BadInputError unless `model` is declared in the stage's stack file."""
    if model not in stage.config.models:
        from mlinfra_infra.config import suggest

        declared = sorted(stage.config.models)
        from mlinfra.aws import mlinfra_command

        raise BadInputError(
            f"unknown model {model!r} in {stage.source}{suggest(model, declared)} "
            f"(declared: {', '.join(declared) or 'none'}); to add it, run `{mlinfra_command(f'model add {model}')}` "
            "(declares it in every stage's stack file: commit them, and a deploy creates its registry entries)"
        )


def actor(aws: StageAws) -> dict[str, Any]:
    """Who acts: the caller's own AWS identity (even when a stage role is assumed), the role, and the local user."""
    return {"actor": aws.caller_arn, "role": aws.role_arn, "user": getpass.getuser()}


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


def same_request(record: dict[str, Any], request: dict[str, Any]) -> bool:
    keys = ("action", "model", "stage", "version", "actor", "reason", "source")
    return all(record.get(k) == request.get(k) for k in keys)


class MissingPointerError(MlinfraError):
    """Raised when a stage pointer is gone but the stage's audit log records a move of it (deleted out of band)."""


POINTER_MOVES = ("register", "promote", "rollback", "deploy")


def last_move(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest audit record that moved the stage pointer (what the pointer must carry), if any.

    A promotion or rollback proposed as a pull request moved nothing (its deploy record did, later).
    """
    moves = [
        r
        for r in records
        if r.get("action") in POINTER_MOVES and r.get("delivery") != "pullRequest" and isinstance(r.get("time"), str)
    ]
    return max(moves, key=lambda r: str(r["time"])) if moves else None


def current_pointer(registry: StageRegistry, model: str) -> Stored | None:
    """The stage pointer, None for a model that never ran here; MissingPointerError when it was deleted.

    Checked against the audit log only when the pointer is absent (the first action on a model in a stage).
    """
    pointer = registry.pointer(model)
    if pointer is None:
        last = last_move(registry.audit_records(model))
        if last is not None:
            raise MissingPointerError(
                f"{model}'s stage pointer s3://{registry.bucket}/stages/{model}.json is missing, but "
                f"{registry.stage}'s audit log records v{last.get('version')} ({last.get('action')} at "
                f"{last.get('time')}): it was deleted out of band; rebuild it from the audit log with "
                f"`mlinfra repair pointer {model} --stack {registry.stage}`"
            )
    return pointer


def repair_audit(registry: StageRegistry, model: str, pointer: Stored | None) -> None:
    """Write the audit record a pointer carries if an earlier run committed but failed before writing it."""
    if pointer is not None and isinstance(pointer.data.get("record"), dict):
        registry.write_audit(pointer.data["record"])


def pin_for(registry: StageRegistry, model: str, record: dict[str, Any]) -> dict[str, Any]:
    """The pin of `record` in `registry`'s stage (records.pin_of with this registry's artifact URI)."""
    return pin_of(record, registry.artifact_uri(model, record["digest"]))


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
    from mlinfra.stacks.edit import pin_version

    # The deployment recorded by the last apply stays until the next one (mlinfra.registry.deployments).
    deployed = expected.data.get("deployed") if expected else None
    pointer = pointer_of(model, registry.stage, record, audit, deployed=deployed)
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
            pin_version(ctx.project, registry.stage, model, pin_for(registry, model, record))
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
    from mlinfra.stacks.edit import pin_version

    with stage_lock(ctx.project, registry.stage):
        current = registry.pointer(model)
        if current is None:
            raise _conflict(registry, model, current)
        record = registry.require_version(model, int(current.data["version"]))
        pin_version(ctx.project, registry.stage, model, pin_for(registry, model, record))
        if current.data.get("record", {}).get("id") != seen.data.get("record", {}).get("id"):
            raise _conflict(registry, model, current, pinned=True)


def entry_stage(project: Project) -> tuple[Context, Stage]:
    """The project's entry stage (the first of its promotion order), loaded, in a Context."""
    names = project.stages()
    if not names:
        raise BadInputError(f"no stack files in {project.relative(project.stacks_dir)}/")
    first = load_stage(project, names[0])
    entry = first.config.entry_stage  # the first stage of the project's promotion order
    ctx = Context(project, {first.name: first}, {}, first.name)
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
    gates: list[GateResult]
    previous: int | None
    # The pointer the plan was decided on (a rollback's "previous version"); the commit requires it unchanged.
    expected: Stored | None = None
