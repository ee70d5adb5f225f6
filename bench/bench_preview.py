"""`mlinfra preview --all` (limit 5 s), 50 pinned models (limit 10 s), and linear growth with the model count."""

from __future__ import annotations

import time

from bench.common import BIN, REPO, median_seconds, run_quiet

MODEL_COUNTS = (10, 25, 50)


def _render_models(count: int) -> float:
    from mlinfra.project import Project
    from mlinfra.render import render
    from mlinfra.stackfile import raw_config
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
    times = {count: min(_render_models(count) for _ in range(2)) for count in MODEL_COUNTS}
    for count, seconds in times.items():
        print(f"render staging with {count} pinned models: {seconds:.2f}s ({seconds / count * 1000:.0f} ms/model)")
    within = times[50] < 10.0
    ok &= within
    print(f"50 pinned models: {times[50]:.2f}s (limit 10 s) {'OK' if within else 'OVER'}")
    # Linear growth: the cost of each added model stays the same from 10->25 as from 25->50.
    first = (times[25] - times[10]) / 15
    second = (times[50] - times[25]) / 25
    growth = second / first if first > 0 else float("inf")
    linear = growth < 1.5
    ok &= linear
    print(
        f"marginal cost per model 10->25: {first * 1000:.0f} ms, 25->50: {second * 1000:.0f} ms, "
        f"ratio {growth:.2f} (limit 1.5 for linear) {'OK' if linear else 'OVER'}"
    )
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
