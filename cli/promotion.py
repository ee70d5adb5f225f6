"""Moving immutable model versions between stages: register, promote, approve, rollback, history and status.

Every action follows one protocol so that a failure at any step leaves the registry, the stage pointer, the audit
trail and the stack file in agreement, and a re-run converges:

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlinfra_infra import layout, naming

from . import deployments, proposals
from . import gates as gate_checks
from .aws import StageAws, aws_errors, error_code
from .driftstatus import latest_drift
from .errors import BadInputError, MlinfraError, RefusedError
from .localmode import missing_registry_note
from .project import STATE_DIR, Project
from .registry import ConflictError, MissingRegistryError, MultipartSink, StageRegistry, Stored, checksum_of, now
from .stackfile import Stage, load_stage

ACTIONS = ("register", "promote", "approve", "rollback")


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


# ---------------------------------------------------------------------------------------------------------------
# register


def register(
    project: Project,
    path: Path,
    model: str,
    *,
    framework: str | None,
    framework_version: str | None,
    image: str | None,
    metrics_path: Path | None,
    baseline_path: Path | None,
    git_sha: str | None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    description: str | None = None,
    card_path: Path | None = None,
) -> dict[str, Any]:
    """Register a model directory or model.tar.gz into the entry stage; returns the version record.

    Everything that can be checked is checked before a byte is uploaded (stack file, model, inputs, image, the
    package group). The bytes are hashed first: bytes that are already version N are not uploaded again; new
    metrics or a new baseline given with them are attached to vN (audited), another image is refused. Numbers come
    from the entry stage's model package.
    With a framework, the handler is checked against its container's contract before anything is hashed.
    """
    from . import cards, images, inputs, modeldir, packaging

    ctx, stage = entry_stage(project)
    entry = stage.name
    require_model(stage, model)
    # Bad input first: nothing is uploaded for a wrong path, framework, image or metrics file.
    archive, handler, card = _check_model(path, framework, model, card_path=card_path)
    metrics = inputs.read_metrics(metrics_path) if metrics_path else None
    baseline = inputs.read_baseline(baseline_path) if baseline_path else None
    if image is None and (framework is None or framework_version is None):
        raise BadInputError("give --framework and --framework-version (to resolve the inference image) or --image")
    if image is not None:
        _check_image(image)
        resolved_image = image
    else:
        assert framework is not None and framework_version is not None  # noqa: S101 - checked just above
        # Offline, from the SDK's bundled image config, without importing the SDK: milliseconds.
        resolved_image = images.resolve_image(framework, framework_version, stage.config.region)

    registry = ctx.registry(entry)
    with aws_errors(f"registering {model} in {entry}"):
        registry.require_group(model)  # a stage without the model's package group gets no upload
    # Hash first: bytes that are already a version are never uploaded again.
    digest = _pack(path, archive=archive, sink=None).digest
    with aws_errors(f"registering {model} in {entry}"):
        existing = registry.find_package(model, digest)
        known = registry.version(model, int(existing["ModelPackageVersion"])) if existing else None
    if known is not None:
        return _register_existing(
            registry, stage, model, known, image=resolved_image, metrics=metrics, baseline=baseline
        )
    if on_total is not None:
        on_total(packaging.input_size(path, None if archive else modeldir.skipper(path)))

    with aws_errors(f"registering {model} in {entry}"):
        if registry.stored_checksum(model, digest) != checksum_of(digest):
            packed, temp_key = _upload(registry, path, model, archive=archive, progress=progress)
            try:
                if packed.digest != digest:
                    raise MlinfraError(
                        f"{path} changed while it was registered ({digest[:19]}... then {packed.digest[:19]}...); "
                        "nothing was registered, re-run when it is complete"
                    )
                registry.finalize_upload(temp_key, model, digest)
            except BaseException:
                with contextlib.suppress(Exception):
                    registry.discard(temp_key)
                raise
        else:
            packed = _pack(path, archive=archive, sink=None)  # stored before (an interrupted run): size and files
        artifact = registry.artifact_uri(model, packed.digest)
        who = actor(registry.aws)
        package = registry.create_package(
            model,
            packed.digest,
            resolved_image,
            artifact,
            {"digest": packed.digest, "registeredBy": who["actor"], "stage": entry},
        )
        version = int(package["ModelPackageVersion"])
        record = {
            "model": model,
            "version": version,
            "digest": packed.digest,
            "size": packed.size,
            "framework": framework,
            "frameworkVersion": framework_version,
            "image": resolved_image,
            "artifact": artifact,
            "metrics": metrics or {},
            "gitSha": git_sha,
            "registeredBy": who["actor"],
            "registeredByUser": who["user"],
            "registeredAt": now(),
            "stage": entry,
            "packageArn": package["ModelPackageArn"],
            "lineage": None,
            "baseline": f"{layout.version_prefix(model, version)}baseline.json" if baseline else None,
            "handler": handler.model_dump(mode="json") if handler else None,
            "description": description,
            "card": cards.card_key(model, version) if card is not None else None,
        }
        cards.store_card(registry, model, version, card)
        if baseline is not None:
            with contextlib.suppress(ConflictError):
                registry.write(f"{layout.version_prefix(model, version)}baseline.json", baseline)
        registry.write_version(record)
        _move_entry_pointer(ctx, registry, model, record, who)
    return {**record, "nextStage": _next_stage(stage.config)}


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


def _register_existing(
    registry: StageRegistry,
    stage: Stage,
    model: str,
    record: dict[str, Any],
    *,
    image: str,
    metrics: dict[str, float] | None,
    baseline: dict[str, Any] | None,
) -> dict[str, Any]:
    """Bytes that are already version N: nothing uploaded; new metrics/baseline attached, another image refused."""
    from .attach import attach_inputs

    version = int(record["version"])
    if image != record["image"]:
        raise BadInputError(
            f"these bytes are already {model} v{version} with image {record['image']}; a version's image is part "
            "of what stages pin, so it cannot change: register the model with a changed file to make a new version, "
            f"or keep v{version}'s image"
        )
    changed: list[str] = []
    if metrics is not None or baseline is not None:
        with aws_errors(f"attaching inputs to {model} v{version}"):
            who = actor(registry.aws)
        result = attach_inputs(registry, model, version, metrics=metrics, baseline=baseline, who=who)
        record, changed = result["record"], result["changed"]
    return {**record, "existing": True, "attached": changed, "nextStage": _next_stage(stage.config)}


def _next_stage(config: Any) -> str | None:
    """The stage a fresh registration is promoted into first (the one after the entry stage)."""
    return config.stages[1] if len(config.stages) > 1 else None


def _upload(
    registry: StageRegistry, path: Path, model: str, *, archive: bool, progress: Callable[[int], None] | None
) -> tuple[Any, str]:
    """Stream the artifact (packed, or the archive as given) to a temporary key, hashing it on the way."""
    with aws_errors(f"uploading {model} to {registry.bucket}"):
        temp_key = registry.temp_upload_key(model)
        sink = MultipartSink(registry.s3, registry.bucket, temp_key, on_bytes=progress)
        try:
            packed = _pack(path, archive=archive, sink=sink.write)
            sink.close()
        except BaseException:
            with contextlib.suppress(Exception):
                sink.abort()
            raise
    return packed, temp_key


def _pack(path: Path, *, archive: bool, sink: Callable[[bytes], object] | None) -> Any:
    """The artifact handed to `sink` (or only hashed): the archive as given (checked), or the directory packed."""
    from . import archives, modeldir, packaging

    if archive:
        return archives.stream_archive(path, sink) if sink is not None else archives.inspect_archive(path)
    return packaging.pack(path, sink or _discard, skip=modeldir.skipper(path))


def _discard(_chunk: bytes) -> None:
    """A sink that keeps nothing (the hashing pass)."""


def _check_model(
    path: Path, framework: str | None, model: str, *, card_path: Path | None
) -> tuple[bool, Any, str | None]:
    """(is an archive, handler layout or None for a custom image, authors' card), checked before any upload."""
    from . import cards, modeldir, packaging

    archive = packaging.is_archive(path)
    card = cards.read_card(card_path) if card_path else None
    if framework is None:
        return archive, None, card
    if archive:
        return archive, modeldir.check_archive(path, framework, model), card
    return archive, modeldir.check_directory(path, framework, model), card


def _check_image(image: str) -> None:
    from pydantic import TypeAdapter, ValidationError

    from mlinfra_infra.config import ImageUri

    try:
        TypeAdapter(ImageUri).validate_python(image)
    except ValidationError:
        raise BadInputError(
            f"--image {image!r} is not an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>)"
        ) from None


def _move_entry_pointer(
    ctx: Context, registry: StageRegistry, model: str, record: dict[str, Any], who: dict[str, Any]
) -> None:
    """The entry stage's pointer marks the latest registered version (the default for the next promotion)."""
    for _ in range(5):
        current = registry.pointer(model)
        repair_audit(registry, model, current)
        audit = {
            "id": uuid.uuid4().hex,
            "action": "register",
            "model": model,
            "stage": registry.stage,
            "version": record["version"],
            "previous": current.data.get("version") if current else None,
            "digest": record["digest"],
            "time": now(),
            "reason": f"registered {record['digest'][:19]}",
            "source": None,
            "forced": False,
            "gates": [],
            **who,
        }
        try:
            commit(ctx, registry, model, record=record, audit=audit, expected=current, pin=False)
            return
        except ConflictError:
            continue  # another registration moved it; the latest one wins, try again on top of it
    raise MlinfraError(f"{model} was registered as v{record['version']}, but the {registry.stage} pointer kept moving")


# ---------------------------------------------------------------------------------------------------------------
# promote / rollback


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
        following = _next_stage(cfg) or "STAGE"
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


# ---------------------------------------------------------------------------------------------------------------
# approve


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


# ---------------------------------------------------------------------------------------------------------------
# history and status


def history(project: Project, model: str, stage: str | None) -> list[dict[str, Any]]:
    """Audit records of `model` (in one stage, or every stage), newest first.

    Includes a committed record whose audit write is still pending (it travels with the pointer).
    """
    names = [project.require_stage(stage)] if stage else project.stages()
    ctx = Context.load(project, *names)
    if not any(model in s.config.models for s in ctx.stages.values()):
        require_model(ctx.stages[names[0]], model)
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        if model not in ctx.stages[name].config.models:
            continue
        registry = ctx.registry(name)
        with aws_errors(f"reading {model}'s audit trail in {name}"):
            try:
                found = registry.audit_records(model)
                pointer = registry.pointer(model)
            except MissingRegistryError:
                if stage:
                    raise
                continue  # a stage not deployed (no bucket) has no history
        for record in found:
            records[record["id"]] = record
        if pointer is not None and isinstance(pointer.data.get("record"), dict):
            records.setdefault(pointer.data["record"]["id"], pointer.data["record"])
    return sorted(records.values(), key=lambda r: r["time"], reverse=True)


# What `status` says about an endpoint that is not InService (see README, "When a deployment rolls back").
ENDPOINT_STATUS_NOTES = {
    "Updating": "endpoint Updating: a deployment is in progress",
    "RollingBack": (
        "endpoint RollingBack: a rollback alarm fired during the deployment and SageMaker is returning traffic to "
        "the previous fleet; once it is InService, run `pulumi refresh` on this stack before the next `pulumi up`"
    ),
    "Failed": "endpoint Failed: see its FailureReason (`aws sagemaker describe-endpoint`)",
    "SystemUpdating": "endpoint SystemUpdating: SageMaker is maintaining it",
}


def live_version(aws: StageAws, endpoint: str, state: dict[str, str] | None = None) -> int | None:
    """The version the live endpoint serves (from its model's MLINFRA_VERSION), None if there is no endpoint.

    `state`, when given, receives the endpoint's `EndpointStatus` under "status".
    """
    sagemaker = aws.client("sagemaker")
    try:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
        if state is not None:
            state["status"] = str(described.get("EndpointStatus", ""))
        config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
        model_name = config["ProductionVariants"][0]["ModelName"]
        environment = sagemaker.describe_model(ModelName=model_name).get("PrimaryContainer", {}).get("Environment", {})
    except Exception as exc:
        if error_code(exc) in {"ValidationException", "ResourceNotFound"}:
            return None
        raise
    value = environment.get("MLINFRA_VERSION")
    return int(value) if value and str(value).isdigit() else None


def status(project: Project, names: list[str]) -> list[dict[str, Any]]:
    """Per model and stage: pinned (stack file), pointer (registry), live (endpoint), alarms, and what disagrees."""
    ctx = Context.load(project, *names)
    rows: list[dict[str, Any]] = []
    for name in names:
        stage = ctx.stages[name]
        cfg = stage.config
        registry = ctx.registry(name)
        for model, model_cfg in sorted(cfg.models.items()):
            pinned = model_cfg.pinned.version if model_cfg.pinned else None
            row: dict[str, Any] = {"model": model, "stage": name, "pinned": pinned, "pointer": None, "live": None}
            notes: list[str] = []
            with aws_errors(f"reading {model}'s state in {name}"):
                try:
                    pointer = registry.pointer(model)
                except MissingRegistryError as exc:
                    pointer = None
                    notes.append(missing_registry_note(project.root, name, exc))
                row["pointer"] = pointer.data.get("version") if pointer else None
                row.update(deployments.stage_delivery_state(registry, model, pointer))
                if pointer is not None and pointer.data.get("record"):
                    audit_key = registry.audit_key(pointer.data["record"])
                    if registry.read(audit_key) is None:
                        notes.append("audit record pending: the next action on this model writes it")
                endpoint: dict[str, str] = {}
                row["live"] = live_version(registry.aws, naming.endpoint(cfg.project, name, model), endpoint)
                if endpoint.get("status") in ENDPOINT_STATUS_NOTES:
                    notes.append(ENDPOINT_STATUS_NOTES[endpoint["status"]])
                alarm_names = [naming.alarm(cfg.project, name, model, kind) for kind in naming.ALARM_KINDS]
                alarms = registry.aws.client("cloudwatch").describe_alarms(AlarmNames=alarm_names)
            row["alarms"] = {
                a["AlarmName"]: a.get("StateValue")
                for a in [*alarms.get("MetricAlarms", []), *alarms.get("CompositeAlarms", [])]
            }
            with aws_errors(f"reading {model}'s drift in {name}"):
                row["drift"] = latest_drift(registry.aws.client("cloudwatch"), cfg.project, name, model, row["alarms"])
            notes += deployments.status_notes(row, entry=name == cfg.entry_stage, delivery=cfg.delivery_mode)
            row["notes"] = notes
            rows.append(row)
    return rows
