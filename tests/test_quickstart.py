"""The README's first command: `make quickstart` runs examples/quickstart.py, the whole outer loop on the emulator.

Run here as `make quickstart` runs it (the same interpreter, the file itself), in a temporary scratch checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.emulator


def test_the_quickstart_runs_the_outer_loop_to_a_refused_prod_and_a_drift_alarm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLINFRA_", "AWS_"))}
    env["MLINFRA_QUICKSTART_DIR"] = str(tmp_path / "quickstart")
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    # Each step it promises, in order: prod's gates refuse (3), drift is found and published (3), then done.
    steps = ["## prod refuses it", "## Drift of the last 24 hours", "## staging's status with its alarms", "Done."]
    positions = [out.find(s) for s in steps]
    assert -1 not in positions and positions == sorted(positions), positions
    assert out.count("(exit code 3, as expected)") >= 3
    # The captured answers are the model's own: doubled charges move them, and prediction drift is reported.
    assert "Predictions drifted: mean prediction" in out
    assert f"The scratch project is {tmp_path / 'quickstart'}" in out
    # Local mode pinned into its scratch copy; the checkout's stacks/ are untouched.
    assert subprocess.run(["git", "diff", "--quiet", "--", "stacks"], cwd=REPO, check=False).returncode == 0
