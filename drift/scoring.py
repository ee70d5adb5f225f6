"""Scoring a whole capture window: in this process, or in worker processes (mlinfra_drift.parallel) when it pays.

`score(capture, baseline, thresholds, model=, stage=, version=)` is the engine's entry point, used by `mlinfra
drift` and the tests; the scheduled job scores in one process with mlinfra_drift.score.Scorer directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from . import stats
from .baseline import Baseline
from .capture import CaptureFile, LocalCapture, S3Capture
from .report import DriftReport, Thresholds
from .score import Scorer


def score(
    capture: Iterable[CaptureFile],
    baseline: Baseline,
    thresholds: Thresholds | None = None,
    *,
    model: str = "",
    stage: str = "",
    version: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    on_file: Callable[[CaptureFile], None] | None = None,
    workers: int | None = 1,
) -> DriftReport:
    """Score every file of a capture (S3Capture or LocalCapture: window and `in_window` from it) against a baseline.

    `on_file` is called after each file is scored (progress display). `workers` > 1 reads, decodes and counts files
    in that many processes (mlinfra_drift.parallel; not inside AWS Lambda, which has no shared memory for them);
    `None` chooses: one per usable CPU when the window has enough files to repay starting them, else 1.
    """
    start = start or getattr(capture, "start")  # noqa: B009 - S3Capture and LocalCapture carry their window
    end = end or getattr(capture, "end")  # noqa: B009
    scorer = Scorer(baseline)
    files: Iterable[CaptureFile] = capture
    peak = 0
    if isinstance(capture, S3Capture | LocalCapture):
        from .parallel import plan, score_files

        workers, locations = plan(capture.locations(), workers)
        if workers > 1:
            import threading

            # This process mostly waits while the workers score: load the p-value's scipy meanwhile.
            scipy_loader = threading.Thread(target=stats.load_scipy, name="load-scipy", daemon=True)
            scipy_loader.start()
            peak = score_files(scorer, capture, locations, start=start, end=end, workers=workers, on_file=on_file)
            scipy_loader.join()
            files = ()
        else:
            files = capture.read(locations)
    in_window = getattr(capture, "in_window", None)
    for file in files:
        scorer.add_file(file, in_window)
        if on_file is not None:
            on_file(file)
    report = scorer.report(
        model=model, stage=stage, version=version, start=start, end=end, thresholds=thresholds or Thresholds()
    )
    report.workers, report.worker_peak_rss = workers or 1, peak
    return report
