"""Scoring capture files in worker processes, for a machine with spare cores (the CLI; never the Lambda job).

Each worker decodes and counts files with its own Scorer of the same baseline and returns the counts; the main
process adds them up. When the capture has a fetcher (a local folder, or S3 with an `S3Access`), the main process
only lists the window and each worker reads the files it scores: nothing but names and counts cross between
processes. Otherwise the main process reads each file and hands its bytes over. At most 2 x workers files are in
flight, so memory stays bounded. Workers come from a fork server (started clean, it imports the scoring code once
and forks each worker from there), or are spawned where there is none; never forked from the main process, which
runs threads (boto3, downloads, progress display) that a fork would copy mid-flight.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from itertools import chain, islice
from pathlib import Path
from typing import Any

from .baseline import Baseline
from .capture import Capture, CaptureFile, Fetcher, S3Fetcher, utc
from .score import Scorer

FILES_PER_WORKER = 8  # a worker costs a process start (~0.4 s of imports): worth it only for this many files each
MAX_WORKERS = 8


class WorkerDiedError(RuntimeError):
    """A worker process failed to start or ended abruptly (killed, out of memory): nothing it counted is kept."""


_scorer: Scorer | None = None
_window: tuple[datetime, datetime] | None = None


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may use: its affinity, capped by a cgroup CPU quota (a container's CPU limit)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    return max(1, min(cpus, quota)) if quota is not None else cpus


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Whole CPUs the cgroup's CPU quota allows (v2 `cpu.max`, v1 `cpu.cfs_quota_us`); None without a quota."""
    own = ""
    with contextlib.suppress(OSError):  # cgroup v2: this process's group, below the (namespaced) root
        own = next(
            (line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::")), ""
        )
    for folder in (root / own.strip("/"), root):
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else max(1, int(quota) // int(period))
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return max(1, quota_us // period_us) if quota_us > 0 and period_us > 0 else None


def auto_workers(files: int, cpus: int | None = None) -> int:
    """How many processes to score `files` files with: one per usable CPU, at least FILES_PER_WORKER files each."""
    return max(1, min(cpus or usable_cpus(), MAX_WORKERS, files // FILES_PER_WORKER))


def plan(locations: Iterator[tuple[str, bool]], workers: int | None) -> tuple[int, Iterator[tuple[str, bool]]]:
    """The worker count (`None`: chosen from the first files listed) and the same locations, none lost."""
    if workers is not None:
        return workers, locations
    head = list(islice(locations, usable_cpus() * FILES_PER_WORKER))
    return auto_workers(len(head)), chain(head, locations)


def _context(fetch: Fetcher | None) -> multiprocessing.context.BaseContext:
    """Workers from a fork server where there is one, else spawned; never a fork of this process (it runs threads).

    The fork server starts clean and single-threaded, imports the scoring code once and forks each worker from there.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mlinfra_drift.workerboot" if isinstance(fetch, S3Fetcher) else __name__])
    return context


def _start(baseline_json: str, start: datetime, end: datetime) -> None:
    global _scorer, _window  # noqa: PLW0603 - one scorer per worker process, built once
    _scorer = Scorer(Baseline.from_json(baseline_json))
    _window = (utc(start), utc(end))
    parent = multiprocessing.parent_process()
    if parent is not None:  # a worker must not outlive the process it scores for (killed with SIGKILL, say)
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="parent-watch", daemon=True).start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def _in_window(when: datetime) -> bool:
    assert _window is not None  # noqa: S101 - set by _start
    return _window[0] <= utc(when) < _window[1]


def peak_rss() -> int:
    """The peak resident memory of the calling process, in bytes (VmHWM; 0 where /proc is not there)."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _score(data: bytes, edge: bool) -> dict[str, Any]:
    assert _scorer is not None  # noqa: S101 - set by _start
    _scorer.reset()
    _scorer.add_file(CaptureFile("", data, edge), _in_window)
    return {**_scorer.state(), "peak_rss": peak_rss()}


def _fetch_and_score(fetch: Fetcher, location: str, edge: bool) -> tuple[int, dict[str, Any]]:
    data = fetch(location)
    return len(data), _score(data, edge)


def score_files(
    scorer: Scorer,
    capture: Capture,
    locations: Iterable[tuple[str, bool]],
    *,
    start: datetime,
    end: datetime,
    workers: int,
    on_file: Callable[[CaptureFile], None] | None = None,
) -> int:
    """Fold every file of `locations` (from `capture`) into `scorer`, scored in `workers` processes.

    The workers read the files themselves when the capture has a fetcher; else this process reads them and hands
    their bytes over. Returns the largest worker's peak RSS.
    """
    baseline_json = scorer.baseline.model_dump_json(by_alias=True)
    fetch = capture.fetcher()  # asked again for each file: S3 credentials as they are then
    pending: deque[tuple[CaptureFile, Future[Any]]] = deque()
    peak = 0

    def finish_one() -> None:
        nonlocal peak
        file, future = pending.popleft()
        if fetch is not None:
            size, state = future.result()
            capture.count(file.key, size)
            file = CaptureFile(file.key, b"", file.edge, size)
        else:
            state = future.result()
        scorer.merge(state)
        peak = max(peak, state["peak_rss"])
        if on_file is not None:
            on_file(file)

    context = _context(fetch)
    try:
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start, initargs=(baseline_json, start, end)
        ) as pool:
            if fetch is not None:
                for location, edge in locations:
                    task = pool.submit(_fetch_and_score, capture.fetcher() or fetch, location, edge)
                    pending.append((CaptureFile(location, b"", edge, 0), task))
                    if len(pending) >= 2 * workers:
                        finish_one()
            else:
                for file in capture.read(locations):
                    pending.append((file, pool.submit(_score, file.data, file.edge)))
                    if len(pending) >= 2 * workers:
                        finish_one()
            while pending:
                finish_one()
    except BrokenProcessPool:
        raise WorkerDiedError(
            "a worker process scoring capture files failed to start or was killed (out of memory?): nothing is "
            "reported from this run; rerun with --workers 1, or where more memory is free"
        ) from None
    return peak
