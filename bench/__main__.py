"""Run every benchmark: `python -m bench` (or `make bench`). Exits 1 if any result is over its limit."""

from __future__ import annotations

from bench import bench_help, bench_pack, bench_preview, bench_promote, bench_register


def main() -> int:
    results = [module.main() for module in (bench_help, bench_preview, bench_pack, bench_promote, bench_register)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
