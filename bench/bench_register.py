"""`mlinfra register` of a 1 GiB model directory: peak RSS (limit 200 MB), bytes read (each byte once), and time
against boto3's `upload_file` of the same tarball to the same emulator in the same run (limit 2x).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.emulator_project import emulator_project, write_model

SIZE = 1 << 30
IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
# Runs a command in a child Python and reports its peak RSS and the bytes it read, from the kernel's own counters.
MEASURE = """
import json, resource, sys, runpy
target, args, out = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
code = 0
try:
    if target == "mlinfra":
        from mlinfra.main import cli
        cli.main(args=args, standalone_mode=False)
    else:
        sys.argv = [target, *args]
        runpy.run_path(target, run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
json.dump({"rss": peak, "rchar": int(io["rchar"]), "code": code}, open(out, "w"))
"""
UPLOAD = """
import os, sys, boto3
from boto3.s3.transfer import TransferConfig
bucket, path = sys.argv[1], sys.argv[2]
boto3.client("s3", region_name="eu-west-1").upload_file(path, bucket, "baseline/model.tar.gz",
    Config=TransferConfig(multipart_chunksize=16 << 20))
"""


def _measured(root: Path, env: dict[str, str], *command: str) -> tuple[float, dict[str, int]]:
    out = root.parent / "measure.json"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", MEASURE, *command, str(out)], cwd=root, env=env, check=True, stdout=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - start
    return elapsed, json.loads(out.read_text())


def main() -> bool:
    from mlinfra.packaging import pack

    with emulator_project(["big"]) as (root, env):
        model = write_model(root.parent / "model", SIZE, files=4)
        register_time, stats = _measured(root, env, "mlinfra", "register", str(model), "-m", "big", "--image", IMAGE)
        assert stats["code"] == 0, stats
        tarball = root.parent / "model.tar.gz"
        with tarball.open("wb") as handle:
            pack(model, handle.write)
        script = root.parent / "upload.py"
        script.write_text(UPLOAD)
        bucket = "mlinfra-sandbox-123456789012-eu-west-1"
        upload_time, _ = _measured(root, env, str(script), bucket, str(tarball))
        size = tarball.stat().st_size
    ratio = register_time / upload_time
    ok_time = ratio <= 2.0
    ok_rss = stats["rss"] < 200 * 1024 * 1024
    read_ratio = stats["rchar"] / SIZE
    print(
        f"mlinfra register, 1 GiB directory: {register_time:.1f}s ({SIZE / register_time / 1e6:.0f} MB/s) vs "
        f"boto3 upload_file of the same {size / 1e9:.2f} GB tarball: {upload_time:.1f}s "
        f"({size / upload_time / 1e6:.0f} MB/s)  ratio {ratio:.2f} (limit 2) {'OK' if ok_time else 'OVER'}"
    )
    print(f"peak RSS of register: {stats['rss'] / 1e6:.0f} MB (limit 200 MB) {'OK' if ok_rss else 'OVER'}")
    print(
        f"bytes read by register: {stats['rchar'] / 1e9:.3f} GB = {read_ratio:.3f}x the model "
        "(includes Python's own imports)"
    )
    return ok_time and ok_rss


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
