"""`mlinfra serve` answering /invocations for a small scikit-learn model, on one core, against its bare predict call.

The server (`mlinfra serve --path`) is pinned to one CPU; the client, in this process, is pinned to another when the
machine has one, and sends JSON rows one request at a time over a single keep-alive connection on loopback.
Limit: at least 500 requests/s. The baseline, measured in the same run, is the model's own `predict` on the same
row (decoded as the container's default input_fn would) with no HTTP, no handler and no server.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import BIN

LIMIT_RPS = 500.0
WARMUP = 300
REQUESTS = 4000
FEATURES = 8


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _train(directory: Path) -> object:
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, FEATURES))
    labels = (features @ rng.normal(size=FEATURES) > 0).astype(int)
    model = LogisticRegression().fit(features, labels)
    directory.mkdir(parents=True)
    joblib.dump(model, directory / "model.joblib")
    (directory / "inference.py").write_text(
        "import os\n\nimport joblib\n\n\ndef model_fn(model_dir):\n"
        "    return joblib.load(os.path.join(model_dir, 'model.joblib'))\n"
    )
    return model


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]


def _bare(model: object, data: object) -> list[float]:
    """Seconds per bare predict call on the decoded row."""
    for _ in range(WARMUP):
        model.predict(data)  # type: ignore[attr-defined]
    times = []
    for _ in range(REQUESTS):
        start = time.perf_counter()
        model.predict(data)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - start)
    return times


def _served(model_dir: Path, body: bytes, expected: bytes, cpus: tuple[int, int]) -> tuple[list[float], float, float]:
    """Per-request latencies, wall seconds and server CPU seconds for REQUESTS keep-alive invocations."""
    server_cpu, client_cpu = cpus
    port = _free_port()
    log = model_dir.parent / "serve.log"
    command = [str(BIN / "mlinfra"), "serve", "bench", "--path", str(model_dir), "--port", str(port)]
    with log.open("wb") as out:
        server = subprocess.Popen(["taskset", "-c", str(server_cpu), *command], stdout=out, stderr=subprocess.STDOUT)
    everything = _cpus()
    try:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {client_cpu})
        connection = _connect(port, server, log)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}

        def invoke() -> bytes:
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise SystemExit(f"bench_serve: /invocations answered {response.status}: {payload!r}")
            return payload

        if invoke() != expected:
            raise SystemExit("bench_serve: the server's answer differs from the bare predict call")
        for _ in range(WARMUP):
            invoke()
        latencies = []
        cpu_before = _cpu_seconds(server.pid)
        began = time.perf_counter()
        for _ in range(REQUESTS):
            start = time.perf_counter()
            invoke()
            latencies.append(time.perf_counter() - start)
        elapsed = time.perf_counter() - began
        server_seconds = _cpu_seconds(server.pid) - cpu_before
        connection.close()
    finally:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(everything))
        server.terminate()
        server.wait(timeout=20)
    return latencies, elapsed, server_seconds


def main() -> bool:
    import numpy as np

    cpus = _cpus()
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(scratch) / "model"
        model = _train(model_dir)
        row = [[round(float(v), 4) for v in np.random.default_rng(1).normal(size=FEATURES)]]
        body = json.dumps(row).encode()
        # The baseline: predict on the row decoded as the default input_fn does (JSON -> numpy -> float32).
        data = np.array(json.loads(body)).astype(np.float32)
        bare = _bare(model, data)
        expected = json.dumps(model.predict(data).tolist()).encode()  # type: ignore[attr-defined]
        latencies, elapsed, server_seconds = _served(model_dir, body, expected, (cpus[0], cpus[-1]))

    rps = REQUESTS / elapsed
    capacity = REQUESTS / server_seconds if server_seconds > 0 else float("inf")
    ok = rps >= LIMIT_RPS
    p50, p99 = statistics.median(latencies) * 1000, _percentile(latencies, 0.99) * 1000
    b50, b99 = statistics.median(bare) * 1000, _percentile(bare, 0.99) * 1000
    print(
        f"serve /invocations ({REQUESTS} keep-alive requests, server on CPU {cpus[0]}): {rps:.0f} req/s, "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms  vs bare predict: p50 {b50:.3f} ms, p99 {b99:.3f} ms "
        f"({1000 / b50:.0f} calls/s); server CPU {server_seconds / REQUESTS * 1000:.2f} ms/request "
        f"= {capacity:.0f} req/s per core  (limit >= {LIMIT_RPS:g} req/s) {'OK' if ok else 'UNDER'}"
    )
    return ok


def _connect(port: int, server: subprocess.Popen[bytes], log: Path) -> http.client.HTTPConnection:
    """A keep-alive connection once /ping answers 200 (the model is loaded)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"bench_serve: mlinfra serve exited: {log.read_text(errors='replace')}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", "/ping")
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return connection
        except OSError:
            connection.close()
            time.sleep(0.1)
    raise SystemExit("bench_serve: mlinfra serve did not answer /ping within 60 s")


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
