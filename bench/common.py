"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_quiet(*args: str) -> None:
    """Run a command from the repo root, discarding its output; fail loudly if it fails."""
    subprocess.run(list(args), cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def report(name: str, value: float, baseline_name: str, baseline: float, limit: float) -> bool:
    """Print one result line and whether the ratio is within `limit`."""
    ratio = value / baseline if baseline else float("inf")
    ok = ratio <= limit
    print(
        f"{name}: {value:.3f}s  vs {baseline_name}: {baseline:.3f}s  ratio {ratio:.2f} (limit {limit:g}) "
        f"{'OK' if ok else 'OVER'}"
    )
    return ok
