"""`mlinfra drift` against the AWS emulator: capture in the stage bucket in SageMaker's layout, scores, exit codes,
and --publish landing in CloudWatch under exactly the names and dimensions the rendered drift alarm watches."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from click.testing import Result

from mlinfra_drift import metrics
from mlinfra_drift.capture import capture_key
from mlinfra_drift.records import capture_line
from mlinfra_infra import layout, naming
from tests.cli.conftest import snapshot
from tests.cli.test_promotion import IMAGE, bucket, direct_delivery, make_model, ok

Run = Callable[..., Result]
pytestmark = pytest.mark.emulator
RNG = np.random.default_rng(7)
PLANS = ["basic", "plus", "pro"]


def sample_rows(n: int, *, shift: float = 0.0) -> list[list[str]]:
    tenure = RNG.normal(30 + shift * 10, 10, n)
    charges = RNG.lognormal(4, 0.4, n)
    plans = RNG.choice(PLANS, size=n, p=[0.5, 0.3, 0.2])
    return [[f"{t:.2f}", f"{c:.2f}", str(p)] for t, c, p in zip(tenure, charges, plans, strict=True)]


@pytest.fixture
def staging(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> Path:
    """churn v1 registered with a baseline of tenure, charges and plan, promoted to dev and staging (directly)."""
    direct_delivery(project_dir)
    ok(run("local", "bootstrap", "--all", "--json"))
    sample = tmp_path / "baseline.csv"
    sample.write_text("tenure,charges,plan\n" + "\n".join(",".join(r) for r in sample_rows(3000)) + "\n")
    model = make_model(tmp_path / "src")
    ok(run("register", str(model), "--model", "churn", "--image", IMAGE, "--baseline", str(sample), "--json"))
    ok(run("promote", "churn", "--to", "dev", "--reason", "test"))
    ok(run("promote", "churn", "--to", "staging", "--reason", "test"))
    return project_dir


def put_capture(rows: list[list[str]], *, when: datetime, per_request: int = 1, stage: str = "staging") -> None:
    """Capture files in the stage bucket where the endpoint's DataCaptureConfig sends them."""
    s3 = boto3.client("s3", region_name="eu-west-1")
    lines = []
    for start in range(0, len(rows), per_request):
        body = "\n".join(",".join(r) for r in rows[start : start + per_request])
        lines.append(capture_line(body, inference_time=when, event_id=str(uuid.uuid4()), output="0.5"))
    key = capture_key(layout.capture_prefix("churn"), naming.endpoint("mlinfra", stage, "churn"), "primary", when,
                      str(uuid.uuid4()))  # fmt: skip
    s3.put_object(Bucket=bucket(stage), Key=key, Body=("\n".join(lines) + "\n").encode())


def published() -> list[dict[str, Any]]:
    cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1")
    return cloudwatch.list_metrics(Namespace=metrics.NAMESPACE)["Metrics"]


def test_unshifted_traffic_passes_and_shifted_traffic_exits_3(staging: Path, run: Run) -> None:
    now = datetime.now(UTC)
    put_capture(sample_rows(1500), when=now - timedelta(hours=3), per_request=5)
    result = run("drift", "churn", "--stack", "staging", "--json")
    data = ok(result)
    assert data["model"] == "churn" and data["stage"] == "staging" and data["version"] == 1
    assert data["rows"] == 1500  # every row of each five-row request
    assert data["malformed"] == {}
    assert data["maxPsi"] < 0.1
    assert {f["name"] for f in data["features"]} == {"tenure", "charges", "plan"}
    assert not any(f["drifted"] for f in data["features"])

    put_capture(sample_rows(1500, shift=1.5), when=now - timedelta(minutes=30))
    result = run("drift", "churn", "--stack", "staging", "--since", "2h", "--json", "--workers", "2")
    assert result.exit_code == 3, result.stderr
    data = json.loads(result.stdout)
    assert data["rows"] == 1500
    assert data["features"][0]["name"] == "tenure"
    assert data["features"][0]["drifted"] is True
    assert "drift: tenure over the threshold (PSI > 0.2)" in result.stderr

    table = run("drift", "churn", "--stack", "staging", "--since", "2h")
    assert table.exit_code == 3
    lines = table.stdout.splitlines()
    assert lines[0] == "1 of 3 features drifted: tenure."  # the verdict first
    assert lines[1].startswith("churn v1 in staging: 1,500 rows from 1 file(s)")
    assert lines[2].split()[:2] == ["FEATURE", "PSI"]
    assert lines[3].split()[0] == "tenure"  # sorted by drift
    assert lines[3].split()[-1] == "DRIFTED"
    assert sorted(line.split()[0] for line in lines[4:6]) == ["charges", "plan"]
    assert any(line.startswith("baseline: ") and " rows of " in line for line in lines)
    text = " ".join(table.stdout.split())
    assert "a feature drifts when its PSI" in text and "is above 0.2 (alarms.driftPsi)" in text
    assert "What to do: (1) check the upstream data" in text
    assert '`mlinfra --local rollback churn --stack staging --reason "drift"`' in text


def test_too_few_rows_to_judge_exits_0_and_publishes_nothing(staging: Path, run: Run) -> None:
    put_capture(sample_rows(3, shift=3), when=datetime.now(UTC) - timedelta(minutes=10))
    result = run("drift", "churn", "--stack", "staging", "--publish")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(
        "Too few rows to judge: 3 row(s) of churn in staging, fewer than alarms.driftMinRows (100); nothing is "
        "flagged or cleared, nothing published."
    )
    assert "DRIFTED" not in result.stdout and "published" not in result.stderr
    assert published() == []
    data = json.loads(run("drift", "churn", "--stack", "staging", "--json").stdout)
    assert (data["judged"], data["minRows"], data["rows"]) == (False, 100, 3)
    assert not any(f["drifted"] for f in data["features"])


def test_default_workers_score_a_large_window_like_one_process(staging: Path, run: Run) -> None:
    from mlinfra_drift.parallel import FILES_PER_WORKER, usable_cpus

    now = datetime.now(UTC)
    files = 2 * FILES_PER_WORKER
    for index in range(files):  # enough files for two workers (on a machine with two usable CPUs or more)
        put_capture(sample_rows(40, shift=0.5), when=now - timedelta(minutes=3 * index + 1), per_request=2)
    # A fixed window: "--since" would end at a different second in each run.
    window = ("--from", (now - timedelta(hours=2)).isoformat(), "--to", (now + timedelta(minutes=1)).isoformat())
    one = run("drift", "churn", "--stack", "staging", *window, "--json", "--workers", "1")
    auto = run("drift", "churn", "--stack", "staging", *window, "--json")
    assert one.exit_code == auto.exit_code == 3, (one.stderr, auto.stderr)
    assert json.loads(auto.stdout) == json.loads(one.stdout)
    assert json.loads(auto.stdout)["rows"] == files * 40
    table = run("drift", "churn", "--stack", "staging", *window).stdout
    assert usable_cpus() < 2 or f"{files} file(s) in 2 processes" in table


def test_publish_lands_where_the_drift_alarm_watches(staging: Path, run: Run) -> None:
    put_capture(sample_rows(800, shift=2), when=datetime.now(UTC) - timedelta(minutes=10))
    result = run("drift", "churn", "--stack", "staging", "--publish")
    assert result.exit_code == 3, result.stderr
    assert "published 6 metric(s)" in result.stderr  # MaxPSI, ScoredRows, MalformedRecords, 3 x FeaturePSI
    found = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in published()}

    # The drift alarm of the staging stack, rendered offline under Pulumi's mock runtime.
    preview = ok(run("preview", "--stack", "staging", "--json"))
    alarm_name = naming.alarm("mlinfra", "staging", "churn", naming.ALARM_DRIFT)
    alarm = next(r["inputs"] for r in preview["resources"] if r["inputs"].get("name") == alarm_name)
    watched = watched_metrics(alarm)
    assert watched, f"the drift alarm watches no metric: {alarm}"
    for namespace, name, dimensions in watched:
        assert namespace == metrics.NAMESPACE
        assert (name, tuple(sorted(dimensions.items()))) in found

    cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1")
    stats = cloudwatch.get_metric_statistics(
        Namespace=metrics.NAMESPACE,
        MetricName=metrics.MAX_PSI,
        Dimensions=[{"Name": "Stage", "Value": "staging"}, {"Name": "Model", "Value": "churn"}],
        StartTime=datetime.now(UTC) - timedelta(hours=1),
        EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Period=300,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert stats and stats[0]["Maximum"] > alarm["threshold"]


def watched_metrics(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, metric, dimensions) an alarm reads: a single metric or the metrics of its metric queries."""
    if alarm.get("metricName"):
        return [(alarm["namespace"], alarm["metricName"], dict(alarm.get("dimensions") or {}))]
    out = []
    for query in alarm.get("metricQueries") or []:
        metric = (query.get("metric") or {}) if isinstance(query, dict) else {}
        if metric.get("metricName"):
            out.append((metric["namespace"], metric["metricName"], dict(metric.get("dimensions") or {})))
    return out


def test_zero_rows_say_so_and_publish_nothing(staging: Path, run: Run) -> None:
    put_capture(sample_rows(100, shift=3), when=datetime.now(UTC) - timedelta(days=3))  # outside the window
    result = run("drift", "churn", "--stack", "staging", "--publish", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 0
    assert json.loads(result.stdout)["maxPsi"] is None
    assert "no captured rows for churn in staging" in result.stderr
    assert "nothing scored, nothing published" in result.stderr
    assert published() == []


def test_wrong_width_is_an_error_naming_both_widths(staging: Path, run: Run) -> None:
    put_capture([["1", "2"]] * 10, when=datetime.now(UTC) - timedelta(hours=1))
    result = run("drift", "churn", "--stack", "staging")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: capture rows have 2 field(s) but the baseline has 3 features (tenure, charges, plan)"
    )


def test_malformed_lines_are_reported(staging: Path, run: Run) -> None:
    when = datetime.now(UTC) - timedelta(hours=1)
    put_capture([*sample_rows(50), ["x", "1", "basic"], ["1", "2"]], when=when)
    data = json.loads(run("drift", "churn", "--stack", "staging", "--json").stdout)
    assert data["rows"] == 50
    assert data["malformed"] == {"non_numeric": 1, "wrong_width": 1}


def test_local_capture_with_another_version_and_report(staging: Path, run: Run, tmp_path: Path) -> None:
    when = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
    folder = tmp_path / "exported" / "mlinfra-staging-churn" / "primary" / "2026" / "11" / "02" / "09"
    folder.mkdir(parents=True)
    lines = [capture_line(",".join(r), inference_time=when, event_id="e", encoding="BASE64", fractional=True)
             for r in sample_rows(200, shift=2)]  # fmt: skip
    (folder / "15-00-000-x.jsonl").write_text("\n".join(lines))
    page = tmp_path / "out" / "drift.html"
    nothing = run("drift", "churn", "--stack", "dev")
    assert nothing.exit_code == 0
    assert "warning: churn does not capture data in dev" in nothing.stderr
    result = run(
        "drift", "churn", "--stack", "dev", "--version", "1", "--capture", str(tmp_path / "exported"),
        "--from", "2026-11-02T09:00Z", "--to", "2026-11-02T10:00Z", "--report", str(page),
    )  # fmt: skip
    assert result.exit_code == 3, result.stderr
    assert "churn v1 in dev: 200 rows" in result.stdout
    html = page.read_text()
    assert "<svg" in html and "tenure" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_bad_input_writes_nothing(staging: Path, run: Run, tmp_path: Path) -> None:
    before = snapshot(staging)
    cases = {
        ("drift", "churn", "--stack", "staging", "--since", "yesterday"): "--since 'yesterday': give a positive",
        ("drift", "churn", "--stack", "staging", "--since", "1h", "--from", "2026-01-01"): "give --since or --from",
        ("drift", "churn", "--stack", "staging", "--from", "2026-02-01", "--to", "2026-01-01"): "ends",
        ("drift", "nope", "--stack", "staging"): "unknown model 'nope'",
        ("drift", "churn", "--stack", "staging", "--version", "9"): "churn has no version 9 in staging",
        ("drift", "churn", "--stack", "staging", "--capture", str(tmp_path), "--publish"): "--publish puts",
        ("drift", "churn", "--stack", "staging", "--capture", str(tmp_path / "none")): "no such file or folder",
        ("drift", "churn", "--stack", "staging", "--workers", "0"): "0 processes: use auto or a number from 1 to 64",
        ("drift", "churn", "--stack", "staging", "--workers", "many"): "'many' is not auto or a number",
    }
    for args, message in cases.items():
        result = run(*args)
        assert result.exit_code == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert snapshot(staging) == before
    assert published() == []


def test_a_version_without_baseline(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> None:
    ok(run("local", "bootstrap", "--stack", "sandbox", "--json"))
    ok(run("register", str(make_model(tmp_path / "src")), "--model", "churn", "--image", IMAGE, "--json"))
    result = run("drift", "churn", "--stack", "sandbox", "--version", "1")
    assert result.exit_code == 2
    assert "churn v1 in sandbox has no baseline; attach one with `mlinfra baseline churn --version 1 DATA`" in (
        result.stderr
    )


def test_progress_line_counts_files(capsys: pytest.CaptureFixture[str]) -> None:
    from mlinfra.monitoring.drift import _progress
    from mlinfra_drift.capture import CaptureFile

    with _progress(True, "s3://bucket/capture/churn/") as on_file:
        assert on_file is not None
        on_file(CaptureFile("a.jsonl", b"x" * 2_000_000, False))
    with _progress(False, "quiet") as nothing:
        assert nothing is None


def test_offline_with_a_local_capture_and_baseline(
    project_dir: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No emulator, and any AWS call would fail: --capture with --baseline needs no AWS at all.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "none")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "none")
    sample = tmp_path / "sample.csv"
    sample.write_text("tenure,charges,plan\n" + "\n".join(",".join(r) for r in sample_rows(1000)) + "\n")
    exported = tmp_path / "export.jsonl"
    when = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
    exported.write_text(
        "\n".join(capture_line(",".join(r), inference_time=when, event_id="e") for r in sample_rows(300))
    )
    result = run(
        "drift", "churn", "--stack", "staging", "--capture", str(exported), "--baseline", str(sample),
        "--from", "2026-11-02", "--to", "2026-11-03", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["rows"], data["version"]) == (300, None)
    assert data["maxPsi"] < 0.2


def test_the_trend_reads_the_drift_jobs_last_reports(staging: Path, run: Run) -> None:
    s3 = boto3.client("s3", region_name="eu-west-1")
    for day, value in enumerate((0.01, 0.05, 0.12, 0.30, 0.41, 0.52), start=1):
        key = f"monitoring/churn/reports/2026/12/0{day}/000500Z.json"
        s3.put_object(Bucket=bucket("staging"), Key=key, Body=json.dumps({"maxPsi": value}).encode())
    put_capture(sample_rows(300), when=datetime.now(UTC) - timedelta(minutes=10))
    data = json.loads(run("drift", "churn", "--stack", "staging", "--json").stdout)
    assert data["trend"] == [0.05, 0.12, 0.30, 0.41, 0.52]  # the last five, oldest first
    table = run("drift", "churn", "--stack", "staging").stdout
    assert "max PSI of the drift job's last 5 runs (oldest first): 0.050, 0.120, 0.300, 0.410, 0.520" in table


def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "none")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "none")
    sample = tmp_path / "sample.csv"
    sample.write_text("tenure,charges,plan\n" + "\n".join(",".join(r) for r in sample_rows(500)) + "\n")
    return sample


WHEN = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
WINDOW = ("--from", "2026-11-02", "--to", "2026-11-03")


def _lines(n: int) -> str:
    return "\n".join(capture_line(",".join(r), inference_time=WHEN, event_id="e") for r in sample_rows(n)) + "\n"


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_a_report_that_cannot_be_written_is_bad_input_before_scoring(
    project_dir: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    sample = _offline(monkeypatch, tmp_path)
    exported = tmp_path / "export.jsonl"
    exported.write_text(_lines(50))
    (tmp_path / "a-file").write_text("x")
    report = tmp_path / "a-file" / "drift.html" if where == "under-a-file" else Path("/proc/mlinfra-drift.html")
    result = run(
        "drift", "churn", "--stack", "staging", "--capture", str(exported), "--baseline", str(sample), *WINDOW,
        "--report", str(report),
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --report {report}: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output and not result.stdout


def test_capture_files_outside_the_layout_or_window_are_counted_and_named(
    project_dir: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = _offline(monkeypatch, tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("a.jsonl", "b.jsonl"):
        (flat / name).write_text(_lines(20))
    hour = flat / "mlinfra-staging-churn" / "primary" / "2026" / "11" / "02" / "09"
    hour.mkdir(parents=True)
    (hour / "15-00-000-x.jsonl").write_text(_lines(30))  # in the layout and the window: scored
    late = flat / "mlinfra-staging-churn" / "primary" / "2026" / "11" / "05" / "09"
    late.mkdir(parents=True)
    (late / "15-00-000-y.jsonl").write_text(_lines(10))  # in the layout, outside the window
    args = ("drift", "churn", "--stack", "staging", "--baseline", str(sample), *WINDOW)
    result = run(*args, "--capture", str(flat), "--json")
    assert result.exit_code in (0, 3), result.stderr
    assert json.loads(result.stdout)["rows"] == 30
    assert "skipped 2 .jsonl file(s) not in SageMaker's layout" in result.stderr, result.stderr
    assert "skipped 1 .jsonl file(s) in hour folders outside the window" in result.stderr, result.stderr
    # Pointed at an hour folder: its files are not below an hour partition of it.
    result = run(*args, "--capture", str(hour))
    assert result.exit_code == 0, result.stderr  # nothing scored
    assert "skipped 1 .jsonl file(s) not in SageMaker's layout" in result.stderr, result.stderr
