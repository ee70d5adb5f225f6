"""Run every benchmark: `python -m bench` (or `make bench`). Exits 1 if any result is over its limit."""

from __future__ import annotations

from bench import bench_help, bench_preview


def main() -> int:
    results = [bench_help.main(), bench_preview.main()]
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
