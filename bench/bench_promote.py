"""`mlinfra promote` of a 200 MB artifact against a 2 MB one (limit 1.5x): the copy is server-side.

Each promotion is the real command (a process, as an analyst runs it) against the emulator, into a stage where the
artifact is not yet present, so the copy happens every time. A second measurement, in-process with botocore's event
hooks, counts the bytes that crossed the client during a promotion of the large artifact.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import BIN
from bench.emulator_project import emulator_project, write_model

IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
SIZES = {"small": 2 << 20, "large": 200 << 20}
REPEAT = 3


def _mlinfra(root: Path, env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([str(BIN / "mlinfra"), *args], cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _bytes_through_client(root: Path, env: dict[str, str], model: str) -> int:
    """Promote in-process and count request and response body bytes seen by botocore."""
    import os

    from mlinfra import aws
    from mlinfra.registry import promote as promotion
    from mlinfra.stacks.project import Project

    counted = [0]

    def install(session: Any) -> None:
        def on_request(request: Any, **_: Any) -> None:
            body = request.body
            counted[0] += len(body) if isinstance(body, bytes | bytearray) else 0

        def on_response(http_response: Any, **_: Any) -> None:
            # The declared length: reading the body here would consume a streamed response.
            counted[0] += int(http_response.headers.get("content-length") or 0)

        session.events.register("before-send", on_request)
        session.events.register("after-call", on_response)

    saved = dict(os.environ)
    os.environ.update(env)
    aws.SESSION_HOOKS.append(install)
    try:
        promotion.promote(Project(root), model, "dev", version=None, source=None, reason="bench", force=False)
    finally:
        aws.SESSION_HOOKS.remove(install)
        os.environ.clear()
        os.environ.update(saved)
    return counted[0]


def _emulator_copy_seconds(env: dict[str, str], size: int) -> float:
    """Time one server-side CopyObject of `size` bytes in the emulator: its cost, not the client's."""
    import io

    import boto3

    s3 = boto3.client(
        "s3",
        region_name="eu-west-1",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    for name in ("bench-copy-src", "bench-copy-dst"):
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.upload_fileobj(io.BytesIO(bytes(size)), "bench-copy-src", "artifact")
    start = time.perf_counter()
    s3.copy_object(
        Bucket="bench-copy-dst",
        Key="artifact",
        CopySource={"Bucket": "bench-copy-src", "Key": "artifact"},
        ChecksumAlgorithm="SHA256",
    )
    return time.perf_counter() - start


def main() -> bool:
    models = [f"{kind}-{i}" for kind in SIZES for i in range(REPEAT + 1)]
    with emulator_project(models) as (root, env):
        for kind, size in SIZES.items():
            source = write_model(root.parent / f"src-{kind}", size)
            for i in range(REPEAT + 1):
                _mlinfra(root, env, "register", str(source), "-m", f"{kind}-{i}", "--image", IMAGE)
        times = {
            kind: statistics.median(_mlinfra(root, env, "promote", f"{kind}-{i}", "--to", "dev") for i in range(REPEAT))
            for kind in SIZES
        }
        moved = _bytes_through_client(root, env, f"large-{REPEAT}")
        copy = _emulator_copy_seconds(env, SIZES["large"])
    ratio = times["large"] / times["small"]
    ok = ratio <= 1.5
    print(
        f"mlinfra promote, 200 MB artifact (median of {REPEAT}): {times['large']:.2f}s  vs 2 MB: "
        f"{times['small']:.2f}s  ratio {ratio:.2f} (limit 1.5) {'OK' if ok else 'OVER'}"
    )
    beyond = times["large"] - copy
    print(
        f"the emulator's own CopyObject of 200 MB, measured alone: {copy:.2f}s; promote beyond it: "
        f"{beyond:.2f}s, ratio {beyond / times['small']:.2f} to the 2 MB promote"
    )
    print(
        f"bytes through the client while promoting 200 MB: {moved / 1024:.1f} KiB "
        f"({moved / SIZES['large']:.5%} of the artifact)"
    )
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
