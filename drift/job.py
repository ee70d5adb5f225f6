"""The scheduled drift job: the AWS Lambda handler that runs mlinfra's drift engine on each monitored model's capture.

EventBridge Scheduler invokes `handler` with the stage's JobSpec (written by the DriftMonitoring component). For each
model, one run:

1. reads its checkpoint (`monitoring/<model>/checkpoint.json`): every capture object last modified before its
   `watermark` has been scored;
2. lists the capture partitions that can hold newer objects (the hours from one before the watermark to now) and
   keeps the objects last modified in [watermark, now - settle): each capture file is scored exactly once, as long as
   SageMaker's upload of a file is visible within `settle` of its LastModified;
3. scores them against the running version's baseline, one file in memory at a time (mlinfra_drift.score);
4. writes the JSON and HTML report to `monitoring/<model>/reports/yyyy/mm/dd/<time>.{json,html}`;
5. publishes the metrics the alarms watch (mlinfra_drift.publish; PredictionPSI too when the baseline has a
   prediction baseline and the capture holds outputs), and `ScoredRows` = 0 when the window held no
   rows (or fewer than the model's `alarms.driftMinRows`: too few to judge), so the drift-silent alarm tells a
   quiet endpoint from a silent job;
6. moves the checkpoint with a conditional write (If-Match), so two overlapping runs cannot both advance it.

A model that fails (no baseline, an AWS error) does not stop the others; the run then raises, which Lambda counts in
its Errors metric, which the DriftJob's alarm watches. A run close to Lambda's timeout stops reading, scores what it
read and leaves the rest to the next run (the watermark stops at the first file not read).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from . import metrics
from .baseline import Baseline
from .capture import CaptureFile, hour_path
from .jobspec import REPORTS_DIR, Checkpoint, JobSpec, ModelJob
from .publish import publish
from .report import DriftReport, Thresholds
from .score import Scorer

LOG = logging.getLogger("mlinfra_drift.job")
# Stop reading new files when less than this is left of the invocation: scoring, reports and checkpoint need it.
RESERVE_MILLIS = 60_000
# Capture files downloading while one is scored (memory: that many files more, a few hundred KB each).
PREFETCH = 2


class JobError(RuntimeError):
    """Raised at the end of a run in which at least one model failed (Lambda counts it in Errors)."""


@dataclass(frozen=True)
class CaptureObject:
    """A capture file as listed: its key and when S3 last modified it."""

    key: str
    last_modified: datetime


@dataclass
class ModelResult:
    """What one model's run did, returned by the handler and logged."""

    model: str
    files: int = 0
    rows: int = 0
    max_psi: float | None = None
    drifted: list[str] = field(default_factory=list)
    prediction_psi: float | None = None  # the largest PSI over the model's outputs (None: not scored)
    predictions_drifted: list[str] = field(default_factory=list)  # outputs over the threshold
    report_key: str | None = None
    watermark: str = ""
    complete: bool = True
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The handler's per-model result."""
        return {
            "model": self.model,
            "files": self.files,
            "rows": self.rows,
            "maxPsi": self.max_psi,
            "drifted": self.drifted,
            "predictionPsi": self.prediction_psi,
            "predictionsDrifted": self.predictions_drifted,
            "report": self.report_key,
            "watermark": self.watermark,
            "complete": self.complete,
            "error": self.error,
        }


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point: score every model of the JobSpec in `event`; raise JobError if any failed."""
    spec = JobSpec.model_validate(event)
    s3 = boto3.client("s3")
    cloudwatch = boto3.client("cloudwatch")
    return run(spec, s3, cloudwatch, now=datetime.now(UTC), remaining_millis=_remaining(context))


def _remaining(context: Any) -> Any:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return getter if callable(getter) else (lambda: 10**9)


def run(
    spec: JobSpec, s3: Any, cloudwatch: Any, *, now: datetime, remaining_millis: Any = lambda: 10**9
) -> dict[str, Any]:
    """One run of the job over every model of `spec` at time `now`."""
    results = []
    for job in spec.models:
        try:
            result = run_model(spec, job, s3, cloudwatch, now=now, remaining_millis=remaining_millis)
        except Exception as exc:
            LOG.exception("drift job failed for %s", job.model)
            result = ModelResult(model=job.model, complete=False, error=f"{type(exc).__name__}: {exc}")
        LOG.info("drift job result", extra={"result": result.to_json()})
        results.append(result)
    failed = [r for r in results if r.error]
    summary = {"stage": spec.stage, "models": [r.to_json() for r in results]}
    if failed:
        raise JobError("; ".join(f"{r.model}: {r.error}" for r in failed))
    return summary


def run_model(
    spec: JobSpec, job: ModelJob, s3: Any, cloudwatch: Any, *, now: datetime, remaining_millis: Any
) -> ModelResult:
    """Score one model's capture since its checkpoint, write its report, publish, move the checkpoint."""
    checkpoint, etag = read_checkpoint(s3, spec.bucket, job)
    earliest = now - timedelta(seconds=spec.max_lookback_seconds)
    start = checkpoint.watermark if checkpoint else now - timedelta(seconds=spec.first_lookback_seconds)
    if start < earliest:
        LOG.warning(
            "%s: checkpoint at %s is older than the longest look-back; scoring from %s", job.model, start, earliest
        )
        start = earliest
    until = now - timedelta(seconds=spec.settle_seconds)
    result = ModelResult(model=job.model, watermark=_iso(max(start, until)))
    if until <= start:
        return result

    objects = list_new_capture(s3, spec.bucket, job.capture_prefix, start, until)
    baseline = Baseline.from_json(_read(s3, spec.bucket, job.baseline_key, what=f"the baseline of v{job.version}"))
    scorer = Scorer(baseline)
    watermark = until
    previous: CaptureObject | None = None
    for obj, data in _prefetched(s3, spec.bucket, objects):
        if remaining_millis() < RESERVE_MILLIS and (previous is None or obj.last_modified > previous.last_modified):
            # Out of time: the rest (everything last modified from here on) is the next run's. Files sharing the
            # last scored one's LastModified are still read, so the watermark never splits them.
            watermark = obj.last_modified
            result.complete = False
            break
        scorer.add_file(CaptureFile(obj.key, data(), edge=False))
        result.files += 1
        previous = obj

    thresholds = Thresholds(psi=job.drift_psi, js=job.drift_js, ks_pvalue=job.drift_ks_pvalue)
    report = scorer.report(
        model=job.model, stage=spec.stage, version=job.version, start=start, end=watermark, thresholds=thresholds
    )
    result.rows, result.max_psi = report.rows, report.max_psi
    too_few = 0 < report.rows < job.drift_min_rows  # too few rows to judge: no score that could trip the alarm
    result.drifted = [] if too_few else [f.name for f in report.drifted]
    predictions = report.predictions
    if predictions is not None and predictions.status == "scored":
        result.prediction_psi = predictions.max_psi
        result.predictions_drifted = [] if too_few else [o.name for o in predictions.outputs if o.drifted]
    result.watermark = _iso(watermark)
    if result.files:
        result.report_key = write_report(s3, spec.bucket, job, report, now)
    if too_few or publish(cloudwatch, report, stage=spec.stage, model=job.model) == 0:
        # Nothing scored: no MaxPSI (nothing measured is not "no drift"), but the heartbeat says the job ran.
        put_heartbeat(cloudwatch, stage=spec.stage, model=job.model)
    write_checkpoint(
        s3,
        spec.bucket,
        job,
        Checkpoint(
            model=job.model,
            version=job.version,
            watermark=watermark,
            updated=now,
            files=result.files,
            rows=result.rows,
            report_key=result.report_key,
        ),
        etag,
    )
    return result


def _prefetched(s3: Any, bucket: str, objects: list[CaptureObject]) -> Iterator[tuple[CaptureObject, Any]]:
    """(object, () -> its bytes) in order, PREFETCH downloads running ahead of the one being scored."""
    with ThreadPoolExecutor(max_workers=PREFETCH) as pool:
        pending: deque[tuple[CaptureObject, Future[bytes]]] = deque()
        upcoming = iter(objects)
        try:
            while True:
                while len(pending) <= PREFETCH:
                    obj = next(upcoming, None)
                    if obj is None:
                        break
                    pending.append((obj, pool.submit(_read, s3, bucket, obj.key, what="a capture file")))
                if not pending:
                    return
                obj, future = pending.popleft()
                yield obj, future.result
        finally:
            for _, future in pending:
                future.cancel()


def read_checkpoint(s3: Any, bucket: str, job: ModelJob) -> tuple[Checkpoint | None, str | None]:
    """The model's checkpoint and its ETag (for the conditional write), or (None, None) before the first run."""
    try:
        response = s3.get_object(Bucket=bucket, Key=job.checkpoint_key)
    except s3.exceptions.NoSuchKey:
        return None, None
    body = response["Body"].read()
    return Checkpoint.model_validate_json(body), response["ETag"]


def write_checkpoint(s3: Any, bucket: str, job: ModelJob, checkpoint: Checkpoint, etag: str | None) -> None:
    """Replace the checkpoint only if it is still the one this run read (create it only if there was none)."""
    condition = {"If-Match": etag} if etag else {"If-None-Match": "*"}
    try:
        put_conditionally(
            s3,
            condition,
            Bucket=bucket,
            Key=job.checkpoint_key,
            Body=checkpoint.model_dump_json(by_alias=True).encode(),
            ContentType="application/json",
        )
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in {"PreconditionFailed", "ConditionalRequestConflict"}:
            raise RuntimeError(
                f"{job.model}'s checkpoint moved while this run scored (two runs overlapped); this run's metrics "
                "are published, its checkpoint is not"
            ) from exc
        raise


def put_conditionally(s3: Any, condition: dict[str, str], *, as_headers: bool = False, **params: Any) -> None:
    """PutObject with an If-Match / If-None-Match condition, whatever the runtime's botocore knows.

    Lambda's runtime ships its own boto3, which may predate PutObject's IfMatch parameter (botocore 1.35.x, 2024):
    then the condition goes in as HTTP headers, which S3 honours the same way.
    """
    members = s3.meta.service_model.operation_model("PutObject").input_shape.members
    names = {"If-Match": "IfMatch", "If-None-Match": "IfNoneMatch"}
    if not as_headers and all(names[header] in members for header in condition):
        s3.put_object(**params, **{names[header]: value for header, value in condition.items()})
        return

    def add_headers(request: Any, **_: Any) -> None:
        for header, value in condition.items():
            request.headers[header] = value

    event = "before-sign.s3.PutObject"
    s3.meta.events.register_first(event, add_headers)
    try:
        s3.put_object(**params)
    finally:
        s3.meta.events.unregister(event, add_headers)


def list_new_capture(s3: Any, bucket: str, prefix: str, start: datetime, until: datetime) -> list[CaptureObject]:
    """Capture files under `prefix` last modified in [start, until), oldest first.

    Only the hour partitions that can hold them are listed: a file is named (and partitioned) by the time SageMaker
    started it, before it is uploaded, so its partition is at most an hour before its LastModified.
    """
    found = []
    paginator = s3.get_paginator("list_objects_v2")
    for hour in _hours(start - timedelta(hours=1), until):
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}{hour_path(hour)}/"):
            for item in page.get("Contents", []):
                modified = item["LastModified"].astimezone(UTC)
                if item["Key"].endswith(".jsonl") and start <= modified < until:
                    found.append(CaptureObject(item["Key"], modified))
    found.sort(key=lambda o: (o.last_modified, o.key))
    return found


def _hours(start: datetime, end: datetime) -> Iterator[datetime]:
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield hour
        hour += timedelta(hours=1)


def write_report(s3: Any, bucket: str, job: ModelJob, report: DriftReport, now: datetime) -> str:
    """Store the run's JSON and HTML report; return the JSON's key."""
    stem = f"{job.monitoring_prefix}{REPORTS_DIR}/{now:%Y/%m/%d/%H%M%SZ}"
    s3.put_object(
        Bucket=bucket,
        Key=f"{stem}.json",
        Body=json.dumps(report.to_json_dict(), indent=1).encode(),
        ContentType="application/json",
    )
    s3.put_object(
        Bucket=bucket, Key=f"{stem}.html", Body=report.html().encode(), ContentType="text/html; charset=utf-8"
    )
    return f"{stem}.json"


def put_heartbeat(cloudwatch: Any, *, stage: str, model: str) -> None:
    """ScoredRows = 0: the job ran and found nothing to score."""
    cloudwatch.put_metric_data(
        Namespace=metrics.NAMESPACE,
        MetricData=[
            {
                "MetricName": metrics.ROWS,
                "Dimensions": [
                    {"Name": metrics.STAGE_DIMENSION, "Value": stage},
                    {"Name": metrics.MODEL_DIMENSION, "Value": model},
                ],
                "Value": 0.0,
                "Unit": "Count",
            }
        ],
    )


def _read(s3: Any, bucket: str, key: str, *, what: str) -> bytes:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except s3.exceptions.NoSuchKey:
        raise FileNotFoundError(f"{what} is missing: s3://{bucket}/{key}") from None
    try:
        return bytes(body.read())
    finally:
        body.close()


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
