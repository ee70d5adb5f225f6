"""`mlinfra preview --all` (limit 5 s), 50 pinned models (limit 10 s), and linear growth with the model count.

The model counts are rendered in ROUNDS rounds; each round gives its own marginal-cost ratio, and the median ratio
is held to the limit (the spread is printed). Rendering pauses Python's cyclic garbage collector (cli/stacks/render.py):
with it running, full collections scanned a heap that grows with the models, a cost quadratic in their number.
"""

from __future__ import annotations

import time
from statistics import median

from bench.common import BIN, REPO, median_seconds, run_quiet

MODEL_COUNTS = (10, 25, 50)
ROUNDS = 3


def _spread(values: list[float], unit: str, digits: int = 2) -> str:
    return f"median {median(values):.{digits}f}{unit} (min {min(values):.{digits}f}, max {max(values):.{digits}f})"


def _render_models(count: int) -> float:
    from mlinfra.stacks.files import raw_config
    from mlinfra.stacks.project import Project
    from mlinfra.stacks.render import render
    from tests.builders import merge, pin

    project = Project(REPO)
    models = {f"model-{i:02d}": {"pinned": pin(f"model-{i:02d}", 1, "staging")} for i in range(count)}
    raw = merge(raw_config(project, "staging"), {"mlinfra:models": models})
    start = time.perf_counter()
    stack = render(raw, project=project.name, stage="staging", source="bench")
    elapsed = time.perf_counter() - start
    assert len(stack.of_type("aws:sagemaker/endpoint:Endpoint")) == count
    return elapsed


def main() -> bool:
    ok = True
    baseline = median_seconds(lambda: run_quiet(str(BIN / "mlinfra"), "stack", "list"), 3)
    all_time = median_seconds(lambda: run_quiet(str(BIN / "mlinfra"), "preview", "--all"), 3)
    ratio = all_time / baseline
    within = all_time < 5.0
    ok &= within
    print(
        f"mlinfra preview --all (4 stacks, median of 3): {all_time:.2f}s (limit 5 s) {'OK' if within else 'OVER'}"
        f"  vs mlinfra stack list: {baseline:.2f}s  ratio {ratio:.1f}"
    )

    _render_models(1)  # warm the imports so the first count is not charged for them
    rounds = [{count: _render_models(count) for count in MODEL_COUNTS} for _ in range(ROUNDS)]
    for count in MODEL_COUNTS:
        seconds = [r[count] for r in rounds]
        print(
            f"render staging with {count} pinned models: {_spread(seconds, ' s')} "
            f"({median(seconds) / count * 1000:.0f} ms/model)"
        )
    at_50 = [r[50] for r in rounds]
    within = median(at_50) < 10.0
    ok &= within
    print(f"50 pinned models: median {median(at_50):.2f} s (limit 10 s) {'OK' if within else 'OVER'}")
    # Linear growth: the cost of each added model stays the same from 10->25 as from 25->50 (per round).
    firsts = [(r[25] - r[10]) / 15 for r in rounds]
    seconds_ = [(r[50] - r[25]) / 25 for r in rounds]
    growth = [s / f if f > 0 else float("inf") for f, s in zip(firsts, seconds_, strict=True)]
    linear = median(growth) < 1.5
    ok &= linear
    print(
        f"marginal cost per model 10->25: {_spread([f * 1000 for f in firsts], ' ms', digits=0)}, 25->50: "
        f"{_spread([s * 1000 for s in seconds_], ' ms', digits=0)}; ratio {_spread(growth, '', digits=2)} "
        f"(limit 1.5 for linear) {'OK' if linear else 'OVER'}"
    )
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
