"""The drift job's handler on one hour of capture at 1,000 requests/s, against the memory the stack gives it.

Writes 3,600,000 captured requests (one row each, the example churn model's 4 features: tenure_months,
monthly_charges, support_calls, plan) as SageMaker capture files of 1,000 records (one file per second of traffic)
into a fresh emulator's bucket, with the baseline of examples/churn/baseline.csv where the registry keeps it. Then,
in a child process (its own peak RSS, read from VmHWM), the handler runs once with the JobSpec the staging stack
renders (settleSeconds 0: the files are seconds old) and scores the whole hour.

Baseline in the same run: the same child's peak RSS after importing the handler and boto3, before the run (what
Lambda holds before the first byte of capture). Limit: the run's peak RSS under the function's memory
(`mlinfra:monitoring.jobMemoryMb`, 1,024 MB by default, read from the rendered stack). Run: `python -m
bench.bench_drift_job`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import REPO
from bench.emulator_project import emulator

REQUESTS_PER_SECOND = 1_000
SECONDS = 3_600
BUCKET = "mlinfra-staging-123456789012-eu-west-1"
DISTINCT_FILES = 60  # file bodies generated; the 3,600 files cycle through them (the scorer reads every one)
SEED = 2026
LAMBDA_MB_PER_VCPU = 1769  # Lambda allocates CPU in proportion to memory: one vCPU at 1,769 MB

CHILD = """
import json, resource, sys, time

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

event, out = json.loads(sys.argv[1]), sys.argv[2]
import boto3
from mlinfra_drift import job
boto3.client("s3"), boto3.client("cloudwatch")
imported = hwm()
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

t0, c0 = time.perf_counter(), cpu()
result = job.handler(event, None)
elapsed, cpu_seconds = time.perf_counter() - t0, cpu() - c0
json.dump({"imported": imported, "peak": hwm(), "seconds": elapsed, "cpu": cpu_seconds, "result": result},
          open(out, "w"))
"""


def rendered_staging() -> tuple[dict[str, object], int]:
    """The staging stack's JobSpec (as its schedule sends it) and the function's memory, from the offline render."""
    from mlinfra.stacks.render import render
    from tests.builders import base_config, merge, pin

    raw = merge(
        base_config("staging"),
        {
            "mlinfra:monitoring": {"enabled": True, "drift": True},
            "mlinfra:models": {"churn": {"pinned": pin(version=1, stage="staging"), "capture": {"enabled": True}}},
        },
    )
    stack = render(raw, project="mlinfra", stage="staging", source="stacks/Pulumi.staging.yaml")
    event = json.loads(stack.one("aws:scheduler/schedule:Schedule").inputs["target"]["input"])
    memory = int(stack.one("aws:lambda/function:Function").inputs["memorySize"])
    return event, memory


@contextmanager
def job_emulator() -> Iterator[dict[str, str]]:
    """A fresh emulator, with this checkout importable in the benchmark's child process."""
    work = Path(tempfile.mkdtemp(prefix="mlinfra-bench-job-"))
    pythonpath = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))
    with emulator(work / "moto.log", PYTHONPATH=pythonpath) as env:
        yield env


def file_bodies(rng: object) -> list[bytes]:
    """DISTINCT_FILES capture files of REQUESTS_PER_SECOND records, rows drawn like the example's baseline."""
    import numpy as np

    from mlinfra_drift.records import capture_line

    assert isinstance(rng, np.random.Generator)
    bodies = []
    when = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    for _ in range(DISTINCT_FILES):
        tenure = rng.integers(1, 72, REQUESTS_PER_SECOND)
        charges = rng.lognormal(4.2, 0.35, REQUESTS_PER_SECOND)
        calls = rng.poisson(1.5, REQUESTS_PER_SECOND)
        plans = rng.choice(["basic", "plus", "pro"], size=REQUESTS_PER_SECOND)
        lines = [
            capture_line(f"{t},{c:.2f},{k},{p}", inference_time=when, event_id=str(uuid.uuid4()), output="0.42")
            for t, c, k, p in zip(tenure, charges, calls, plans, strict=True)
        ]
        bodies.append(("\n".join(lines) + "\n").encode())
    return bodies


def main() -> bool:
    import boto3
    import numpy as np

    from mlinfra.models.inputs import read_baseline
    from mlinfra_drift.capture import capture_key

    event, memory_mb = rendered_staging()
    (model,) = event["models"]  # type: ignore[misc]
    event["settleSeconds"] = 0
    event["firstLookbackSeconds"] = 2 * SECONDS
    with job_emulator() as env:
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        baseline = read_baseline(REPO / "examples" / "churn" / "baseline.csv")
        s3.put_object(Bucket=BUCKET, Key=model["baselineKey"], Body=json.dumps(baseline).encode())
        bodies = file_bodies(np.random.default_rng(SEED))
        start = datetime.now(UTC) - timedelta(hours=1)
        # capture/<model>/<endpoint>/<variant>/: SageMaker adds the hour partition and the file name.
        parts = model["capturePrefix"].strip("/").split("/")

        def put(second: int) -> int:
            written = start + timedelta(seconds=second)
            key = capture_key("/".join(parts[:2]), parts[2], parts[3], written, uuid.uuid4().hex)
            body = bodies[second % DISTINCT_FILES]
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            return len(body)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            written = sum(pool.map(put, range(SECONDS)))
        write_seconds = time.perf_counter() - t0
        time.sleep(1.1)  # LastModified has second resolution; the run starts after the last write's second

        out = Path(tempfile.mkdtemp()) / "job.json"
        subprocess.run([sys.executable, "-c", CHILD, json.dumps(event), str(out)], env=env, check=True)
        measured = json.loads(out.read_text())

    (result,) = measured["result"]["models"]
    rows = REQUESTS_PER_SECOND * SECONDS
    assert result["rows"] == rows and result["files"] == SECONDS, result
    vcpu = memory_mb / LAMBDA_MB_PER_VCPU
    peak_mb = measured["peak"] / 1e6
    imported_mb = measured["imported"] / 1e6
    ok = measured["peak"] < memory_mb * 1024 * 1024
    print(
        f"drift job, one hour at {REQUESTS_PER_SECOND:,} requests/s ({rows:,} rows x 4 features, {SECONDS:,} files, "
        f"{written / 1e9:.2f} GB written in {write_seconds:.0f}s): scored in {measured['seconds']:.1f}s "
        f"({rows / measured['seconds']:,.0f} rows/s), {measured['cpu']:.1f} CPU-seconds; at {memory_mb} MB Lambda "
        f"gives {vcpu:.2f} vCPU: about {measured['cpu'] / vcpu:.0f}s"
    )
    print(
        f"drift job peak RSS: {peak_mb:.0f} MB vs the function's memory {memory_mb} MB "
        f"(ratio {peak_mb / memory_mb:.2f}); after imports alone: {imported_mb:.0f} MB  {'OK' if ok else 'OVER'}"
    )
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
