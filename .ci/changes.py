"""Whether a stage has changes to apply, from `pulumi preview --json`: prints `changes=true|false` for $GITHUB_OUTPUT.

Usage: changes.py PLAN.json --stage S [--event EVENT] [--summary FILE]

Pulumi's JSON preview carries `changeSummary`, a count per operation (`same`, `create`, `update`, `replace`,
`delete`, ...). The stage has changes when any operation other than `same` has a count. A `workflow_dispatch` run
re-applies on purpose, so it always has changes. A plan that cannot be read is an error (exit 1), never "no changes":
the apply job then does not run, and the failed plan job says why.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

UNCHANGED = "same"


def has_changes(plan: dict[str, object]) -> tuple[bool, dict[str, int]]:
    """(changes?, the non-zero operation counts) of a parsed `pulumi preview --json` document."""
    summary = plan.get("changeSummary")
    if not isinstance(summary, dict):
        raise ValueError("no changeSummary in the pulumi preview output")
    counts = {str(op): int(n) for op, n in summary.items() if int(n)}
    return any(op != UNCHANGED for op in counts), counts


def main(argv: list[str] | None = None) -> int:
    """Print `changes=true|false`; append a one-line summary to --summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--event", default="push")
    parser.add_argument("--summary", type=Path)
    args = parser.parse_args(argv)
    try:
        changes, counts = has_changes(json.loads(args.plan.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: {args.plan}: {exc}", file=sys.stderr)
        return 1
    forced = args.event == "workflow_dispatch"
    shown = ", ".join(f"{n} {op}" for op, n in sorted(counts.items())) or "nothing"
    line = f"{args.stage}: {shown}" + (" (re-apply requested)" if forced else "")
    if args.summary:
        with args.summary.open("a", encoding="utf-8") as handle:
            handle.write(f"- plan {line}\n")
    print(line, file=sys.stderr)
    print(f"changes={'true' if changes or forced else 'false'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
