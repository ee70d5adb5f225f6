"""Local mode's AWS emulator: start, stop and inspect moto's server on loopback.

`start` records the emulator it runs in `.mlinfra/local/emulator.json` (pid, port, url, started) so that `stop`,
`status` and every `mlinfra --local ...` command find it. No click here: `mlinfra.commands.local` calls these
functions. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from mlinfra.aws import (
    DEFAULT_LOCAL_PORT,
    LOCAL_STATE,
    emulator_answers,
    local_endpoint,
    local_state_file,
)
from mlinfra.errors import MlinfraError, ToolMissingError

if TYPE_CHECKING:
    pass

HOST = "127.0.0.1"
LOCAL_LOG = LOCAL_STATE.with_name("emulator.log")
START_TIMEOUT_SECONDS = 15.0
STOP_GRACE_SECONDS = 5.0
_POLL_SECONDS = 0.1


# The emulator process --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Emulator:
    """An emulator mlinfra started: its process, port and URL, and when it started (UTC, ISO 8601)."""

    pid: int
    port: int
    url: str
    started: str

    def to_json(self) -> dict[str, Any]:
        """The shape recorded in `.mlinfra/local/emulator.json`."""
        return {"pid": self.pid, "port": self.port, "url": self.url, "started": self.started}


@dataclass(frozen=True)
class StopResult:
    """What `stop` found: the emulator it stopped, or a stale record it removed (`was_running` False), or nothing."""

    emulator: Emulator | None
    was_running: bool


def read_state(root: Path) -> Emulator | None:
    """The emulator recorded for this checkout (running or not); None when nothing (readable) is recorded."""
    try:
        data = json.loads(local_state_file(root).read_text(encoding="utf-8"))
        return Emulator(
            pid=int(data["pid"]), port=int(data["port"]), url=str(data["url"]), started=str(data["started"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(root: Path, emulator: Emulator) -> None:
    path = local_state_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(emulator.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic: readers see the old record or the new one, never half of one


def _remove_state(root: Path, pid: int | None = None) -> None:
    """Remove the record (only if it still names `pid`, when given: another start may have replaced it)."""
    if pid is not None:
        recorded = read_state(root)
        if recorded is not None and recorded.pid != pid:
            return
    local_state_file(root).unlink(missing_ok=True)


def process_running(pid: int) -> bool:
    """Whether `pid` is a live moto server; an exited child, a zombie or a reused pid running something else is not."""
    with contextlib.suppress(ChildProcessError):
        # Our own child (a detached start in this process): reap it if it has exited, so it is not a zombie.
        if os.waitpid(pid, os.WNOHANG)[0]:
            return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another user's process that reused the pid
        return False
    proc = Path("/proc")
    if proc.is_dir():  # Linux: make sure the pid is still a moto server before anyone signals it
        try:
            return b"moto.server" in (proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            return False
    return True


def _terminate(pid: int) -> None:
    """SIGTERM `pid`, then SIGKILL if it is still running after STOP_GRACE_SECONDS."""
    for sig, grace in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, STOP_GRACE_SECONDS)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not process_running(pid):
                return
            time.sleep(_POLL_SECONDS)


def port_free(port: int) -> bool:
    """Whether a server can listen on 127.0.0.1:`port` (checked by binding it, as the emulator will)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the emulator's server does: a port whose last connections are in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _require_moto() -> None:
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise ToolMissingError("local mode needs moto's server, which is not installed: pip install 'mlinfra[local]'")


def _last_log_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return "no log"
    return next((line for line in reversed(lines) if line), "empty log")


def _running_record(root: Path) -> Emulator | None:
    """The recorded emulator if it is still running; a stale record (its process gone) is removed."""
    recorded = read_state(root)
    if recorded is None:
        if local_state_file(root).exists():  # unreadable: nothing can use it
            _remove_state(root)
        return None
    if process_running(recorded.pid):
        return recorded
    _remove_state(root, recorded.pid)
    return None


def start(
    root: Path,
    port: int = DEFAULT_LOCAL_PORT,
    *,
    detach: bool,
    on_ready: Callable[[Emulator], None] | None = None,
) -> Emulator:
    """Start moto's server on 127.0.0.1:`port` and record it; `on_ready` is called once it answers.

    Detached, return as soon as it answers (it keeps running after this process exits). In the foreground, run until
    interrupted (Ctrl-C or SIGTERM) or until `mlinfra local stop` stops it, then remove the record. MlinfraError
    (exit 1) when the port is busy, an emulator is already running for this checkout, or the server does not come up
    within START_TIMEOUT_SECONDS; ToolMissingError when moto is not installed.
    """
    _require_moto()
    running = _running_record(root)
    if running is not None:
        if running.port == port:
            raise MlinfraError(
                f"port {port} is in use by the emulator mlinfra started (pid {running.pid}); "
                "stop it with `mlinfra local stop` or pick another port with --port"
            )
        raise MlinfraError(
            f"an emulator started by mlinfra is already running at {running.url} (pid {running.pid}); "
            "stop it with `mlinfra local stop` before starting another"
        )
    if not port_free(port):
        raise MlinfraError(f"port {port} on {HOST} is already in use by another program; pick a free one with --port")

    log_path = root / LOCAL_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://{HOST}:{port}"
    with log_path.open("wb") as log:
        # Its own session: the emulator outlives a detached start, and a terminal's Ctrl-C reaches only mlinfra,
        # which then stops the emulator itself.
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            start_new_session=True,
        )
    emulator = Emulator(pid=process.pid, port=port, url=url, started=datetime.now(UTC).isoformat(timespec="seconds"))
    try:
        _wait_until_answering(process, url, log_path)
        _write_state(root, emulator)
    except BaseException:  # failed, timed out or interrupted (Ctrl-C) while starting: leave nothing running
        if process.poll() is None:
            _terminate(process.pid)
            process.poll()
        raise
    if detach:
        if on_ready is not None:
            on_ready(emulator)
        return emulator
    _run_in_foreground(root, process, emulator, on_ready)
    return emulator


def _wait_until_answering(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    shown_log = LOCAL_LOG.as_posix()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not (emulator_answers(url, timeout=0.5) and process.poll() is None):
        if process.poll() is not None:
            raise MlinfraError(
                f"the emulator exited with code {process.returncode} while starting: {_last_log_line(log_path)} "
                f"(see {shown_log})"
            )
        if time.monotonic() > deadline:
            raise MlinfraError(
                f"the emulator did not answer at {url} within {START_TIMEOUT_SECONDS:g} s and was stopped: "
                f"{_last_log_line(log_path)} (see {shown_log})"
            )
        time.sleep(_POLL_SECONDS)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler in the foreground: stop like Ctrl-C does."""
    raise KeyboardInterrupt


def _run_in_foreground(
    root: Path, process: subprocess.Popen[bytes], emulator: Emulator, on_ready: Callable[[Emulator], None] | None
) -> None:
    # SIGTERM (a service manager, `kill`) must stop the emulator too, not orphan it.
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: no handler, Ctrl-C still works
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    interrupted = False
    try:
        if on_ready is not None:
            on_ready(emulator)
        process.wait()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if process.poll() is None:
            _terminate(process.pid)
            process.poll()
        _remove_state(root, emulator.pid)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    # Stopped by us, or by `mlinfra local stop` from another terminal (SIGTERM): a normal end.
    if not interrupted and process.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL):
        raise MlinfraError(
            f"the emulator exited with code {process.returncode}: {_last_log_line(root / LOCAL_LOG)} "
            f"(see {LOCAL_LOG.as_posix()})"
        )


def stop(root: Path) -> StopResult:
    """Stop the emulator recorded for this checkout (SIGTERM, SIGKILL after STOP_GRACE_SECONDS), remove the record.

    Not an error when none is running: the result says so (a stale record, its process gone, is removed).
    """
    recorded = read_state(root)
    if recorded is None:
        _remove_state(root)  # an unreadable record is no use to anyone
        return StopResult(emulator=None, was_running=False)
    running = process_running(recorded.pid)
    if running:
        _terminate(recorded.pid)
    _remove_state(root, recorded.pid)
    return StopResult(emulator=recorded, was_running=running)


def status(root: Path) -> dict[str, Any]:
    """Whether the recorded emulator runs, and whether an emulator answers where local mode would look.

    `url` is the endpoint `mlinfra --local` uses ($AWS_ENDPOINT_URL, else the recorded emulator, else the default
    port); `pid`, `port` and `started` describe the emulator this checkout recorded, when it is running.
    """
    recorded = read_state(root)
    running = recorded is not None and process_running(recorded.pid)
    url = local_endpoint(root)
    return {
        "running": running,
        "url": url,
        "pid": recorded.pid if running and recorded else None,
        "port": recorded.port if running and recorded else None,
        "started": recorded.started if running and recorded else None,
        "answers": emulator_answers(url),
    }
