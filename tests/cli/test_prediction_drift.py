"""Prediction drift end to end, against the AWS emulator: a model registered from a notebook, its capture, the job.

A scikit-learn pipeline on churn's inputs is registered with `mlinfra.register` (its prediction baseline computed
through its own handler), promoted to staging, and its staging capture is written as SageMaker writes it, the
endpoint's answers included. The scheduled drift job's handler scores it with the exact JobSpec the rendered stack
sends: outputs that shift are prediction drift (report, PredictionPSI metric under the drift metrics' namespace and
dimensions), and `mlinfra drift` names them in its verdict and exits 3. A capture without outputs says so and fails
nothing. `register --baseline` of a model whose handler cannot run here, and `mlinfra baseline --model-dir` of
another directory, say what is wrong.
"""

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

import mlinfra
from mlinfra.models import export
from mlinfra.stacks.files import load_stage
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import RenderedStack, render_stage
from mlinfra_drift import metrics
from mlinfra_drift.capture import capture_key
from mlinfra_drift.records import capture_line
from mlinfra_infra import layout, naming
from tests.cli.test_drift_job import REGION, rendered_alarm, rendered_spec, run_job
from tests.cli.test_promotion import IMAGE, bucket, direct_delivery, make_model, ok

Run = Callable[..., Result]
pytestmark = pytest.mark.emulator
PLANS = ["basic", "plus", "pro"]


def frame(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "tenure": rng.normal(30 + shift, 10, n).round(2),
            "charges": rng.lognormal(4, 0.4, n).round(2),
            "plan": rng.choice(PLANS, size=n, p=[0.5, 0.3, 0.2]),
        }
    )


def trained(rng: np.random.Generator) -> tuple[Any, Any]:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    sample = frame(rng, 2_000)
    churned = (sample["tenure"] + rng.normal(0, 3, len(sample)) > 30).astype(int)
    model = make_pipeline(
        make_column_transformer(
            (StandardScaler(), ["tenure", "charges"]), (OneHotEncoder(handle_unknown="ignore"), ["plan"])
        ),
        LogisticRegression(),
    ).fit(sample, churned)
    return model, sample


@pytest.fixture
def served(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> tuple[Any, RenderedStack, Path]:
    """churn v1 registered from a notebook (prediction baseline included), promoted to staging; staging rendered."""
    direct_delivery(project_dir)
    ok(run("local", "bootstrap", "--all", "--json"))
    model, sample = trained(np.random.default_rng(19))
    record = mlinfra.register(model, sample, name="churn", directory=tmp_path / "churn")
    assert record.version == 1
    ok(run("promote", "churn", "--to", "dev", "--reason", "test"))
    ok(run("promote", "churn", "--to", "staging", "--reason", "test"))
    return model, render_stage(load_stage(Project.find(), "staging")), tmp_path / "churn"


def put_capture(model: Any, rows: Any, *, outputs: bool) -> None:
    """One staging capture file, one request per row, with the endpoint's JSON answers (or none)."""
    answers = model.predict(rows).tolist()
    lines = [
        capture_line(
            f"{t},{c},{p}", inference_time=datetime.now(UTC), event_id=str(uuid.uuid4()),
            output=json.dumps([answer]) if outputs else "", output_type="application/json", output_encoding="JSON",
        )
        for (t, c, p), answer in zip(rows.itertuples(index=False, name=None), answers, strict=True)
    ]  # fmt: skip
    endpoint = naming.endpoint("mlinfra", "staging", "churn")
    key = capture_key(layout.capture_prefix("churn"), endpoint, naming.VARIANT_NAME, datetime.now(UTC), "f")
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=bucket("staging"), Key=key.replace("f.jsonl", f"{uuid.uuid4()}.jsonl"), Body="\n".join(lines).encode()
    )


def prediction_points() -> list[float]:
    """PredictionPSI datapoints (Maximum) of staging's churn, oldest first, by the drift metrics' dimensions."""
    now = datetime.now(UTC)
    response = boto3.client("cloudwatch", region_name=REGION).get_metric_statistics(
        Namespace=metrics.NAMESPACE,
        MetricName=metrics.PREDICTION_PSI,
        Dimensions=[{"Name": "Stage", "Value": "staging"}, {"Name": "Model", "Value": "churn"}],
        StartTime=now - timedelta(hours=2),
        EndTime=now + timedelta(hours=1),
        Period=60,
        Statistics=["Maximum"],
    )
    return [p["Maximum"] for p in sorted(response["Datapoints"], key=lambda p: p["Timestamp"])]


def test_shifted_outputs_are_prediction_drift_in_the_job_its_metric_and_the_report(
    served: tuple[Any, RenderedStack, Path], run: Run
) -> None:
    model, staging, _ = served
    rng = np.random.default_rng(5)
    s3 = boto3.client("s3", region_name=REGION)
    baseline = json.loads(
        s3.get_object(Bucket=bucket("staging"), Key=layout.version_prefix("churn", 1) + "baseline.json")["Body"].read()
    )
    assert list(baseline["outputs"]["columns"]) == ["prediction", "probability of 1"]  # promoted with the version
    shown = ok(run("show", "churn", "--version", "1", "--json"))
    assert shown["baseline"]["outputs"] == ["prediction", "probability of 1"]

    put_capture(model, frame(rng, 600), outputs=True)
    (steady,) = run_job(rendered_spec(staging))["models"]
    assert steady["rows"] == 600 and steady["predictionPsi"] < 0.1 and steady["predictionsDrifted"] == []

    put_capture(model, frame(rng, 800, shift=15), outputs=True)
    (shifted,) = run_job(rendered_spec(staging))["models"]
    assert shifted["predictionsDrifted"] == ["prediction"] and shifted["predictionPsi"] > 0.2, shifted
    # The metric, in the drift namespace by Stage and Model, like MaxPSI (which the drift alarm watches).
    assert rendered_alarm(staging, "drift").inputs["dimensions"] == {"Stage": "staging", "Model": "churn"}
    assert prediction_points()[-1] == pytest.approx(shifted["predictionPsi"])
    report = json.loads(s3.get_object(Bucket=bucket("staging"), Key=shifted["report"])["Body"].read())
    assert report["predictions"]["status"] == "scored" and report["predictions"]["drifted"] is True
    assert report["predictions"]["outputs"][0]["measure"] == "share of class 1"

    # The analyst's report over both files: the verdict names prediction drift; exit 3.
    result = run("drift", "churn", "--stack", "staging", "--json")
    assert result.exit_code == 3, result.stderr
    data = json.loads(result.stdout)
    assert "Predictions drifted: share of class 1 0." in data["verdict"], data["verdict"]
    label = data["predictions"]["outputs"][0]
    assert label["name"] == "prediction" and label["currentValue"] > label["baselineValue"] + 0.2
    assert f"PSI {label['psi']:.2f}" in data["verdict"]
    table = run("drift", "churn", "--stack", "staging")
    assert table.exit_code == 3
    assert "predictions: 1,400 output(s) scored against the prediction baseline" in table.stdout
    assert "predictions (prediction)" in table.stderr


def test_a_capture_without_outputs_scores_inputs_and_says_so(served: tuple[Any, RenderedStack, Path], run: Run) -> None:
    model, staging, written = served
    put_capture(model, frame(np.random.default_rng(6), 400), outputs=False)
    (result,) = run_job(rendered_spec(staging))["models"]
    assert result["error"] is None and result["rows"] == 400 and result["predictionPsi"] is None
    assert prediction_points() == []  # nothing measured, nothing published
    drift = run("drift", "churn", "--stack", "staging", "--json")
    assert drift.exit_code == 0, drift.stderr
    data = json.loads(drift.stdout)
    assert data["predictions"]["status"] == "no_outputs" and data["predictions"]["records"] == {"without": 400}
    assert "enable output capture" in data["predictions"]["note"]
    assert data["verdict"] == "No drift: all 3 features are within their thresholds."
    table = run("drift", "churn", "--stack", "staging")
    assert "No prediction drift: the capture has no outputs" in table.stdout

    # Re-attaching the same sample with the directory v1 was registered from computes the same prediction baseline
    # (nothing changes); without --model-dir the new baseline has none, and drift says how to get it back.
    sample, model_dir = str(written / "baseline.csv"), str(written / "model")
    same = ok(run("baseline", "churn", "--version", "1", sample, "--model-dir", model_dir, "--json"))
    assert same["changed"] == []
    elsewhere = make_model(written.parent / "elsewhere")
    refused = run("baseline", "churn", "--version", "1", sample, "--model-dir", str(elsewhere))
    assert refused.exit_code == 2 and "not churn v1's sha256:" in refused.stderr, refused.stderr
    replaced = ok(run("baseline", "churn", "--version", "1", sample, "--json"))
    assert replaced["changed"] == ["baseline"]
    stored = boto3.client("s3", region_name=REGION).get_object(
        Bucket=bucket("sandbox"), Key=layout.version_prefix("churn", 1) + "baseline.json"
    )
    assert "outputs" not in json.loads(stored["Body"].read())
    inputs_only = run("drift", "churn", "--stack", "staging", "--baseline", sample, "--json")
    note = json.loads(inputs_only.stdout)["predictions"]["note"]
    assert "no prediction baseline" in note and "--model-dir DIR" in note


def test_register_without_a_runnable_handler_notes_it_and_baseline_model_dir_checks_the_digest(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path
) -> None:
    ok(run("local", "bootstrap", "--all", "--json"))
    sample = tmp_path / "sample.csv"
    frame(np.random.default_rng(1), 50).to_csv(sample, index=False)
    model = make_model(tmp_path / "src")
    result = run("register", str(model), "--model", "churn", "--image", IMAGE, "--baseline", str(sample))
    assert result.exit_code == 0, result.stderr
    assert "no prediction baseline (an image of one's own is not run here)" in result.stderr
    other = make_model(tmp_path / "other", "weights-2")
    refused = run("baseline", "churn", "--version", "1", str(sample), "--model-dir", str(other))
    assert refused.exit_code == 2
    assert "runs an image of one's own" in refused.stderr
    missing = run("attach", "churn", "--version", "1", "--model-dir", str(other), "--metrics", str(sample))
    assert missing.exit_code == 2 and "--model-dir predicts the baseline sample: give the sample too" in missing.stderr

    # A model whose handler runs here, registered with --no-prediction-baseline: never loaded, no outputs, no note.
    model, x = trained(np.random.default_rng(2))
    written = export.write_model(model, x, name="churn", directory=tmp_path / "skip")
    (written.model_dir / "model.joblib").write_bytes(b"not loadable: loading it would fail")
    skipped = run(
        "register", str(written.model_dir), "-m", "churn", "--framework", "sklearn", "--baseline", str(sample),
        "--no-prediction-baseline", "--json",
    )  # fmt: skip
    assert skipped.exit_code == 0, skipped.stderr
    assert "prediction baseline" not in skipped.stderr
    stored = boto3.client("s3", region_name=REGION).get_object(
        Bucket=bucket("sandbox"),
        Key=layout.version_prefix("churn", json.loads(skipped.stdout)["version"]) + "baseline.json",
    )
    assert "outputs" not in json.loads(stored["Body"].read())
