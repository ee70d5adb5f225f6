"""What `mlinfra serve` captures, `mlinfra drift` reads: locally from a folder, and from a stage registry in S3."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import Result

from tests.cli.serveutil import Server, start_serve, train
from tests.cli.test_promotion import direct_delivery
from tests.emulator import stop_process

Run = Callable[..., Result]
ROWS = 40


def ok(result: Result) -> Any:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    return json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else result.stdout


def scored(result: Result) -> Any:
    """The drift report: exit 0, or 3 when a feature's PSI is over the threshold (40 rows are a small sample)."""
    assert result.exit_code in {0, 3}, f"exit {result.exit_code}: {result.stderr}"
    return json.loads(result.stdout)


def training_sample(path: Path) -> Path:
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(200, 3))
    path.write_text("a,b,c\n" + "\n".join(",".join(f"{v:.4f}" for v in row) for row in rows) + "\n")
    return path


def send_rows(server: Server) -> None:
    """ROWS rows from the training distribution, as CSV (two rows a request) and as JSON (one row a request)."""
    rng = np.random.default_rng(11)
    rows = rng.normal(size=(ROWS, 3))
    for first, second in zip(rows[: ROWS // 2 : 2], rows[1 : ROWS // 2 : 2], strict=True):
        body = "\n".join(",".join(f"{v:.4f}" for v in row) for row in (first, second)).encode()
        assert server.invoke(body, content_type="text/csv")[0] == 200
    for row in rows[ROWS // 2 :]:
        assert server.invoke(json.dumps([row.tolist()]).encode(), content_type="application/json")[0] == 200


def stop(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=20) == 0, server.output()


def test_drift_reads_a_local_capture_folder(project_dir: Path, run: Run, tmp_path: Path) -> None:
    model = train(tmp_path / "model")
    capture = tmp_path / "capture"
    server = start_serve(["serve", "churn", "--path", str(model), "--capture", str(capture)], tmp_path / "log")
    try:
        send_rows(server)
        stop(server)
    finally:
        stop_process(server.process)
    sample = training_sample(tmp_path / "train.csv")
    report = scored(
        run("drift", "churn", "--stack", "dev", "--capture", str(capture), "--baseline", str(sample), "--since", "1h",
            "--json")
    )  # fmt: skip
    assert report["rows"] == ROWS, report
    assert not any(report.get("malformed", {}).values()), report


@pytest.mark.emulator
def test_drift_reads_what_serve_captured_into_the_stage_registry(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path
) -> None:
    direct_delivery(project_dir)  # staging's pointer moves at promotion, so serve --stack staging finds the version
    ok(run("local", "bootstrap", "--all", "--json"))
    model = train(tmp_path / "model")
    sample = training_sample(tmp_path / "train.csv")
    ok(run("register", str(model), "-m", "churn", "--framework", "sklearn",
           "--baseline", str(sample), "--json"))  # fmt: skip
    ok(run("promote", "churn", "--to", "dev", "--reason", "t", "--json"))
    ok(run("promote", "churn", "--to", "staging", "--reason", "t", "--json"))
    server = start_serve(["serve", "churn", "--stack", "staging", "--capture-stage", "staging"], tmp_path / "log")
    try:
        send_rows(server)
        stop(server)
    finally:
        stop_process(server.process)
    report = scored(run("drift", "churn", "--stack", "staging", "--since", "1h", "--json"))
    assert report["rows"] == ROWS, report
    assert report["version"] == 1
    assert not any(report.get("malformed", {}).values()), report
