"""Scoring capture files in worker processes, for a machine with spare cores (the CLI; never the Lambda job).

The main process reads the capture (S3 downloads in threads) and hands each file's bytes to a worker, which decodes
and counts it with its own Scorer of the same baseline and returns the counts; the main process adds them up. At
most 2 x workers files are in flight, so memory stays bounded. Workers are spawned, not forked: the main process
runs threads (boto3, downloads) that a fork would copy mid-flight.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime
from typing import Any

from .baseline import Baseline
from .capture import CaptureFile, utc
from .score import Scorer

_scorer: Scorer | None = None
_window: tuple[datetime, datetime] | None = None


def _start(baseline_json: str, start: datetime, end: datetime) -> None:
    global _scorer, _window  # noqa: PLW0603 - one scorer per worker process, built once
    _scorer = Scorer(Baseline.from_json(baseline_json))
    _window = (utc(start), utc(end))


def _in_window(when: datetime) -> bool:
    assert _window is not None  # noqa: S101 - set by _start
    return _window[0] <= utc(when) < _window[1]


def _score(data: bytes, edge: bool) -> dict[str, Any]:
    assert _scorer is not None  # noqa: S101 - set by _start
    _scorer.reset()
    _scorer.add_file(CaptureFile("", data, edge), _in_window)
    return _scorer.state()


def score_files(
    scorer: Scorer,
    capture: Iterable[CaptureFile],
    *,
    start: datetime,
    end: datetime,
    workers: int,
    on_file: Callable[[CaptureFile], None] | None = None,
) -> None:
    """Fold every file of `capture` into `scorer`, decoded and counted in `workers` processes."""
    baseline_json = scorer.baseline.model_dump_json(by_alias=True)
    pending: deque[tuple[CaptureFile, Future[dict[str, Any]]]] = deque()

    def finish_one() -> None:
        file, future = pending.popleft()
        scorer.merge(future.result())
        if on_file is not None:
            on_file(file)

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start, initargs=(baseline_json, start, end)
    ) as pool:
        for file in capture:
            pending.append((file, pool.submit(_score, file.data, file.edge)))
            if len(pending) >= 2 * workers:
                finish_one()
        while pending:
            finish_one()
