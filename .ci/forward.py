"""Forward only: refuse to plan or apply a commit of main that a newer commit has superseded.

Usage: forward.py --commit SHA --head REF [--workflow .github/workflows/stacks.yml]

Each push to main starts its own stacks run, and GitHub neither orders the runs nor stops "Re-run failed jobs" on an
old one. So before it plans or applies, a job compares its commit with main's head (fetched just before):

- the same commit: go on (exit 0);
- an older commit, and no newer commit on main touches what an apply deploys (the `paths:` of the workflow's push
  trigger, so the newer commits started no run of their own): go on, the stacks are the same (exit 0);
- an older commit, and a newer one changes what deploys: refuse (exit 3) naming both; the newer commit's run applies;
- a commit that is not on main at all: refuse (exit 3).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REFUSED = 3
WORKFLOW = Path(".github/workflows/stacks.yml")


def deploy_paths(workflow: Path) -> list[str]:
    """The glob patterns of the workflow's `on.push.paths` (what an apply deploys)."""
    from ruamel.yaml import YAML  # noqa: PLC0415 - the script's only dependency outside the standard library

    document = YAML(typ="safe", pure=True).load(workflow.read_text(encoding="utf-8"))
    on = document.get("on", document.get(True)) if isinstance(document, dict) else None
    paths = ((on if isinstance(on, dict) else {}).get("push") or {}).get("paths")
    if not isinstance(paths, list) or not paths or any(str(p).startswith("!") for p in paths):
        raise ValueError(f"{workflow}: on.push.paths must be a list of patterns, without negations")
    return [str(p) for p in paths]


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False)


def resolve(ref: str) -> str:
    done = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if done.returncode != 0:
        raise ValueError(f"{ref}: no such commit here (fetch main first)")
    return done.stdout.strip()


def decide(commit: str, head: str, paths: list[str]) -> tuple[bool, str]:
    """(may go on?, the one-line reason)."""
    if commit == head:
        return True, f"{commit[:12]} is main's head"
    if git("merge-base", "--is-ancestor", commit, head).returncode != 0:
        return False, f"refused: {commit[:12]} is not on main (main's head is {head[:12]})"
    newer = git("rev-list", "--count", f"{commit}..{head}").stdout.strip()
    changed = git("diff", "--name-only", commit, head, "--", *[f":(glob){p}" for p in paths]).stdout.split()
    if not changed:
        return True, (
            f"main's head is {head[:12]}, {newer} commit(s) after {commit[:12]}, none changing what deploys: "
            "the stacks are the same"
        )
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return False, (
        f"refused: {commit[:12]} is no longer main's head ({head[:12]}, {newer} commit(s) newer, changing {shown}); "
        f"the run of {head[:12]} applies it"
    )


def main(argv: list[str] | None = None) -> int:
    """Exit 0 to go on, 3 to refuse, 1 when it cannot tell; one line on stderr either way."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", required=True)
    parser.add_argument("--head", required=True)
    parser.add_argument("--workflow", type=Path, default=WORKFLOW)
    args = parser.parse_args(argv)
    try:
        paths = deploy_paths(args.workflow)
        go, reason = decide(resolve(args.commit), resolve(args.head), paths)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(reason if go else f"error: {reason}", file=sys.stderr)
    return 0 if go else REFUSED


if __name__ == "__main__":
    raise SystemExit(main())
