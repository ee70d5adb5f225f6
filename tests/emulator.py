"""Fixtures for tests against the AWS emulator: moto's server, a real subprocess on loopback, spoken to over HTTP.

`emulator` starts one server per test session (so one per pytest-xdist worker) on a free port; `aws_env` points the
standard AWS environment variables and local mode at it and resets its state, so every test starts from an empty
account. The server keeps moto's default account (123456789012) and maps credentials from an assumed role to the
role's account, so stages in separate accounts can be tested.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlinfra.aws import emulator_answers

REGION = "eu-west-1"
START_TIMEOUT_SECONDS = 30.0
START_ATTEMPTS = 3
# Environment variables that would send boto3 somewhere else or to other credentials than the test's.
_FOREIGN_AWS_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_REGION")


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a process this test session started, and kill it if it does not exit within 5 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _start_server(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start moto's server on a free port; retried on another port if the chosen one was taken meanwhile."""
    for _ in range(START_ATTEMPTS):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            if emulator_answers(url, timeout=0.5):
                return process, url
            time.sleep(0.1)
        stop_process(process)
    tail = log.read_text(errors="replace").strip().splitlines()[-5:]
    pytest.fail(f"moto's server did not start (is moto[server] installed? pip install -e '.[dev]'): {tail}")


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of moto's server, running for this test session (one per xdist worker), stopped at the end."""
    log = tmp_path_factory.mktemp("emulator") / "moto.log"
    process, url = _start_server(log)
    try:
        yield url
    finally:
        stop_process(process)


def reset_emulator(url: str) -> None:
    """Forget every resource the emulator holds (moto's reset API)."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310 - loopback URL
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200, f"resetting the emulator at {url} answered {response.status}"


@pytest.fixture
def aws_env(emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point AWS clients and local mode at the emulator, with dummy credentials, from an empty state; its URL.

    Sets AWS_ENDPOINT_URL, dummy keys, AWS_DEFAULT_REGION=eu-west-1 and MLINFRA_LOCAL=1 for the test only, and hides
    any AWS configuration of the machine running the tests (profiles, config files, per-service endpoints).
    """
    for name in [*_FOREIGN_AWS_ENV, *(key for key in os.environ if key.startswith("AWS_ENDPOINT_URL_"))]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("MLINFRA_LOCAL", "1")
    reset_emulator(emulator)
    return emulator
