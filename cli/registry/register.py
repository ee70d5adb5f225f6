"""`mlinfra register`: a model directory or model.tar.gz becomes an immutable version in the entry stage.

The model is checked (its handler, its image) and hashed before anything is uploaded; only a new digest is uploaded:
from the bytes the hashing pass kept on disk in one PUT verified by its SHA-256 (staging.py), or, past 5 GiB or
without disk room, packed again and streamed multipart to a temporary key, then copied into place by content. The
version record and model package are create-only; the entry stage's pointer moves through the protocol in
mlinfra.registry.protocol. A re-run of a registration cut off after its version record finishes its commit, and
genuine bytes registered over a corrupted artifact upload it again.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlinfra.aws import aws_errors
from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.records import audit_record, version_record
from mlinfra.registry import staging
from mlinfra.registry.attach import Predict, with_outputs
from mlinfra.registry.integrity import checksum_of
from mlinfra.registry.protocol import (
    Context,
    actor,
    commit,
    current_pointer,
    entry_stage,
    next_stage,
    repair_audit,
    require_model,
)
from mlinfra.registry.store import ConflictError, MultipartSink, StageRegistry
from mlinfra.stacks.files import Stage
from mlinfra.stacks.project import STATE_DIR, Project
from mlinfra_infra import layout


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
    vendor: bool = False,
    include_data: bool = False,
    predict: Predict | None = None,
) -> dict[str, Any]:
    """Register a model directory or model.tar.gz into the entry stage; returns the version record.

    With `predict` (mlinfra.serving.predictions.for_place) and a baseline, the baseline carries the model's
    answers on the sample (its prediction baseline), or a note says why it could not be computed.

    Everything that can be checked is checked before a byte is uploaded (stack file, model, inputs, image, the
    package group). The bytes are hashed first: bytes that are already version N are not uploaded again; new
    metrics or a new baseline given with them are attached to vN (audited), another image is refused. Numbers come
    from the entry stage's model package.
    With a framework, the handler is checked against its container's contract before anything is hashed.
    A directory holding data-looking files (tables, pickled DataFrames) is refused unless `include_data`.
    """
    from mlinfra.models import directory as modeldir
    from mlinfra.models import inputs, libraries, packaging

    ctx, stage = entry_stage(project)
    notes: list[str] = []
    if _declare_in_local_mode(project, stage, model):
        ctx, stage = entry_stage(project)
        notes.append(
            f"{model} was not declared: local mode declared it in every stage of its scratch stacks "
            f"({project.relative(project.stacks_dir)}/); for the real stack files run `mlinfra model add {model}`"
        )
    entry = stage.name
    require_model(stage, model)
    # Bad input first: nothing is uploaded for a wrong path, framework, image or metrics file.
    archive, handler, card = _check_model(path, framework, model, card_path=card_path)
    if not archive and not include_data:
        from mlinfra.models.datafiles import refuse_data

        refuse_data(path, model)
    metrics = inputs.read_metrics(metrics_path) if metrics_path else None
    baseline = inputs.read_baseline(baseline_path) if baseline_path else None
    if baseline is not None and baseline_path is not None:
        baseline, note = _with_predictions(
            baseline, baseline_path, path, archive=archive, handler=handler, predict=predict, model=model
        )
        notes += [note] if note else []
    # The image that fits the model (the library version its files record; offline, from the SDK's bundled image
    # config), and whether the container's start-up pip install could run without an index: before any upload.
    skip = None if archive else modeldir.skipper(path)
    choice = libraries.choose_image(
        path, framework, framework_version, image, stage.config.region, archive=archive, skip=skip, vendor=vendor
    )
    resolved_image, framework_version = choice.image, choice.framework_version

    registry = ctx.registry(entry)
    with aws_errors(f"registering {model} in {entry}"):
        registry.require_group(model)  # a stage without the model's package group gets no upload
        current_pointer(registry, model)  # a pointer deleted out of band is named before any upload
    size = packaging.input_size(path, None if archive else modeldir.skipper(path))
    # Hash first: bytes that are already a version are never uploaded again. The hashed bytes are kept on disk
    # (staging.py), so that a new digest is uploaded from them in one verified PUT.
    with staging.staged(path, archive=archive, state_dir=project.root / STATE_DIR, size_hint=size) as hashed:
        _refuse_empty_model_files(path, hashed.packed.empty)
        if on_total is not None:
            on_total(size)
        result = _register_hashed(
            ctx,
            stage,
            model,
            path,
            hashed,
            archive=archive,
            image=resolved_image,
            metrics=metrics,
            baseline=baseline,
            progress=progress,
            details={
                "framework": framework,
                "frameworkVersion": framework_version,
                "gitSha": git_sha,
                "description": description,
                "handler": handler.model_dump(mode="json") if handler else None,
            },
            card=card,
        )
    return {**result, "notes": notes}


def _with_predictions(
    baseline: dict[str, Any],
    sample: Path,
    path: Path,
    *,
    archive: bool,
    handler: Any,
    predict: Predict | None,
    model: str,
) -> tuple[dict[str, Any], str | None]:
    """The baseline with its prediction baseline, from the model's own handler on the sample; or a note why not."""
    if predict is None:
        return baseline, None
    why = "the model is an archive" if archive else "an image of one's own is not run here" if handler is None else None
    if why is None:
        try:
            place = handler.model_dump()
            return with_outputs(baseline, sample, path, framework=handler.framework, place=place, predict=predict), None
        except MlinfraError as exc:
            why = str(exc)
    return baseline, (
        f"no prediction baseline ({why}): drift scores the inputs only; to add one, run "
        f"`mlinfra baseline {model} --version N {shlex.quote(str(sample))} --model-dir DIR` where the model's "
        "handler runs"
    )


def _register_hashed(
    ctx: Context,
    stage: Stage,
    model: str,
    path: Path,
    hashed: staging.Staged,
    *,
    archive: bool,
    image: str,
    metrics: dict[str, float] | None,
    baseline: dict[str, Any] | None,
    progress: Callable[[int], None] | None,
    details: dict[str, Any],
    card: str | None,
) -> dict[str, Any]:
    """Register hashed bytes: the existing version they are, or a new version (uploaded, recorded, committed)."""
    from mlinfra.registry import cards

    entry, registry, digest = stage.name, ctx.registry(stage.name), hashed.packed.digest
    resolved_image = image
    with aws_errors(f"registering {model} in {entry}"):
        existing = registry.find_package(model, digest)
        known = registry.version(model, int(existing["ModelPackageVersion"])) if existing else None
    if known is not None:
        result = _register_existing(
            registry, stage, model, known, image=resolved_image, metrics=metrics, baseline=baseline
        )
        with aws_errors(f"registering {model} in {entry}"):
            result["repaired"] = _repair_artifact(registry, path, model, hashed, archive=archive, progress=progress)
            result["finished"] = _finish_commit(ctx, registry, model, known)
        return result

    with aws_errors(f"registering {model} in {entry}"):
        packed = hashed.packed  # stored before (an interrupted run) when the checksum matches already
        if registry.stored_checksum(model, digest) != checksum_of(digest):
            packed = _store(registry, path, model, hashed, archive=archive, progress=progress)
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
        record = version_record(
            model=model,
            version=version,
            digest=packed.digest,
            size=packed.size,
            framework=details["framework"],
            framework_version=details["frameworkVersion"],
            image=resolved_image,
            artifact=artifact,
            metrics=metrics,
            git_sha=details["gitSha"],
            who=who,
            stage=entry,
            package_arn=package["ModelPackageArn"],
            baseline=f"{layout.version_prefix(model, version)}baseline.json" if baseline else None,
            handler=details["handler"],
            description=details["description"],
            card=cards.card_key(model, version) if card is not None else None,
        ).to_json()
        cards.store_card(registry, model, version, card)
        if baseline is not None:
            with contextlib.suppress(ConflictError):
                registry.write(f"{layout.version_prefix(model, version)}baseline.json", baseline)
        registry.write_version(record)
        _move_entry_pointer(ctx, registry, model, record, who)
    return {**record, "nextStage": next_stage(stage.config)}


def _declare_in_local_mode(project: Project, stage: Stage, model: str) -> bool:
    """In local mode, declare a model no stack declares (unless its name is close to one: a typo is refused)."""
    from mlinfra.aws import local_mode
    from mlinfra_infra.config import suggest

    if model in stage.config.models or not local_mode() or suggest(model, list(stage.config.models)):
        return False
    from mlinfra.registry.declare import declare_locally

    with aws_errors(f"declaring {model} in local mode"):
        declare_locally(project, model)
    return True


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
    from mlinfra.registry.attach import attach_inputs

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
    return {**record, "existing": True, "attached": changed, "nextStage": next_stage(stage.config)}


def _store(
    registry: StageRegistry,
    path: Path,
    model: str,
    hashed: staging.Staged,
    *,
    archive: bool,
    progress: Callable[[int], None] | None,
) -> Any:
    """Upload the hashed bytes to their content address, verified; the packed artifact.

    From the staged file in one PUT when there is one; else packed again and streamed as a multipart upload to a
    temporary key, then copied into place (a second pass: bytes that changed since the hashing are refused).
    """
    digest = hashed.packed.digest
    if hashed.file is not None:
        with hashed.file.open("rb") as handle:
            registry.put_artifact(model, digest, staging.ProgressReader(handle, progress))
        return hashed.packed
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
    return packed


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
    from mlinfra.models import archives, packaging
    from mlinfra.models import directory as modeldir

    if archive:
        return archives.stream_archive(path, sink) if sink is not None else archives.inspect_archive(path)
    return packaging.pack(path, sink or _discard, skip=modeldir.skipper(path))


def _discard(_chunk: bytes) -> None:
    """A sink that keeps nothing (the hashing pass)."""


def _check_model(
    path: Path, framework: str | None, model: str, *, card_path: Path | None
) -> tuple[bool, Any, str | None]:
    """(is an archive, handler layout or None for a custom image, authors' card), checked before any upload."""
    from mlinfra.models import directory as modeldir
    from mlinfra.models import inputs, packaging

    archive = packaging.is_archive(path)
    card = inputs.read_card(card_path) if card_path else None
    if framework is None:
        return archive, None, card
    if archive:
        return archive, modeldir.check_archive(path, framework, model), card
    return archive, modeldir.check_directory(path, framework, model), card


def _refuse_empty_model_files(path: Path, empty: tuple[str, ...]) -> None:
    """BadInputError for a 0-byte file outside code/ (a model file whose save failed serves a broken model)."""
    model_files = [name for name in empty if not name.startswith("code/")]
    if model_files:
        more = f" (and {len(model_files) - 1} more)" if len(model_files) > 1 else ""
        raise BadInputError(
            f"{path}: {model_files[0]!r}{more} is empty (0 bytes); a model file that was not saved completely "
            "deploys a broken model: save it again, or leave it out (.mlinfraignore)"
        )


def _check_image(image: str) -> None:
    from pydantic import TypeAdapter, ValidationError

    from mlinfra_infra.config import ImageUri

    try:
        TypeAdapter(ImageUri).validate_python(image)
    except ValidationError:
        raise BadInputError(
            f"--image {image!r} is not an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>)"
        ) from None


def _repair_artifact(
    registry: StageRegistry,
    path: Path,
    model: str,
    hashed: staging.Staged,
    *,
    archive: bool,
    progress: Callable[[int], None] | None,
) -> bool:
    """True when the stored bytes of a known digest were corrupted or lost, and are now uploaded again.

    Checked with S3's stored checksum (nothing downloaded); these genuine bytes replace what is stored.
    """
    if registry.stored_checksum(model, hashed.packed.digest) == checksum_of(hashed.packed.digest):
        return False
    _store(registry, path, model, hashed, archive=archive, progress=progress)
    return True


def _finish_commit(ctx: Context, registry: StageRegistry, model: str, record: dict[str, Any]) -> bool:
    """Finish a registration cut off after its version record: its audit record and the entry stage's pointer.

    True when something was missing (and is now written). A later version registered since keeps the pointer; only
    the audit record is added then.
    """
    version = int(record["version"])
    pointer = current_pointer(registry, model)
    carried = pointer.data.get("record") if pointer is not None else None
    # Read before writing: the same bytes registered again write nothing at all when nothing is missing.
    pending = isinstance(carried, dict) and registry.read(registry.audit_key(carried)) is None
    if pending:
        repair_audit(registry, model, pointer)
    if isinstance(carried, dict) and carried.get("action") == "register" and carried.get("version") == version:
        return pending
    if any(r.get("action") == "register" for r in registry.audit_records(model, version=version)):
        return False
    who = actor(registry.aws)
    if pointer is not None and isinstance(pointer.data.get("version"), int) and pointer.data["version"] > version:
        registry.write_audit(_register_audit(registry, model, record, who, previous=None))
        return True
    _move_entry_pointer(ctx, registry, model, record, who)
    return True


def _register_audit(
    registry: StageRegistry, model: str, record: dict[str, Any], who: dict[str, Any], *, previous: int | None
) -> dict[str, Any]:
    return audit_record(
        "register",
        model=model,
        stage=registry.stage,
        version=record["version"],
        previous=previous,
        digest=record["digest"],
        reason=f"registered {record['digest'][:19]}",
        who=who,
    )


def _move_entry_pointer(
    ctx: Context, registry: StageRegistry, model: str, record: dict[str, Any], who: dict[str, Any]
) -> None:
    """The entry stage's pointer marks the latest registered version (the default for the next promotion)."""
    for attempt in range(5):
        current = current_pointer(registry, model) if attempt == 0 else registry.pointer(model)
        repair_audit(registry, model, current)
        audit = _register_audit(registry, model, record, who, previous=current.data.get("version") if current else None)
        try:
            commit(ctx, registry, model, record=record, audit=audit, expected=current, pin=False)
            return
        except ConflictError:
            continue  # another registration moved it; the latest one wins, try again on top of it
    raise MlinfraError(f"{model} was registered as v{record['version']}, but the {registry.stage} pointer kept moving")


def dry_run(
    project: Any,
    path: Path,
    model: str,
    framework: str | None,
    *,
    framework_version: str | None = None,
    image: str | None = None,
) -> dict[str, Any]:
    """What `register` would upload, checked as `register` checks it but without any AWS call or write.

    Returns {"model", "path", "handler", "image", "frameworkVersion", "libraryVersion", "libraryFile", "files":
    [{"path", "size", "digest"}], "size", "digest"}: the image resolved and checked exactly as `register` does, the
    files it would pack and the model.tar.gz's size and digest (for an archive: its members, and the archive as given).
    """
    from mlinfra.models import archives, libraries, packaging
    from mlinfra.models.directory import archive_files, check_archive, check_directory, directory_files, skipper

    _ctx, stage = entry_stage(project)
    require_model(stage, model)
    archive = packaging.is_archive(path)
    if framework is None:
        handler = None
    elif archive:
        handler = check_archive(path, framework, model)
    else:
        handler = check_directory(path, framework, model)
    choice = libraries.choose_image(
        path, framework, framework_version, image, stage.config.region, archive=archive,
        skip=None if archive else skipper(path),
    )  # fmt: skip
    if archive:
        files = archive_files(path)
        packed = archives.inspect_archive(path)
    else:
        files = directory_files(path)
        packed = packaging.pack(path, lambda _chunk: None, skip=skipper(path))
    return {
        "model": model,
        "path": str(path),
        "handler": handler.model_dump(mode="json") if handler else None,
        **choice.to_json(),
        "files": [f.to_json() for f in files],
        "size": packed.size,
        "digest": packed.digest,
    }
