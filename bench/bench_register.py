"""`mlinfra register`: a 1 GiB model directory, and a small model with `--framework` against `--image`.

1 GiB: time against boto3's `upload_file` of the same tarball to the same emulator in the same run (limit 1.5x),
peak RSS (limit 200 MB) and bytes read (the model once by the hashing pass, which keeps the tarball on disk; the
tarball then twice over the emulator's plain HTTP, where SigV4 signs the payload before sending it, once over
HTTPS), over RUNS runs (median and spread).

Peak RSS is the child's own high-water mark (VmHWM in /proc/self/status). `getrusage(RUSAGE_SELF).ru_maxrss` is
not: Linux keeps the maximum RSS across execve, and a child spawned with vfork + exec inherits its parent's peak, so
under `python -m bench` it reported the harness's own peak after the render benchmark (323 MB) as register's.

Small model: the time from the process's start to the first upload request, with `--framework` (image resolved
from sagemaker-core's JSON, without importing the SDK) and with `--image`, and the peak RSS of each, over
SMALL_RUNS runs each. Limits: `--framework` at most 0.25 s more than `--image`, and under 1 s beyond the floor
measured in the same run (a bare Python importing boto3 and creating a SageMaker client, which registering needs
before the upload: the bytes are hashed first and looked up among the model's packages).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.emulator_project import emulator_project, write_model

SIZE = 1 << 30
RUNS = 3
SMALL_RUNS = 5
RSS_LIMIT = 200 * 1024 * 1024
RATIO_LIMIT = 1.5
REGISTRY_BUCKET = "mlinfra-sandbox-123456789012-eu-west-1"
BASELINE_BUCKET = "bench-upload-file"  # not versioned: each run's upload replaces the last
IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
# Runs a command in a child Python; reports its own peak RSS, the bytes it read (the kernel's counters) and the wall
# time (since the parent started it) of its first upload request.
MEASURE = """
import json, sys, time, runpy
target, args, out, started = sys.argv[1], sys.argv[2:-2], sys.argv[-2], float(sys.argv[-1])
first_upload = []
def install(session):
    def before_call(model, **_):
        if model.name in ("PutObject", "CreateMultipartUpload") and not first_upload:
            first_upload.append(time.time() - started)
    session.events.register("before-call.s3", before_call)
code = 0
try:
    if target == "mlinfra":
        from mlinfra import aws
        aws.SESSION_HOOKS.append(install)
        from mlinfra.main import cli
        cli.main(args=args, standalone_mode=False)
    else:
        sys.argv = [target, *args]
        runpy.run_path(target, run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
peak = int(status["VmHWM"].split()[0]) * 1024
json.dump({"rss": peak, "rchar": int(io["rchar"]), "code": code, "upload": (first_upload or [None])[0],
           "modules": sorted({m.split(".")[0] for m in sys.modules})}, open(out, "w"))
"""
UPLOAD = """
import os, sys, boto3
from boto3.s3.transfer import TransferConfig
bucket, path = sys.argv[1], sys.argv[2]
boto3.client("s3", region_name="eu-west-1").upload_file(path, bucket, "baseline/model.tar.gz",
    Config=TransferConfig(multipart_chunksize=16 << 20))
"""


def _measured(root: Path, env: dict[str, str], *command: str) -> tuple[float, dict[str, object]]:
    out = root.parent / "measure.json"
    started = time.time()
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", MEASURE, *command, str(out), repr(started)],
        cwd=root,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - start
    stats: dict[str, object] = json.loads(out.read_text())
    assert stats["code"] == 0, stats
    return elapsed, stats


def _forget_objects(env: dict[str, str]) -> None:
    """Delete every object version in the registry and baseline buckets (the emulator keeps them in memory)."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="eu-west-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    for bucket in (REGISTRY_BUCKET, BASELINE_BUCKET):
        listed = s3.list_object_versions(Bucket=bucket)
        for item in listed.get("Versions", []) + listed.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])


def _spread(values: list[float], unit: str, scale: float = 1.0, digits: int = 1) -> str:
    shown = [v / scale for v in values]
    return (
        f"median {statistics.median(shown):.{digits}f}{unit} "
        f"(min {min(shown):.{digits}f}, max {max(shown):.{digits}f}, {len(shown)} runs)"
    )


def _large() -> bool:
    from mlinfra.models.packaging import pack

    register_times: list[float] = []
    upload_times: list[float] = []
    peaks: list[float] = []
    reads: list[float] = []
    with emulator_project(["big"]) as (root, env):
        import boto3

        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="eu-west-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket=BASELINE_BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        model = write_model(root.parent / "model", SIZE, files=4)
        for run in range(RUNS):
            (model / "inference.py").write_text(f"def predict(x):\n    return x  # run {run}\n")  # a new digest
            seconds, stats = _measured(root, env, "mlinfra", "register", str(model), "-m", "big", "--image", IMAGE)
            register_times.append(seconds)
            peaks.append(float(stats["rss"]))  # type: ignore[arg-type]
            reads.append(float(stats["rchar"]) / SIZE)  # type: ignore[arg-type]
            tarball = root.parent / "model.tar.gz"
            with tarball.open("wb") as handle:
                pack(model, handle.write)
            script = root.parent / "upload.py"
            script.write_text(UPLOAD)
            upload_times.append(_measured(root, env, str(script), BASELINE_BUCKET, str(tarball))[0])
            _forget_objects(env)  # the emulator holds every object version in memory: free them between runs
        size = tarball.stat().st_size
    ratios = [r / u for r, u in zip(register_times, upload_times, strict=True)]
    ok_time = statistics.median(ratios) <= RATIO_LIMIT
    ok_rss = max(peaks) < RSS_LIMIT
    print(
        f"mlinfra register, 1 GiB directory: {_spread(register_times, ' s')} vs boto3 upload_file of the same "
        f"{size / 1e9:.2f} GB tarball: {_spread(upload_times, ' s')}; ratio {_spread(ratios, '', digits=2)} "
        f"(limit {RATIO_LIMIT}) {'OK' if ok_time else 'OVER'}"
    )
    print(f"peak RSS of register: {_spread(peaks, ' MB', 1e6, 0)} (limit 200 MB) {'OK' if ok_rss else 'OVER'}")
    print(
        f"bytes read by register: {_spread(reads, 'x', digits=3)} the model (hashing pass, then the kept tarball: "
        "signed and sent over the emulator's HTTP; and Python's own imports)"
    )
    return ok_time and ok_rss


def _floor(env: dict[str, str]) -> float:
    """Wall time of a bare Python that imports boto3 and creates a SageMaker client (what registering must load)."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import boto3; boto3.Session(region_name='eu-west-1').client('sagemaker')"],
        env=env,
        check=True,
    )
    return time.perf_counter() - start


def _small() -> bool:
    times: dict[str, list[float]] = {"image": [], "framework": []}
    peaks: dict[str, list[float]] = {"image": [], "framework": []}
    floors: list[float] = []
    sdk_imported = False
    with emulator_project(["small"]) as (root, env):
        model = root.parent / "small"
        (model / "code").mkdir(parents=True)
        # `--framework` checks the handler contract before any upload: code/inference.py defining model_fn.
        (model / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return model_dir\n")
        for run in range(SMALL_RUNS):
            floors.append(_floor(env))
            for kind in ("image", "framework"):
                (model / "model.bin").write_text(f"{kind} {run}")  # a new digest: every run uploads
                chosen = ["--image", IMAGE] if kind == "image" else ["--framework", "sklearn", "--framework-version"]
                if kind == "framework":
                    chosen.append("1.2-1")
                _, stats = _measured(root, env, "mlinfra", "register", str(model), "-m", "small", *chosen)
                if stats.get("upload") is None:
                    raise SystemExit(f"register --{kind} of the small model uploaded nothing: it failed (see above)")
                times[kind].append(float(stats["upload"]))  # type: ignore[arg-type]
                peaks[kind].append(float(stats["rss"]))  # type: ignore[arg-type]
                sdk_imported |= "sagemaker" in stats["modules"]  # type: ignore[operator]
    extra = [f - i for f, i in zip(times["framework"], times["image"], strict=True)]
    own = [f - b for f, b in zip(times["framework"], floors, strict=True)]
    ok = statistics.median(own) < 1.0 and statistics.median(extra) <= 0.25 and not sdk_imported
    for kind in ("framework", "image"):
        print(
            f"register of a small model with --{kind}: first upload request after "
            f"{_spread(times[kind], ' s', digits=2)}; peak RSS {_spread(peaks[kind], ' MB', 1e6, 0)}"
        )
    print(
        f"baseline: python importing boto3 and creating a SageMaker client: {_spread(floors, ' s', digits=2)}; "
        f"--framework beyond it before the upload: {_spread(own, ' s', digits=2)} (limit 1 s)"
    )
    print(
        f"--framework beyond --image before the upload: {_spread(extra, ' s', digits=2)} (limit 0.25 s); "
        f"sagemaker SDK imported: {'yes' if sdk_imported else 'no'} {'OK' if ok else 'OVER'}"
    )
    return ok


def main() -> bool:
    return _small() & _large()


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
