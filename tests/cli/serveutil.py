"""Helpers for `mlinfra serve` tests: a tiny real scikit-learn model, and `mlinfra serve` started as a real process."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.emulator import free_port, stop_process

MLINFRA = str(Path(sys.executable).parent / "mlinfra")
START_TIMEOUT_SECONDS = 60.0
HANDLER = """
import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
"""


def train(directory: Path, handler: str = HANDLER) -> Path:
    """A logistic regression on 3 features saved as model.joblib, with code/inference.py defining only model_fn.

    The handler sits where `register --framework sklearn` requires it (code/inference.py, the container's layout).
    """
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    features = rng.normal(size=(200, 3))
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(LogisticRegression().fit(features, labels), directory / "model.joblib")
    (directory / "code").mkdir(exist_ok=True)
    (directory / "code" / "inference.py").write_text(handler)
    return directory


@dataclass
class Server:
    """A running `mlinfra serve` process and how to talk to it."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def invoke(self, body: bytes, **headers: str) -> tuple[int, dict[str, str], bytes]:
        names = {"content_type": "Content-Type", "accept": "Accept"}
        return self.request("POST", "/invocations", body, {names.get(k, k): v for k, v in headers.items()})

    def stop(self) -> int:
        """SIGINT (Ctrl-C), as a user stops it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                stop_process(self.process)
        return int(self.process.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_serve(args: list[str], log: Path, cwd: Path | None = None) -> Server:
    """Start `mlinfra serve ARGS --port P` and wait until /ping answers 200 (fails with the log if it exits)."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen([MLINFRA, *args, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    server = Server(process, port, log)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlinfra serve exited {process.returncode}: {server.output()}")
        try:
            if server.request("GET", "/ping")[0] == 200:
                return server
        except OSError:
            time.sleep(0.1)
    stop_process(process)
    pytest.fail(f"mlinfra serve did not answer /ping within {START_TIMEOUT_SECONDS} s: {server.output()}")
