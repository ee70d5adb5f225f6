"""Run every benchmark: `python -m bench` (or `make bench`). Exits 1 if any result is over its limit."""

from __future__ import annotations

from bench import (
    bench_check,
    bench_config,
    bench_diff,
    bench_drift,
    bench_drift_job,
    bench_help,
    bench_pack,
    bench_preview,
    bench_promote,
    bench_register,
    bench_serve,
    bench_ui,
)


def main() -> int:
    modules = (
        bench_help,
        bench_config,
        bench_preview,
        bench_diff,
        bench_check,
        bench_pack,
        bench_promote,
        bench_register,
        bench_drift,
        bench_drift_job,
        bench_serve,
        bench_ui,
    )
    results = [module.main() for module in modules]
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
