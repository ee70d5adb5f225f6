"""`mlinfra check --all` (limit 6 s) against `mlinfra preview --all` measured in the same run, and the rules alone.

Each stack is rendered once; the rules and the estimate then run over the rendered resources, so `check --all`
should cost about what `preview --all` does. Runs alternate between the two commands so machine load hits both.
"""

from __future__ import annotations

import statistics
import time

from bench.common import BIN, REPO, run_quiet

REPEAT = 3
LIMIT_SECONDS = 6.0


def _rules_per_stack() -> float:
    """Median seconds to evaluate every rule and the estimate over the pinned prod render (no rendering)."""
    from mlinfra.stacks.files import raw_config
    from mlinfra.stacks.project import Project
    from mlinfra.stacks.render import render
    from mlinfra_infra.config import load_stack_config
    from mlinfra_infra.policy.cost import Assumptions, estimate
    from mlinfra_infra.policy.engine import Context, evaluate
    from mlinfra_infra.policy.rules import RULES
    from tests.builders import merge, pin

    assert RULES, "no rules registered"

    project = Project(REPO)
    raw = merge(raw_config(project, "prod"), {"mlinfra:models": {"churn": {"pinned": pin(stage="prod")}}})
    cfg = load_stack_config(raw, project=project.name, stage="prod", source="bench")
    stack = render(raw, project=project.name, stage="prod", source="bench")
    ctx, assume = Context.from_config(cfg), Assumptions.from_config(cfg)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        assert evaluate(stack.resources, ctx) == []
        estimate(stack.resources, cfg.region, assume)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> bool:
    mlinfra = str(BIN / "mlinfra")
    check_times, preview_times = [], []
    for _ in range(REPEAT):
        for command, times in (("preview", preview_times), ("check", check_times)):
            start = time.perf_counter()
            run_quiet(mlinfra, command, "--all")
            times.append(time.perf_counter() - start)
    check_all, preview_all = statistics.median(check_times), statistics.median(preview_times)
    within = check_all < LIMIT_SECONDS
    print(
        f"mlinfra check --all (4 stacks, median of {REPEAT}): {check_all:.2f}s (limit {LIMIT_SECONDS:g} s) "
        f"{'OK' if within else 'OVER'}  vs mlinfra preview --all: {preview_all:.2f}s  "
        f"ratio {check_all / preview_all:.2f}"
    )
    rules = _rules_per_stack()
    from mlinfra_infra.policy.rules import RULES

    print(f"{len(RULES)} rules + cost estimate over the pinned prod render (no render): {rules * 1000:.2f} ms")
    return within


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
