"""The scheduled drift job's handler, in-process against the AWS emulator.

Capture files in SageMaker's key layout in the staging registry -> the handler, given the exact JobSpec the rendered
staging stack's schedule sends -> metrics in the emulator's CloudWatch under the rendered alarms' namespace, metric
and dimensions -> `mlinfra status` shows the score and the drift alarm's state. Shifted traffic crosses the
threshold, unshifted traffic does not; each capture file is scored once.

The emulator does not evaluate alarms: the tests create the rendered drift alarm in it and set its state from the
published datapoint by the alarm's own rule (Maximum > threshold), which is what CloudWatch does with it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from click.testing import Result

from mlinfra.stacks.files import load_stage
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import RenderedResource, RenderedStack, render_stage
from mlinfra_drift import job, metrics
from mlinfra_drift.capture import capture_key
from mlinfra_drift.jobspec import Checkpoint, JobSpec
from mlinfra_drift.records import capture_line
from mlinfra_infra import layout, naming
from tests.cli.test_promotion import IMAGE, bucket, direct_delivery, make_model, ok

Run = Callable[..., Result]
pytestmark = pytest.mark.emulator
PLANS = ["basic", "plus", "pro"]
REGION = "eu-west-1"


def tick() -> None:
    """Let a second pass: S3 stamps LastModified to the second, and the job compares it with its run time."""
    time.sleep(1.1)


def sample_rows(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> list[list[str]]:
    tenure = rng.normal(30 + shift * 10, 10, n)
    charges = rng.lognormal(4, 0.4, n)
    plans = rng.choice(PLANS, size=n, p=[0.5, 0.3, 0.2])
    return [[f"{t:.2f}", f"{c:.2f}", str(p)] for t, c, p in zip(tenure, charges, plans, strict=True)]


def put_capture(rows: list[list[str]], *, when: datetime, per_request: int = 1) -> str:
    """One capture file where staging's DataCaptureConfig sends it; its key."""
    s3 = boto3.client("s3", region_name=REGION)
    lines = []
    for start in range(0, len(rows), per_request):
        body = "\n".join(",".join(r) for r in rows[start : start + per_request])
        lines.append(capture_line(body, inference_time=when, event_id=str(uuid.uuid4()), output="0.5"))
    endpoint = naming.endpoint("mlinfra", "staging", "churn")
    key = capture_key(layout.capture_prefix("churn"), endpoint, naming.VARIANT_NAME, when, str(uuid.uuid4()))
    s3.put_object(Bucket=bucket("staging"), Key=key, Body=("\n".join(lines) + "\n").encode())
    return key


@pytest.fixture
def staging(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> RenderedStack:
    """churn v1 with a baseline, promoted to staging; the staging stack rendered from its updated stack file."""
    rng = np.random.default_rng(11)
    direct_delivery(project_dir)  # staging pins at once (it delivers by pull request by default)
    ok(run("local", "bootstrap", "--all", "--json"))
    sample = tmp_path / "baseline.csv"
    sample.write_text("tenure,charges,plan\n" + "\n".join(",".join(r) for r in sample_rows(rng, 4000)) + "\n")
    model = make_model(tmp_path / "src")
    ok(run("register", str(model), "--model", "churn", "--image", IMAGE, "--baseline", str(sample), "--json"))
    ok(run("promote", "churn", "--to", "dev", "--reason", "test"))
    ok(run("promote", "churn", "--to", "staging", "--reason", "test"))
    return render_stage(load_stage(Project.find(), "staging"))


def rendered_spec(stack: RenderedStack, *, settled: bool = True) -> dict[str, Any]:
    """The event the staging schedule sends the function (its target input).

    `settled`: with settleSeconds 0, so files written a second ago count (the tests cannot age S3's LastModified by
    the five minutes a real run waits); the handler test keeps the rendered value.
    """
    schedule = stack.one("aws:scheduler/schedule:Schedule")
    event: dict[str, Any] = json.loads(schedule.inputs["target"]["input"])
    if settled:
        event["settleSeconds"] = 0
    return event


def rendered_alarm(stack: RenderedStack, kind: str) -> RenderedResource:
    name = naming.alarm("mlinfra", "staging", "churn", kind)
    (alarm,) = [a for a in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if a.inputs["name"] == name]
    return alarm


def datapoints(alarm: RenderedResource, statistic: str) -> list[dict[str, Any]]:
    """The datapoints of exactly the metric the rendered alarm watches, oldest first."""
    inputs = alarm.inputs
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    now = datetime.now(UTC)
    response = cloudwatch.get_metric_statistics(
        Namespace=inputs["namespace"],
        MetricName=inputs["metricName"],
        Dimensions=[{"Name": k, "Value": v} for k, v in inputs["dimensions"].items()],
        StartTime=now - timedelta(hours=2),
        EndTime=now + timedelta(hours=1),
        Period=60,
        Statistics=[statistic],
    )
    return sorted(response["Datapoints"], key=lambda p: p["Timestamp"])


def create_and_evaluate(alarm: RenderedResource) -> str:
    """Create the rendered alarm in the emulator and set its state by its rule on the newest datapoint."""
    inputs = alarm.inputs
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(
        AlarmName=inputs["name"],
        Namespace=inputs["namespace"],
        MetricName=inputs["metricName"],
        Dimensions=[{"Name": k, "Value": v} for k, v in inputs["dimensions"].items()],
        Statistic=inputs["statistic"],
        ComparisonOperator=inputs["comparisonOperator"],
        Threshold=inputs["threshold"],
        Period=inputs["period"],
        EvaluationPeriods=inputs["evaluationPeriods"],
        TreatMissingData=inputs["treatMissingData"],
    )
    assert inputs["comparisonOperator"] == "GreaterThanThreshold" and inputs["statistic"] == "Maximum"
    latest = datapoints(alarm, "Maximum")[-1]["Maximum"]
    state = "ALARM" if latest > inputs["threshold"] else "OK"
    cloudwatch.set_alarm_state(AlarmName=inputs["name"], StateValue=state, StateReason=f"MaxPSI {latest:.3f}")
    return state


def run_job(event: dict[str, Any], *, remaining: Any = None) -> dict[str, Any]:
    """One run now, a second after the last write, and a second before the next."""
    spec = JobSpec.model_validate(event)
    s3 = boto3.client("s3", region_name=REGION)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    tick()
    result = job.run(spec, s3, cloudwatch, now=datetime.now(UTC), remaining_millis=remaining or (lambda: 10**9))
    tick()
    return result


def checkpoint() -> Checkpoint:
    s3 = boto3.client("s3", region_name=REGION)
    body = s3.get_object(Bucket=bucket("staging"), Key="monitoring/churn/checkpoint.json")["Body"].read()
    return Checkpoint.model_validate_json(body)


def test_unshifted_then_shifted_capture_through_the_job_to_alarm_and_status(staging: RenderedStack, run: Run) -> None:
    rng = np.random.default_rng(5)
    event = rendered_spec(staging)
    drift_alarm = rendered_alarm(staging, "drift")
    threshold = drift_alarm.inputs["threshold"]
    now = datetime.now(UTC)

    # Unshifted traffic: three files, five rows per request.
    for _ in range(3):
        put_capture(sample_rows(rng, 600), when=now, per_request=5)
    (result,) = run_job(event)["models"]
    assert result["files"] == 3 and result["rows"] == 1800
    assert result["maxPsi"] < threshold and result["drifted"] == []
    (point,) = datapoints(drift_alarm, "Maximum")
    assert point["Maximum"] == pytest.approx(result["maxPsi"])
    assert create_and_evaluate(drift_alarm) == "OK"
    # The heartbeat the drift-silent alarm counts, under its exact metric and dimensions.
    assert [p["SampleCount"] for p in datapoints(rendered_alarm(staging, "drift-silent"), "SampleCount")] == [1]

    # The report, JSON and HTML, next to the checkpoint.
    s3 = boto3.client("s3", region_name=REGION)
    report = json.loads(s3.get_object(Bucket=bucket("staging"), Key=result["report"])["Body"].read())
    assert report["model"] == "churn" and report["stage"] == "staging" and report["rows"] == 1800
    html = s3.get_object(Bucket=bucket("staging"), Key=result["report"].replace(".json", ".html"))["Body"].read()
    assert b"<svg" in html and b"tenure" in html
    assert checkpoint().files == 3

    # Shifted traffic in new files: only they are scored (the checkpoint), and the threshold is crossed.
    for _ in range(2):
        put_capture(sample_rows(rng, 800, shift=1.5), when=now)
    (result,) = run_job(event)["models"]
    assert result["files"] == 2 and result["rows"] == 1600
    assert result["maxPsi"] > threshold
    assert "tenure" in result["drifted"]
    assert create_and_evaluate(drift_alarm) == "ALARM"

    status = ok(run("status", "--stack", "staging", "--json"))
    (row,) = [r for r in status if r["model"] == "churn"]
    assert row["drift"]["maxPsi"] == pytest.approx(result["maxPsi"])
    assert row["drift"]["alarm"] == "ALARM"
    assert any(drift_alarm.inputs["name"] in note for note in row["notes"])
    table = run("status", "--stack", "staging")
    assert table.exit_code == 0
    assert f"{result['maxPsi']:.3f} (ALARM)" in table.stdout


def test_no_new_capture_publishes_a_heartbeat_and_no_score(staging: RenderedStack) -> None:
    event = rendered_spec(staging)
    put_capture(sample_rows(np.random.default_rng(1), 300), when=datetime.now(UTC))
    run_job(event)
    before = len(datapoints(rendered_alarm(staging, "drift"), "Maximum"))
    (result,) = run_job(event)["models"]
    assert result["files"] == 0 and result["rows"] == 0 and result["maxPsi"] is None
    assert result["report"] is None
    assert len(datapoints(rendered_alarm(staging, "drift"), "Maximum")) == before, "nothing measured, no MaxPSI"
    heartbeats = datapoints(rendered_alarm(staging, "drift-silent"), "SampleCount")
    assert sum(p["SampleCount"] for p in heartbeats) == 2, "one ScoredRows per run, the empty one too"


def test_too_few_rows_to_judge_publish_a_heartbeat_and_no_score(staging: RenderedStack) -> None:
    event = rendered_spec(staging)
    assert event["models"][0]["driftMinRows"] == 100  # alarms.driftMinRows, from the stack
    put_capture(sample_rows(np.random.default_rng(2), 20, shift=3.0), when=datetime.now(UTC))
    (result,) = run_job(event)["models"]
    assert result["rows"] == 20 and result["drifted"] == []
    assert datapoints(rendered_alarm(staging, "drift"), "Maximum") == [], "too few rows: no MaxPSI to alarm on"
    heartbeats = datapoints(rendered_alarm(staging, "drift-silent"), "SampleCount")
    assert sum(p["SampleCount"] for p in heartbeats) == 1, "the run still says it ran"


def test_handler_reads_the_rendered_event_and_leaves_unsettled_files_for_later(staging: RenderedStack) -> None:
    event = rendered_spec(staging, settled=False)
    assert event["settleSeconds"] == 300
    put_capture(sample_rows(np.random.default_rng(2), 100), when=datetime.now(UTC))
    (result,) = job.handler(event, None)["models"]
    # Just written, so younger than settleSeconds: the next run's.
    assert result["files"] == 0
    assert checkpoint().watermark < datetime.now(UTC) - timedelta(seconds=299)


def test_a_run_out_of_time_leaves_the_rest_to_the_next_and_reads_each_file_once(staging: RenderedStack) -> None:
    event = rendered_spec(staging)
    rng = np.random.default_rng(3)
    keys = []
    for _ in range(4):  # a second apart, so each has its own LastModified
        keys.append(put_capture(sample_rows(rng, 50), when=datetime.now(UTC)))
        tick()
    budget = iter([10**9, 10**9, 0, 0, 0, 0])
    (first,) = run_job(event, remaining=lambda: next(budget))["models"]
    (second,) = run_job(event)["models"]
    assert first["complete"] is False and second["complete"] is True
    assert first["files"] == 2 and second["files"] == 2
    assert first["rows"] + second["rows"] == 200
    assert checkpoint().files == 2


def test_a_missing_baseline_fails_the_run_and_keeps_the_checkpoint(staging: RenderedStack) -> None:
    event = rendered_spec(staging)
    event["models"][0]["baselineKey"] = "models/churn/versions/99/baseline.json"
    put_capture(sample_rows(np.random.default_rng(4), 10), when=datetime.now(UTC))
    with pytest.raises(job.JobError, match=r"churn: FileNotFoundError: the baseline of v1 is missing"):
        run_job(event)
    s3 = boto3.client("s3", region_name=REGION)
    listed = s3.list_objects_v2(Bucket=bucket("staging"), Prefix="monitoring/churn/")
    assert listed.get("KeyCount", 0) == 0


def test_overlapping_runs_cannot_both_move_the_checkpoint(staging: RenderedStack) -> None:
    spec = JobSpec.model_validate(rendered_spec(staging))
    (model,) = spec.models
    s3 = boto3.client("s3", region_name=REGION)
    put_capture(sample_rows(np.random.default_rng(6), 10), when=datetime.now(UTC))
    run_job(spec.model_dump(by_alias=True, mode="json"))
    _, etag = job.read_checkpoint(s3, spec.bucket, model)
    assert etag is not None
    current = checkpoint()
    job.write_checkpoint(s3, spec.bucket, model, current.model_copy(update={"files": 99}), etag)
    with pytest.raises(RuntimeError, match="two runs overlapped"):
        job.write_checkpoint(s3, spec.bucket, model, current, etag)
    assert checkpoint().files == 99


def test_published_metrics_are_exactly_what_the_rendered_alarms_watch(staging: RenderedStack) -> None:
    put_capture(sample_rows(np.random.default_rng(8), 200), when=datetime.now(UTC))
    run_job(rendered_spec(staging))
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    listed = {
        (m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"])))
        for m in cloudwatch.list_metrics(Namespace=metrics.NAMESPACE)["Metrics"]
    }
    for kind in ("drift", "drift-silent"):
        inputs = rendered_alarm(staging, kind).inputs
        assert inputs["namespace"] == metrics.NAMESPACE
        assert (inputs["metricName"], tuple(sorted(inputs["dimensions"].items()))) in listed, kind


@pytest.mark.parametrize("as_headers", [False, True], ids=["parameters", "headers-for-an-older-botocore"])
def test_conditional_checkpoint_writes_hold_with_parameters_or_plain_headers(aws_env: str, as_headers: bool) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="conditional", CreateBucketConfiguration={"LocationConstraint": REGION})
    job.put_conditionally(s3, {"If-None-Match": "*"}, as_headers=as_headers, Bucket="conditional", Key="k", Body=b"1")
    etag = s3.head_object(Bucket="conditional", Key="k")["ETag"]
    with pytest.raises(ClientError, match=r"PreconditionFailed|ConditionalRequestConflict"):
        job.put_conditionally(
            s3, {"If-None-Match": "*"}, as_headers=as_headers, Bucket="conditional", Key="k", Body=b"2"
        )
    job.put_conditionally(s3, {"If-Match": etag}, as_headers=as_headers, Bucket="conditional", Key="k", Body=b"3")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        job.put_conditionally(s3, {"If-Match": etag}, as_headers=as_headers, Bucket="conditional", Key="k", Body=b"4")
    assert s3.get_object(Bucket="conditional", Key="k")["Body"].read() == b"3"


def test_a_deeply_nested_capture_line_is_counted_and_the_job_moves_on(staging: RenderedStack) -> None:
    """One 20 KB line of nested brackets must not stop drift for the model on every run: it counts as malformed."""
    when = datetime.now(UTC)
    put_capture(sample_rows(np.random.default_rng(9), 20), when=when)
    deep = "[" * 10_000 + "]" * 10_000
    payload = capture_line(deep, inference_time=when, event_id="deep", content_type="application/json", encoding="JSON")
    endpoint = naming.endpoint("mlinfra", "staging", "churn")
    key = capture_key(layout.capture_prefix("churn"), endpoint, naming.VARIANT_NAME, when, "deep")
    body = ("[" * 10_000 + "\n" + payload + "\n").encode()
    boto3.client("s3", region_name=REGION).put_object(Bucket=bucket("staging"), Key=key, Body=body)
    (result,) = run_job(rendered_spec(staging))["models"]
    assert result["error"] is None and result["files"] == 2 and result["rows"] == 20, result
    assert checkpoint().files == 2
    report = json.loads(
        boto3.client("s3", region_name=REGION).get_object(Bucket=bucket("staging"), Key=result["report"])["Body"].read()
    )
    assert report["malformed"] == {"bad_payload": 1, "invalid_json": 1}, report["malformed"]
