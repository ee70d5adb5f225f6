"""`mlinfra drift`'s engine end to end on the emulator's S3, against evidently's DataDriftPreset in the same run.

Writes 1,000,000 captured rows x 20 numeric features as SageMaker capture files (one row per request, the real
record shape, hour partitions) into a bucket of a fresh emulator, plus 100,000-row and 300,000-row windows, and a
schema-2 baseline of a 100,000-row reference sample. Then, each in a child process (own peak RSS):

Peak RSS is the child's VmHWM (ru_maxrss would carry over the parent's peak across exec); with worker processes,
the memory is the child's plus each worker's (every worker is counted at the largest one's peak).

- ours: read the baseline from S3, list the window's hour partitions, read, parse, bin and score (mlinfra_drift),
  as `mlinfra drift` does by default (`--workers auto`: one process per usable CPU once the window has 8 files per
  process; the workers download the files they score), and in one process (`--workers 1`) for comparison;
- evidently: Report([DataDriftPreset()]) on the same reference and current rows already loaded as pandas
  DataFrames (only the report is timed), in the benchmark's own venv .venv-bench (created here on first use:
  evidently is never a dependency of mlinfra).

Limits (on the default, auto): 1M rows under 15 s, peak RSS under 500 MB, at least 10x faster than evidently.
Rows/s at three sizes show the cost grows linearly. Run: `python -m bench.bench_drift` (or `make bench`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import REPO
from bench.emulator_project import emulator

FEATURES = 20
REFERENCE_ROWS = 100_000
SIZES = (100_000, 300_000, 1_000_000)
ROWS_PER_FILE = 5_000
LIMIT_SECONDS = 15.0
LIMIT_RSS = 500 * 1024 * 1024
LIMIT_RATIO = 10.0
BUCKET = "bench-registry"
WINDOW_END = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
WINDOW_HOURS = 24
BENCH_VENV = REPO / ".venv-bench"
SEED = 2026

# The engine's side, in a child process: everything from the bucket to the report.
OURS = """
import json, sys, time
from datetime import datetime
import boto3
t0 = time.perf_counter()
from mlinfra_drift.baseline import Baseline
from mlinfra_drift.capture import S3Access, S3Capture
from mlinfra_drift.scoring import score
bucket, prefix, start, end, workers = sys.argv[1:6]
session = boto3.Session(region_name="eu-west-1")
s3 = session.client("s3")
baseline = Baseline.from_json(s3.get_object(Bucket=bucket, Key="baseline.json")["Body"].read())
capture = S3Capture(s3, bucket, prefix, datetime.fromisoformat(start), datetime.fromisoformat(end),
                    access=S3Access.of(session, s3))
report = score(capture, baseline, model="bench", stage="bench", version=1,
               workers=None if workers == "auto" else int(workers))
elapsed = time.perf_counter() - t0
peak = int(dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())["VmHWM"].split()[0]) * 1024
print(json.dumps({"seconds": elapsed, "rss": peak, "rows": report.rows, "files": capture.files,
                  "maxPsi": report.max_psi, "malformed": report.malformed, "workers": report.workers,
                  "workerRss": report.worker_peak_rss}))
"""

# evidently's side, in .venv-bench: the same rows as DataFrames, then only the report is timed.
EVIDENTLY = """
import json, sys, time
import numpy as np, pandas as pd
seed, reference_rows, current_rows, features = map(int, sys.argv[1:5])
rng = np.random.default_rng(seed)
reference = rng.normal(0.0, 1.0, size=(reference_rows, features))
current = np.random.default_rng(seed + current_rows).normal(0.0, 1.0, size=(current_rows, features))
current[:, 0] += 0.5
columns = [f"f{i:02d}" for i in range(features)]
ref = pd.DataFrame(reference.round(4), columns=columns)
cur = pd.DataFrame(current.round(4), columns=columns)
try:
    from evidently import Report
    from evidently.presets import DataDriftPreset
    new_api = True
except ImportError:
    from evidently.report import Report
    from evidently.metric_preset import DataDriftPreset
    new_api = False
import evidently
t0 = time.perf_counter()
report = Report([DataDriftPreset()]) if new_api else Report(metrics=[DataDriftPreset()])
result = report.run(cur, ref) if new_api else report.run(reference_data=ref, current_data=cur)
elapsed = time.perf_counter() - t0
peak = int(dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())["VmHWM"].split()[0]) * 1024
print(json.dumps({"seconds": elapsed, "rss": peak, "version": evidently.__version__}))
"""


def rows_of(count: int) -> object:
    """The current window's rows (feature f00 shifted by half a standard deviation), as a numpy array."""
    import numpy as np

    current = np.random.default_rng(SEED + count).normal(0.0, 1.0, size=(count, FEATURES))
    current[:, 0] += 0.5
    return current.round(4)


def write_capture(s3: object, prefix: str, count: int) -> None:
    """`count` rows as SageMaker capture files, one row per request, spread over the window's hour partitions."""
    from mlinfra_drift.capture import capture_key
    from mlinfra_drift.records import capture_line

    data = rows_of(count)
    files = max(1, count // ROWS_PER_FILE)
    start = WINDOW_END - timedelta(hours=WINDOW_HOURS)
    for index in range(files):
        when = start + timedelta(seconds=(index + 0.5) * WINDOW_HOURS * 3600 / files)
        chunk = data[index * ROWS_PER_FILE : (index + 1) * ROWS_PER_FILE]  # type: ignore[index]
        stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        lines = [
            capture_line(",".join(map(repr, row.tolist())), inference_time=when, event_id=str(uuid.uuid4()))
            for row in chunk
        ]
        assert all(stamp in line for line in lines[:1])
        key = capture_key(prefix, "bench-endpoint", "primary", when, str(uuid.uuid4()))
        s3.put_object(Bucket=BUCKET, Key=key, Body=("\n".join(lines) + "\n").encode())  # type: ignore[attr-defined]


def write_baseline(s3: object) -> None:
    """The reference sample's schema-2 baseline, as `mlinfra register --baseline` stores it."""
    import numpy as np

    from mlinfra_drift.baseline import numeric_feature, summary

    reference = np.random.default_rng(SEED).normal(0.0, 1.0, size=(REFERENCE_ROWS, FEATURES)).round(4)
    columns = {f"f{i:02d}": numeric_feature(reference[:, i], REFERENCE_ROWS) for i in range(FEATURES)}
    doc = summary(columns, rows=REFERENCE_ROWS, source="reference.csv", fmt="csv", truncated=False, max_rows=10**6)
    s3.put_object(Bucket=BUCKET, Key="baseline.json", Body=json.dumps(doc, sort_keys=True).encode())  # type: ignore[attr-defined]


def ensure_bench_venv() -> Path:
    """.venv-bench with evidently 0.7, pandas 2 and numpy (created on first use)."""
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    probe = "from evidently import Report; from evidently.presets import DataDriftPreset"
    check = subprocess.run([str(python), "-c", probe], capture_output=True, check=False)
    if check.returncode:
        # evidently 0.7 imports a pandas internal that pandas 3 removed.
        packages = ["evidently>=0.7,<0.8", "pandas>=2,<3", "numpy"]
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True)
    return python


def child(command: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode:
        raise RuntimeError(f"{command[0]} failed: {done.stderr.strip().splitlines()[-5:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def memory(run: dict[str, object]) -> int:
    """A run's memory: its own peak plus each worker process at the largest worker's peak."""
    workers = int(run["workers"])  # type: ignore[call-overload]
    return int(run["rss"]) + (int(run["workerRss"]) * workers if workers > 1 else 0)  # type: ignore[call-overload]


def load_note() -> str:
    load1, _, _ = os.getloadavg()
    return f"load average {load1:.1f} on {os.cpu_count()} cores" + (
        " (machine shared, figures pessimistic)" if load1 > 1.5 else ""
    )


def main() -> bool:
    import boto3

    evidently_python = ensure_bench_venv()
    print(f"bench_drift: {load_note()}")
    with tempfile.TemporaryDirectory() as work, emulator(Path(work) / "moto.log") as env:
        os.environ.update(env)
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        write_baseline(s3)
        for size in SIZES:
            write_capture(s3, f"capture/m{size}", size)
        start = (WINDOW_END - timedelta(hours=WINDOW_HOURS)).isoformat()
        results = {}
        runs = [(size, "auto") for size in SIZES] + [(SIZES[-1], "1")]
        for size, workers in runs:
            command = [sys.executable, "-c", OURS, BUCKET, f"capture/m{size}", start, WINDOW_END.isoformat(), workers]
            ours = child(command, env)
            assert ours["rows"] == size, ours
            assert ours["malformed"] == {}, ours
            results[size, workers] = ours
            rate = size / float(ours["seconds"])  # type: ignore[arg-type]
            print(
                f"  ours --workers {workers:<4} {size:>9,} rows x {FEATURES}: {ours['seconds']:.2f}s  "
                f"{rate:,.0f} rows/s  peak RSS {memory(ours) / 2**20:.0f} MB  ({ours['files']} files, "
                f"{ours['workers']} process(es), max PSI {ours['maxPsi']:.3f})"  # type: ignore[str-format]
            )
    biggest = SIZES[-1]
    theirs = child(
        [str(evidently_python), "-c", EVIDENTLY, str(SEED), str(REFERENCE_ROWS), str(biggest), str(FEATURES)]
    )
    single = results[biggest, "1"]
    ours = results[biggest, "auto"]
    seconds, rss = float(ours["seconds"]), memory(ours)  # type: ignore[arg-type]
    ratio = float(theirs["seconds"]) / seconds  # type: ignore[arg-type]
    single_ratio = float(theirs["seconds"]) / float(single["seconds"])  # type: ignore[arg-type]
    print(
        f"  evidently {theirs['version']} DataDriftPreset, {biggest:,} rows already in DataFrames: "
        f"{theirs['seconds']:.2f}s  peak RSS {int(theirs['rss']) / 2**20:.0f} MB"  # type: ignore[call-overload]
    )
    print(f"  --workers 1: {single_ratio:.1f}x faster than evidently")
    ok = seconds < LIMIT_SECONDS and rss < LIMIT_RSS and ratio >= LIMIT_RATIO
    print(
        f"drift end to end (--workers auto), {biggest:,} rows: {seconds:.2f}s (limit {LIMIT_SECONDS:g}s), peak RSS "
        f"{rss / 2**20:.0f} MB (limit {LIMIT_RSS / 2**20:.0f} MB), {ratio:.1f}x faster than evidently "
        f"(limit {LIMIT_RATIO:g}x) {'OK' if ok else 'OVER'}"
    )
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
