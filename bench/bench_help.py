"""`mlinfra --help` against the cost of starting Python and importing click (limit: 3x)."""

from __future__ import annotations

import sys

from bench.common import BIN, median_seconds, report, run_quiet

REPEAT = 15


def main() -> bool:
    baseline = median_seconds(lambda: run_quiet(sys.executable, "-c", "import click"), REPEAT)
    help_time = median_seconds(lambda: run_quiet(str(BIN / "mlinfra"), "--help"), REPEAT)
    return report("mlinfra --help (median)", help_time, "python -c 'import click'", baseline, 3.0)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
