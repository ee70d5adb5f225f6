"""Seeing versions: every version of a model across stages, one version in full, and two versions side by side.

Read-only views over the registries: version records (`models/<m>/versions/<n>.json`), stage pointers, the stack
files' pins, model package approval states (one ListModelPackages per stage), audit records, and the files stored
with a version (`baseline.json`, `card.md`). `diff` also lists the files inside both artifacts, streaming each
through gzip and tar once (nothing is written to disk) and hashing every member.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from mlinfra.aws import aws_errors
from mlinfra.errors import BadInputError
from mlinfra.records import CorruptRecordError
from mlinfra.registry.integrity import IntegrityError
from mlinfra.registry.protocol import Context, require_model
from mlinfra.registry.status import live_version
from mlinfra.registry.store import PACKAGE_DESCRIPTION, MissingRegistryError, StageRegistry
from mlinfra.stacks.project import Project
from mlinfra_infra import layout, naming

CARD_FILE = "card.md"
BASELINE_FILE = "baseline.json"
SUMMARY_FIELDS = (
    "version",
    "digest",
    "size",
    "framework",
    "frameworkVersion",
    "image",
    "metrics",
    "gitSha",
    "description",
)


@dataclass
class StageView:
    """What one stage's registry and stack file know about a model."""

    stage: str
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    pointer: int | None = None
    pinned: int | None = None
    approvals: dict[str, str] = field(default_factory=dict)  # digest -> ModelApprovalStatus
    live: int | None = None  # the version the stage's SageMaker endpoint serves (MLINFRA_VERSION), if any
    deployed: bool = True
    corrupt: dict[int, str] = field(default_factory=dict)  # version -> why its record cannot be read


def _stages(project: Project, model: str, stage: str | None) -> tuple[Context, list[str]]:
    names = [project.require_stage(stage)] if stage else project.stages()
    if not names:
        raise BadInputError(f"no stack files in {project.relative(project.stacks_dir)}/")
    ctx = Context.load(project, *names)
    declaring = [name for name in names if model in ctx.stages[name].config.models]
    if not declaring:
        require_model(ctx.stages[names[0]], model)
    return ctx, declaring


def _read_records(registry: StageRegistry, model: str, corrupt: dict[int, str]) -> dict[int, dict[str, Any]]:
    """Every readable version record; a corrupt one is left out and its one-line error kept in `corrupt`."""
    numbers = registry.versions(model)

    def read(number: int) -> dict[str, Any] | None:
        try:
            return registry.version(model, number)
        except CorruptRecordError as exc:
            corrupt[number] = str(exc)
            return None

    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(read, numbers))
    return {n: r for n, r in zip(numbers, found, strict=True) if r is not None}


def _approvals(registry: StageRegistry, model: str) -> dict[str, str]:
    """The approval status of each digest's package in this stage (matched by the description register writes)."""
    prefix = PACKAGE_DESCRIPTION.format(model=model, digest="")
    out: dict[str, str] = {}
    paginator = registry.sagemaker.get_paginator("list_model_packages")
    try:
        for page in paginator.paginate(ModelPackageGroupName=registry.package_group(model)):
            for summary in page.get("ModelPackageSummaryList", []):
                description = str(summary.get("ModelPackageDescription") or "")
                if description.startswith(prefix):
                    out[description[len(prefix) :]] = str(summary.get("ModelApprovalStatus"))
    except Exception as exc:
        from mlinfra.aws import error_code

        if error_code(exc) not in {"ValidationException", "ResourceNotFound"}:
            raise
    return out


def stage_views(ctx: Context, names: list[str], model: str, *, strict: bool = False) -> list[StageView]:
    """What each named stage knows about `model`, in order; stages without a registry are marked unless `strict`."""
    views: list[StageView] = []
    for name in names:
        config = ctx.stages[name].config
        pin = config.models[model].pinned
        view = StageView(name, pinned=pin.version if pin else None)
        registry = ctx.registry(name)
        with aws_errors(f"reading {model}'s versions in {name}"):
            try:
                view.records = _read_records(registry, model, view.corrupt)
                pointer = registry.pointer(model)
                view.pointer = int(pointer.data["version"]) if pointer else None
                view.approvals = _approvals(registry, model)
                view.live = live_version(registry.aws, naming.endpoint(config.project, name, model))
            except MissingRegistryError:
                if strict:
                    raise
                view.deployed = False
        views.append(view)
    return views


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    out = {key: record.get(key) for key in SUMMARY_FIELDS}
    out["registered"] = record.get("registeredAt")
    out["registeredBy"] = record.get("registeredBy")
    out["registeredByUser"] = record.get("registeredByUser")
    return out


def list_versions(
    project: Project, model: str, stage: str | None = None, *, notes: list[str] | None = None
) -> list[dict[str, Any]]:
    """Every version of `model` (in one stage, or any), newest first, with where it is, runs and is approved.

    A record of the wrong shape is left out; `notes` receives its one-line error.
    """
    ctx, names = _stages(project, model, stage)
    views = stage_views(ctx, names, model, strict=stage is not None)
    if notes is not None:
        notes += [why for view in views for why in view.corrupt.values()]
    numbers = sorted({n for view in views for n in view.records}, reverse=True)
    rows: list[dict[str, Any]] = []
    for number in numbers:
        holders = [view for view in views if number in view.records]
        record = holders[0].records[number]
        row = _summary(record)
        row["stages"] = [view.stage for view in holders]
        row["approval"] = {
            view.stage: view.approvals[record["digest"]] for view in holders if record["digest"] in view.approvals
        }
        row["runningIn"] = [view.stage for view in views if view.pointer == number]
        row["pinnedIn"] = [view.stage for view in views if view.pinned == number]
        row["liveIn"] = [view.stage for view in views if view.live == number]
        rows.append(row)
    return rows


def _version_records(views: list[StageView], model: str, version: int) -> list[tuple[StageView, dict[str, Any]]]:
    found = [(view, view.records[version]) for view in views if version in view.records]
    corrupt = [view.corrupt[version] for view in views if version in view.corrupt]
    if corrupt:
        raise CorruptRecordError(corrupt[0])
    if not found:
        known = sorted({n for view in views for n in view.records})
        listing = ", ".join(f"v{n}" for n in known[-10:]) or "none yet"
        raise BadInputError(f"{model} v{version} is in no stage's registry (versions: {listing})")
    return found


def _stored_text(registry: StageRegistry, key: str) -> str | None:
    from mlinfra.aws import error_code

    try:
        return str(registry.s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read().decode("utf-8"))
    except Exception as exc:
        if error_code(exc) in {"NoSuchKey", "404"}:
            return None
        raise


def show_version(project: Project, model: str, version: int) -> dict[str, Any]:
    """One version in full: its record, per stage its copy, approval and whether it runs there, lineage, card."""
    from mlinfra.registry.status import history

    ctx, names = _stages(project, model, None)
    views = stage_views(ctx, names, model)
    found = _version_records(views, model, version)
    first_view, record = found[0]
    out = {**_summary(record), "model": model, "registeredIn": first_view.stage}
    out["stages"] = [
        {
            "stage": view.stage,
            "artifact": copy.get("artifact"),
            "packageArn": copy.get("packageArn"),
            "approval": view.approvals.get(record["digest"]),
            "running": view.pointer == version,
            "pinned": view.pinned == version,
            "live": view.live == version,
            "from": (copy.get("lineage") or {}).get("sourceStage"),
        }
        for view, copy in found
    ]
    trail = [r for r in history(project, model, None) if r.get("version") == version]
    out["lineage"] = [
        {k: r.get(k) for k in ("time", "action", "stage", "source", "actor", "reason", "forced")}
        for r in sorted(trail, key=lambda r: str(r["time"]))
    ]
    registry = ctx.registry(first_view.stage)
    with aws_errors(f"reading {model} v{version}'s files in {first_view.stage}"):
        out["card"] = _stored_text(registry, layout.version_prefix(model, version) + CARD_FILE)
        baseline = _stored_text(registry, layout.version_prefix(model, version) + BASELINE_FILE)
    out["baseline"] = _baseline_overview(json.loads(baseline)) if baseline else None
    return out


# --- diff --------------------------------------------------------------------------------------------------------


def _columns(baseline: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-feature entries of a baseline summary (schema 1: `columns` mapping; later: `features` list with names)."""
    columns = baseline.get("columns")
    if isinstance(columns, dict):
        return {str(k): v for k, v in columns.items() if isinstance(v, dict)}
    features = baseline.get("features")
    if isinstance(features, list):
        return {str(f.get("name")): f for f in features if isinstance(f, dict)}
    return {}


def _baseline_overview(baseline: dict[str, Any]) -> dict[str, Any]:
    outputs = baseline.get("outputs")
    return {
        "rows": baseline.get("rows"),
        "source": baseline.get("source"),
        "features": list(_columns(baseline)),
        # The prediction baseline's outputs (prediction drift), or None when the baseline has none.
        "outputs": list(outputs.get("columns") or {}) if isinstance(outputs, dict) else None,
    }


def artifact_files(registry: StageRegistry, model: str, digest: str) -> dict[str, dict[str, Any]]:
    """The size and sha256 of every file in an artifact, by name, streamed from the registry once."""
    body = registry.s3.get_object(Bucket=registry.bucket, Key=layout.artifact_key(model, digest))["Body"]
    files: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(fileobj=cast("Any", body), mode="r|gz") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                handle = tar.extractfile(member)
                sha256 = hashlib.sha256()
                if handle is not None:
                    while chunk := handle.read(1 << 20):
                        sha256.update(chunk)
                files[member.name.removeprefix("./")] = {"size": member.size, "sha256": sha256.hexdigest()}
    except (tarfile.TarError, OSError, EOFError) as exc:  # changed between the checksum check and the read
        raise IntegrityError(
            f"digest mismatch: {registry.artifact_uri(model, digest)} is not the gzip tarball {digest[:19]}... "
            f"names ({exc}); do not promote it, investigate and re-register"
        ) from None
    finally:
        body.close()
    return files


def _pairs(a: dict[str, Any], b: dict[str, Any]) -> Iterable[tuple[str, Any, Any]]:
    for key in sorted(set(a) | set(b)):
        yield key, a.get(key), b.get(key)


def diff_versions(project: Project, model: str, first: int, second: int) -> dict[str, Any]:
    """Metrics, image, framework, files and baseline of two versions side by side (with what changed)."""
    ctx, names = _stages(project, model, None)
    views = stage_views(ctx, names, model)
    (view_a, a), *_ = _version_records(views, model, first)
    (view_b, b), *_ = _version_records(views, model, second)
    registry_a, registry_b = ctx.registry(view_a.stage), ctx.registry(view_b.stage)
    out: dict[str, Any] = {"model": model, "a": first, "b": second}
    out["fields"] = [
        {"field": name, "a": a.get(name), "b": b.get(name), "changed": a.get(name) != b.get(name)}
        for name in ("digest", "size", "framework", "frameworkVersion", "image", "gitSha", "registeredAt")
    ]
    metrics = []
    for name, va, vb in _pairs(a.get("metrics") or {}, b.get("metrics") or {}):
        delta = vb - va if isinstance(va, int | float) and isinstance(vb, int | float) else None
        metrics.append({"metric": name, "a": va, "b": vb, "delta": delta})
    out["metrics"] = metrics
    with aws_errors(f"reading the artifacts of {model} v{first} and v{second}"):
        # The stored checksums first (one metadata call each): a tampered artifact is named, never unpacked.
        registry_a.verify_artifact(model, a["digest"])
        registry_b.verify_artifact(model, b["digest"])
        files_a = artifact_files(registry_a, model, a["digest"])
        files_b = files_a if a["digest"] == b["digest"] else artifact_files(registry_b, model, b["digest"])
        base_a = _stored_text(registry_a, layout.version_prefix(model, first) + BASELINE_FILE)
        base_b = _stored_text(registry_b, layout.version_prefix(model, second) + BASELINE_FILE)
    files = []
    for name, fa, fb in _pairs(files_a, files_b):
        state = "added" if fa is None else "removed" if fb is None else "same" if fa == fb else "changed"
        files.append({"file": name, "a": fa and fa["size"], "b": fb and fb["size"], "change": state})
    out["files"] = files
    out["baseline"] = _baseline_diff(json.loads(base_a) if base_a else None, json.loads(base_b) if base_b else None)
    return out


BASELINE_STATS = ("type", "mean", "std", "missing_rate", "distinct")


def _baseline_diff(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"a": _baseline_overview(a) if a else None, "b": _baseline_overview(b) if b else None}
    rows = []
    for name, fa, fb in _pairs(_columns(a or {}), _columns(b or {})):
        for stat in BASELINE_STATS:
            va, vb = (fa or {}).get(stat), (fb or {}).get(stat)
            if va is None and vb is None:
                continue
            rows.append({"feature": name, "stat": stat, "a": va, "b": vb, "changed": va != vb})
    out["features"] = rows
    return out
