"""Attaching metrics and a baseline to a version that exists (`mlinfra attach`, `baseline`, `register` again).

A version's artifact and image never change (stages pin them); its metrics, its baseline, its card and its
description may be added or replaced in the entry stage, each change audited with who, when and what changed from
what to what. Steps, in order:

1. Read and check: the version record, the new inputs, and what is stored now. Nothing new: nothing is written.
2. The baseline file (`versions/<n>/baseline.json`), when it changed: created, or replaced with If-Match.
3. The commit: the version record replaced with If-Match, carrying the `attach` audit record (`lastAttach`).
4. The audit record (create-only). A run that stopped before it leaves it in the version record, and the next
   attach or register of that version writes it.

Stages the version was promoted into before keep their copy; a later promotion copies the files as they are then.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlinfra.aws import aws_errors
from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.records import audit_record
from mlinfra.registry import cards
from mlinfra.registry.store import ConflictError, StageRegistry
from mlinfra.stacks.project import Project
from mlinfra_infra import layout

BASELINE_FILE = "baseline.json"
Predict = Callable[[Path, str | None, Path, dict[str, Any]], dict[str, Any]]
"""(model directory, framework, sample, handler place) -> a baseline's `outputs` (mlinfra.serving.predictions)."""


def baseline_key(model: str, version: int) -> str:
    """Where a version's baseline is stored in each stage's registry."""
    return f"{layout.version_prefix(model, version)}{BASELINE_FILE}"


def baseline_summary(baseline: dict[str, Any] | None) -> dict[str, Any] | None:
    """What an audit record keeps of a baseline: its schema, rows, features and a digest (not the whole file)."""
    if baseline is None:
        return None
    columns = baseline.get("columns") or baseline.get("features") or {}
    if isinstance(columns, dict):
        names = [str(name) for name in columns]
    else:
        names = [str(c.get("name")) if isinstance(c, dict) else str(c) for c in columns]
    canonical = json.dumps(baseline, sort_keys=True, separators=(",", ":")).encode()
    return {
        "schema": baseline.get("schema"),
        "rows": baseline.get("rows"),
        "features": names,
        "sha256": hashlib.sha256(canonical).hexdigest(),
    }


def attach_inputs(  # noqa: PLR0912 - one check per kind of input, then one commit
    registry: StageRegistry,
    model: str,
    version: int,
    *,
    metrics: dict[str, float] | None,
    baseline: dict[str, Any] | None,
    who: dict[str, Any],
    reason: str | None = None,
    card: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Attach new metrics and/or a baseline to `version` in `registry` (the entry stage); see the module docstring.

    Returns {"model", "version", "stage", "digest", "changed": [...], "record": <version record>}; `changed` is
    empty, and nothing was written, when the inputs are what the version already has.
    """
    with aws_errors(f"attaching inputs to {model} v{version} in {registry.stage}"):
        stored = registry.read(layout.version_key(model, version))
        if stored is None:
            registry.require_version(model, version)  # raises the listing of known versions
            raise MlinfraError(f"{model} v{version} vanished while attaching; re-run")  # pragma: no cover
        record = stored.data
        pending = record.get("lastAttach")
        if isinstance(pending, dict):
            registry.write_audit(pending)  # a run that committed but stopped before its audit record
        changes: dict[str, Any] = {}
        if metrics is not None and metrics != (record.get("metrics") or {}):
            changes["metrics"] = {"old": record.get("metrics") or {}, "new": metrics}
        key = baseline_key(model, version)
        old_baseline = registry.read(key) if baseline is not None else None
        if baseline is not None and (old_baseline is None or old_baseline.data != baseline):
            changes["baseline"] = {
                "old": baseline_summary(old_baseline.data if old_baseline else None),
                "new": baseline_summary(baseline),
            }
        if description is not None and description != record.get("description"):
            changes["description"] = {"old": record.get("description"), "new": description}
        old_card, card_etag = cards.stored_card(registry, model, version) if card is not None else (None, None)
        if card is not None and card != old_card:
            changes["card"] = {"old": _text_digest(old_card), "new": _text_digest(card)}
        summary = {"model": model, "version": version, "stage": registry.stage, "digest": record["digest"]}
        if not changes:
            return {**summary, "changed": [], "record": record}

        if "card" in changes and card is not None:
            try:
                cards.replace_card(registry, model, version, card, card_etag)
            except ConflictError:
                raise _concurrent(model, version) from None
        if "baseline" in changes and baseline is not None:
            try:
                registry.write(key, baseline, if_match=old_baseline.etag if old_baseline else None)
            except ConflictError:
                raise _concurrent(model, version) from None
        audit = audit_record(
            "attach",
            model=model,
            stage=registry.stage,
            version=version,
            digest=record["digest"],
            reason=reason or f"attached {', '.join(changes)}",
            who=who,
            changes=changes,
        )
        updated = dict(record)
        if "metrics" in changes:
            updated["metrics"] = metrics
        if "baseline" in changes:
            updated["baseline"] = key
        if "description" in changes:
            updated["description"] = description
        if "card" in changes:
            updated["card"] = cards.card_key(model, version)
        updated["lastAttach"] = audit
        try:
            registry.write(layout.version_key(model, version), updated, if_match=stored.etag)
        except ConflictError:
            raise _concurrent(model, version) from None
        registry.write_audit(audit)
    return {**summary, "changed": list(changes), "record": updated}


def _text_digest(text: str | None) -> dict[str, Any] | None:
    """What an audit record keeps of a card: its size and sha256 (the text itself is stored with the version)."""
    if text is None:
        return None
    data = text.encode("utf-8")
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _concurrent(model: str, version: int) -> MlinfraError:
    return MlinfraError(
        f"conflict: {model} v{version}'s record changed while inputs were attached to it; nothing was recorded "
        "for this run — run the command again"
    )


def attach(
    project: Project,
    model: str,
    version: int,
    *,
    metrics_path: Path | None,
    baseline_path: Path | None,
    reason: str | None = None,
    card_path: Path | None = None,
    description: str | None = None,
    model_dir: Path | None = None,
    predict: Predict | None = None,
) -> dict[str, Any]:
    """`mlinfra attach` / `mlinfra baseline`: add or replace a version's metrics, baseline, card or description.

    With `model_dir` (the directory the version was registered from) and `predict`
    (mlinfra.serving.predictions.for_place), the baseline carries the prediction baseline: the model's answers on
    the sample through its own handler.
    """
    from mlinfra.models import inputs
    from mlinfra.registry.protocol import Context, actor, entry_stage, require_model

    if metrics_path is None and baseline_path is None and card_path is None and description is None:
        raise BadInputError(
            "give --metrics, --baseline, --card or --description (any of them): what to attach to the version"
        )
    if description is not None and (not description.strip() or "\n" in description):
        raise BadInputError("--description is one line of text; give it without line breaks")
    if model_dir is not None and baseline_path is None:
        raise BadInputError(
            "--model-dir predicts the baseline sample: give the sample too "
            f"(`mlinfra baseline {model} --version {version} DATA --model-dir {model_dir}`)"
        )
    ctx, stage = entry_stage(project)
    require_model(stage, model)
    metrics = inputs.read_metrics(metrics_path) if metrics_path else None
    baseline = inputs.read_baseline(baseline_path) if baseline_path else None
    card = inputs.read_card(card_path) if card_path else None
    registry = Context.registry(ctx, stage.name)
    with aws_errors(f"reading {model} v{version} in {stage.name}"):
        who = actor(registry.aws)
        record = registry.version(model, version) if model_dir is not None else None
    if model_dir is not None and baseline is not None and baseline_path is not None and predict is not None:
        if record is None:
            raise BadInputError(f"{model} has no version {version} in {stage.name}; see `mlinfra history {model}`")
        baseline = for_version(baseline, baseline_path, model_dir, record, predict)
    result = attach_inputs(
        registry,
        model,
        version,
        metrics=metrics,
        baseline=baseline,
        who=who,
        reason=reason,
        card=card,
        description=description,
    )
    result.pop("record")
    return result


def with_outputs(
    baseline: dict[str, Any],
    sample: Path,
    model_dir: Path,
    *,
    framework: str | None,
    place: dict[str, Any],
    predict: Predict,
) -> dict[str, Any]:
    """`baseline` with its prediction baseline (`outputs`): the model's answers on `sample`, from `predict`."""
    from mlinfra_drift.baseline import Baseline

    out = {**baseline, "outputs": predict(model_dir, framework, sample, place)}
    Baseline.model_validate(out)
    return out


def for_version(
    baseline: dict[str, Any], sample: Path, model_dir: Path, record: dict[str, Any], predict: Predict
) -> dict[str, Any]:
    """`baseline` with the prediction baseline of the registered version `record`, from its model directory.

    The directory must pack to the version's digest (the bytes the endpoint runs); BadInputError otherwise, and for
    a version on an image of one's own (no framework: its handler is not run here). What `predict` raises (the
    handler cannot predict the sample here) fails the command.
    """
    from mlinfra.models import packaging
    from mlinfra.models.directory import skipper

    name, version = record.get("model"), record.get("version")
    handler = record.get("handler")
    framework = record.get("framework")
    if not framework or not isinstance(handler, dict):
        raise BadInputError(
            f"{name} v{version} runs an image of one's own: its handler is not run here, so --model-dir cannot compute "
            "a prediction baseline; drop --model-dir"
        )
    if not model_dir.is_dir():
        raise BadInputError(
            f"--model-dir {model_dir}: not a folder; give the model directory v{version} was registered from"
        )
    digest = packaging.pack(model_dir, lambda _chunk: None, skip=skipper(model_dir)).digest
    expected = str(record.get("digest"))
    if digest != expected:
        raise BadInputError(
            f"--model-dir {model_dir} packs to {digest[:19]}..., not {name} v{version}'s {expected[:19]}...: "
            "give the directory that version was registered from (`mlinfra register DIR --dry-run` shows a digest)"
        )
    return with_outputs(baseline, sample, model_dir, framework=str(framework), place=handler, predict=predict)
