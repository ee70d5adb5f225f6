"""`mlinfra drift` glue: resolve the stage, version, baseline, capture and thresholds, then score with mlinfra_drift.

The scoring itself (and everything the scheduled drift job shares) lives in the drift engine, `mlinfra_drift`;
this module only decides what to score and where the results go.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.stacks.project import Project
from mlinfra_infra import layout, naming

if TYPE_CHECKING:
    from mlinfra.registry.store import StageRegistry
    from mlinfra.stacks.files import Stage
    from mlinfra_drift.baseline import Baseline
    from mlinfra_drift.report import DriftReport, PredictionDrift

DEFAULT_SINCE = "24h"
MAX_WINDOW = timedelta(days=90)
_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
BASELINE_NAME = "baseline.json"


@dataclass
class DriftRun:
    """What `mlinfra drift` did: the report, where the capture came from, how many metrics it published."""

    report: DriftReport
    source: str
    published: int
    report_path: Path | None
    warnings: list[str]
    min_rows: int = 1
    baseline_rows: int | None = None
    baseline_source: str = ""
    baseline_date: str | None = None
    trend: list[float] = field(default_factory=list)  # max PSI of the drift job's last reports, oldest first

    @property
    def judged(self) -> bool:
        """Whether the window has enough rows to judge (alarms.driftMinRows); an empty window is not judged either."""
        return self.report.rows >= self.min_rows

    def verdict(self) -> str:
        """The report's first sentence: how many features drifted and which, or why there is no verdict."""
        report = self.report
        if not report.rows:
            return f"No verdict: no captured rows of {report.model} in {report.stage} in this window."
        if not self.judged:
            return (
                f"Too few rows to judge: {report.rows} row(s) of {report.model} in {report.stage}, fewer than "
                f"alarms.driftMinRows ({self.min_rows}); nothing is flagged or cleared, nothing published."
            )
        drifted = report.drifted
        predictions = report.predictions
        if not drifted and predictions is not None and predictions.drifted:
            sentence = f"All {len(report.features)} features are within their thresholds."
        elif not drifted:
            sentence = f"No drift: all {len(report.features)} features are within their thresholds."
        else:
            more = f" and {len(drifted) - 8} more" if len(drifted) > 8 else ""
            sentence = f"{len(drifted)} of {len(report.features)} features drifted: "
            sentence += ", ".join(f.name for f in drifted[:8]) + more + "."
        moved = self.predictions_sentence()
        return f"{sentence} {moved}" if moved else sentence

    def predictions_sentence(self) -> str:
        """Prediction drift in one sentence; empty when not scored (its note says why) or the window is not judged.

        E.g. "Predictions drifted: share of class 1 0.37 → 0.62, PSI 0.41."
        """
        predictions = self.report.predictions
        if predictions is None or predictions.status != "scored" or not self.judged:
            return ""
        return predictions.sentence()

    @property
    def drifted(self) -> bool:
        """Whether a feature or a prediction drifted over its threshold (judged windows only): exit 3."""
        predictions = self.report.predictions
        return self.judged and (bool(self.report.drifted) or (predictions is not None and predictions.drifted))

    def to_json(self) -> dict[str, Any]:
        """`mlinfra drift --json`: the report's JSON, plus the verdict and what it was judged against."""
        return {
            **self.report.to_json_dict(),
            "verdict": self.verdict(),
            "judged": self.judged,
            "minRows": self.min_rows,
            "baseline": {"rows": self.baseline_rows, "source": self.baseline_source, "registered": self.baseline_date},
            "trend": self.trend,
        }


def parse_duration(text: str) -> timedelta:
    """`90m`, `24h`, `7d`, `2w` as a timedelta; BadInputError otherwise."""
    match = _DURATION.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise BadInputError(f"--since {text!r}: give a positive duration such as 90m, 24h, 7d or 2w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_when(text: str, option: str) -> datetime:
    """An ISO 8601 time (`2026-11-26`, `2026-11-26T10:00`, `...Z` or with an offset; no zone = UTC)."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInputError(f"{option} {text!r}: not an ISO 8601 time; e.g. 2026-11-26T10:00Z") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def window(since: str | None, start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The [start, end) window of `--since` or `--from/--to` (default: the last 24 hours)."""
    if since and (start or end):
        raise BadInputError("give --since or --from/--to, not both")
    if start or end:
        if not start:
            raise BadInputError("--to needs --from (or use --since 24h)")
        first = parse_when(start, "--from")
        last = parse_when(end, "--to") if end else now
    else:
        last = now
        first = now - parse_duration(since or DEFAULT_SINCE)
    if last <= first:
        raise BadInputError(
            f"the window ends ({last:%Y-%m-%dT%H:%M:%SZ}) before it starts ({first:%Y-%m-%dT%H:%M:%SZ})"
        )
    if last - first > MAX_WINDOW:
        raise BadInputError(f"the window spans {(last - first).days} days; score at most 90 days at a time")
    return first, last


def _running_version(stage: Stage, registry: StageRegistry, model: str) -> int | None:
    """What the stage runs: the live endpoint's version, else the pinned version, else the registry's pointer."""
    from mlinfra.registry.status import live_version

    live = live_version(registry.aws, naming.endpoint(stage.config.project, stage.name, model))
    if live is not None:
        return live
    pinned = stage.config.models[model].pinned
    if pinned is not None:
        return pinned.version
    pointer = registry.pointer(model)
    version = pointer.data.get("version") if pointer else None
    return int(version) if isinstance(version, int) else None


def load_baseline_file(path: Path) -> Baseline:
    """A baseline.json, or a data sample (CSV/Parquet) summarized on the spot."""
    from pydantic import ValidationError

    from mlinfra.models.inputs import read_baseline
    from mlinfra_drift.baseline import Baseline

    if path.suffix.lower() != ".json":
        return Baseline.model_validate(read_baseline(path))
    try:
        return Baseline.from_json(path.read_bytes())
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror})") from None
    except ValidationError as exc:
        raise BadInputError(f"{path}: not an mlinfra baseline ({_first_error(exc)})") from None


def _first_error(exc: Any) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ())) or "document"
    return f"{where}: {error.get('msg', 'invalid')}"


def _registry_baseline(registry: StageRegistry, model: str, version: int, stage: str) -> Baseline:
    from pydantic import ValidationError

    from mlinfra_drift.baseline import Baseline

    if registry.version(model, version) is None:
        raise BadInputError(f"{model} has no version {version} in {stage}; see `mlinfra history {model}`")
    key = layout.version_prefix(model, version) + BASELINE_NAME
    stored = registry.read(key)
    if stored is None:
        raise BadInputError(
            f"{model} v{version} in {stage} has no baseline; attach one with "
            f"`mlinfra baseline {model} --version {version} DATA` (or pass --baseline FILE)"
        )
    try:
        return Baseline.model_validate(stored.data)
    except ValidationError as exc:
        raise MlinfraError(f"s3://{registry.bucket}/{key}: not a readable baseline ({_first_error(exc)})") from None


@contextlib.contextmanager
def _progress(show: bool, source: str) -> Iterator[Callable[[Any], None] | None]:
    """A transient progress line on stderr (files and bytes read) while the capture is scored, when `show`."""
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=Console(stderr=True), transient=True
    ) as bar:
        task = bar.add_task(f"reading {source}")
        seen = {"files": 0, "bytes": 0}

        def on_file(file: Any) -> None:
            seen["files"] += 1
            seen["bytes"] += file.size
            bar.update(task, description=f"{source}: {seen['files']} file(s), {seen['bytes'] / 1e6:.1f} MB scored")

        yield on_file


@contextlib.contextmanager
def _worker_errors() -> Iterator[None]:
    """A worker process that died becomes a one-line failure (exit 1)."""
    from mlinfra_drift.parallel import WorkerDiedError

    try:
        yield
    except WorkerDiedError as exc:
        raise MlinfraError(str(exc)) from None


def write_atomically(path: Path, text: str) -> None:
    """Write a file through a temporary file in the same folder, so a failure leaves no half-written page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def check_writable(path: Path, option: str) -> None:
    """BadInputError unless a file can be created at `path` (probed with a temporary file, removed at once).

    Missing folders on the way are fine (they are created when the file is written): the nearest existing one is
    probed.

    Checked before scoring, so a report that cannot be written costs no scoring and writes nothing.
    """
    if path.is_dir():
        raise BadInputError(f"{option} {path}: is a folder; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # missing folders are created when the report is written, below the nearest one
    if not parent.is_dir():
        raise BadInputError(f"{option} {path}: {parent} is not a folder; give a path in a folder")
    try:
        handle, temp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
    except OSError as exc:
        raise BadInputError(f"{option} {path}: cannot write in {parent} ({exc.strerror or exc})") from None
    os.close(handle)
    Path(temp).unlink(missing_ok=True)


def _check_paths(capture: Path | None, report_path: Path | None) -> None:
    if capture is not None and not capture.exists():
        raise BadInputError(f"--capture {capture}: no such file or folder")
    if report_path is not None:
        check_writable(report_path, "--report")


def _write_report(path: Path, html: str) -> None:
    try:
        write_atomically(path, html)
    except OSError as exc:
        raise MlinfraError(f"--report {path}: cannot write it ({exc.strerror or exc})") from None


def _skipped_warnings(capture: Path | None, skipped: dict[str, int]) -> list[str]:
    out = []
    if skipped.get("layout"):
        out.append(
            f"--capture {capture}: skipped {skipped['layout']} .jsonl file(s) not in SageMaker's layout "
            "(<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl, read from the capture prefix, an endpoint or a variant "
            "folder); point --capture at one of those folders, or at a single .jsonl file"
        )
    if skipped.get("window"):
        out.append(
            f"--capture {capture}: skipped {skipped['window']} .jsonl file(s) in hour folders outside the window "
            "(widen it with --since, --from/--to)"
        )
    return out


def _warnings(stage: Stage, model: str, *, capture: Path | None, baseline: Baseline, version: int | None) -> list[str]:
    """What the user should know about a run that is not an error."""
    warnings = []
    settings = stage.config.models[model]
    if capture is None and not (settings.capture.enabled and settings.mode == "realtime"):
        warnings.append(
            f"{model} does not capture data in {stage.name} (capture.enabled is off or the endpoint is serverless): "
            "there is nothing to score there; score a stage that captures, or pass --capture PATH"
        )
    if not baseline.ordered:
        warnings.append(
            f"the baseline is schema 1 and records no column order: CSV captures are mapped to "
            f"{', '.join(baseline.features)} in that order; re-attach it (`mlinfra baseline {model} --version "
            f"{version} DATA`) to record the header"
        )
    return warnings


def drift(  # noqa: PLR0915 - one linear sequence: resolve, read, score, judge, publish
    project: Project,
    model: str,
    *,
    stack: str | None,
    version: int | None = None,
    since: str | None = None,
    start: str | None = None,
    end: str | None = None,
    capture: Path | None = None,
    baseline: Path | None = None,
    publish: bool = False,
    report_path: Path | None = None,
    now: datetime | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> DriftRun:
    """Score MODEL's captured traffic in a stage over a window against a version's baseline.

    Bad input (unknown stage/model/version, no baseline, a capture whose rows have another width than the
    baseline's features, `--publish` of a local capture) raises BadInputError before anything is written.
    """
    from mlinfra.aws import StageAws, aws_errors
    from mlinfra.registry.protocol import require_model
    from mlinfra.registry.store import StageRegistry
    from mlinfra.stacks.files import load_stage
    from mlinfra_drift.capture import LocalCapture, S3Access, S3Capture
    from mlinfra_drift.publish import publish as put_metrics
    from mlinfra_drift.report import Thresholds
    from mlinfra_drift.scoring import score

    stage = load_stage(project, project.resolve_stack(stack))
    require_model(stage, model)
    first, last = window(since, start, end, now or datetime.now(UTC))
    if publish and capture is not None:
        raise BadInputError(
            "--publish puts the stage's drift metric: score the stage's own capture (drop --capture), "
            "or drop --publish to check a local capture"
        )
    _check_paths(capture, report_path)
    alarms = stage.config.models[model].alarms
    thresholds = Thresholds(psi=alarms.drift_psi, js=alarms.drift_js, ks_pvalue=alarms.drift_ks_pvalue)
    registry = StageRegistry(StageAws(stage.config, project.root))
    needs_registry = baseline is None or capture is None or publish
    with aws_errors(f"scoring {model}'s drift in {stage.name}"):
        if version is None and needs_registry:
            version = _running_version(stage, registry, model)
            if version is None:
                raise BadInputError(
                    f"no version of {model} runs in {stage.name} yet; name one with --version N "
                    f"(`mlinfra history {model}` lists them)"
                )
        the_baseline = (
            load_baseline_file(baseline) if baseline else _registry_baseline(registry, model, version or 0, stage.name)
        )
        source: Any
        if capture is not None:
            source = LocalCapture(capture, first, last)
            shown = str(capture)
        else:
            endpoint = naming.endpoint(stage.config.project, stage.name, model)
            prefix = layout.capture_prefix(model)
            access = S3Access.of(registry.aws.session, registry.s3)  # worker processes read files themselves
            source = S3Capture(registry.s3, registry.bucket, prefix, first, last, endpoint=endpoint, access=access)
            shown = f"s3://{registry.bucket}/{prefix}/{endpoint}/"
        with _progress(progress, shown) as on_file, _worker_errors():
            report = score(
                source,
                the_baseline,
                thresholds,
                model=model,
                stage=stage.name,
                version=version,
                on_file=on_file,
                workers=workers,
            )
        if not report.rows and report.refused_widths:
            widths = ", ".join(str(w) for w in sorted(report.refused_widths))
            raise BadInputError(
                f"capture rows have {widths} field(s) but the baseline has {report.width} features "
                f"({', '.join(the_baseline.features)}): the capture does not match this version's inputs "
                "(check --version, or re-attach a baseline of the same columns)"
            )
        published = 0
        min_rows = alarms.drift_min_rows
        if report.rows and report.rows < min_rows:
            # Too few rows to judge: no feature is flagged (exit 0), and no metric could trip the alarm.
            report = report.model_copy(
                update={
                    "features": [f.model_copy(update={"drifted": False}) for f in report.features],
                    "predictions": _unflagged(report.predictions),
                }
            )
        elif publish and report.rows:
            published = put_metrics(registry.aws.client("cloudwatch"), report, stage=stage.name, model=model)
        registered = registry.version(model, version) if version is not None and needs_registry else None
        trend = _trend(registry, model) if capture is None else []
    report.source = shown
    if report_path is not None:
        _write_report(report_path, report.html())
    warnings = _warnings(stage, model, capture=capture, baseline=the_baseline, version=version)
    if isinstance(source, LocalCapture):
        warnings += _skipped_warnings(capture, source.skipped())
    return DriftRun(
        report=report,
        source=shown,
        published=published,
        report_path=report_path,
        warnings=warnings,
        min_rows=min_rows,
        baseline_rows=the_baseline.rows,
        baseline_source=the_baseline.source,
        baseline_date=(registered or {}).get("registeredAt"),
        trend=trend,
    )


def _unflagged(predictions: PredictionDrift | None) -> PredictionDrift | None:
    """Prediction drift with nothing flagged (a window too small to judge)."""
    if predictions is None:
        return None
    outputs = [o.model_copy(update={"drifted": False}) for o in predictions.outputs]
    return predictions.model_copy(update={"drifted": False, "outputs": outputs})


TREND_RUNS = 5


def _trend(registry: StageRegistry, model: str) -> list[float]:
    """The max PSI of the drift job's last reports of `model` in this stage (oldest first; empty when none)."""
    import json

    from mlinfra.aws import error_code

    prefix = f"{layout.monitoring_prefix(model)}reports/"
    keys: list[str] = []
    try:
        for page in registry.s3.get_paginator("list_objects_v2").paginate(Bucket=registry.bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json")]
    except Exception as exc:
        if error_code(exc) in {"NoSuchBucket", "AccessDenied"}:
            return []
        raise
    values = []
    for key in sorted(keys)[-TREND_RUNS:]:
        body = registry.s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read()
        value = json.loads(body).get("maxPsi")
        if isinstance(value, int | float):
            values.append(float(value))
    return values
