"""`mlinfra local up` (one idempotent step) and `mlinfra local merge` (a local pull request, merged and applied)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.cli.test_promotion import IMAGE, make_model

pytestmark = pytest.mark.emulator
Run = Callable[..., Result]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_local_up_is_idempotent(project_dir: Path, aws_env: str, run: Run) -> None:
    first = run("local", "up", "--json")
    assert first.exit_code == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["started"] is False and data["endpoint"] == aws_env  # an emulator that answers is reused
    assert [s["stage"] for s in data["stages"]] == ["sandbox", "dev", "staging", "prod"]
    assert all(s["counts"]["created"] > 0 for s in data["stages"])
    again = run("local", "up")
    assert again.exit_code == 0, again.stderr
    assert f"AWS emulator at {aws_env}: already running" in again.stdout
    assert ": 0 created," in again.stdout and "Next: export MLINFRA_LOCAL=1" in again.stdout


def test_promotion_pull_request_merged_locally_records_the_deployment(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path
) -> None:
    assert run("local", "up").exit_code == 0
    model = make_model(tmp_path / "m")
    assert run("register", str(model), "-m", "churn", "--image", IMAGE).exit_code == 0
    promoted = run("promote", "churn", "--to", "dev")
    assert promoted.stdout.startswith("churn: v1 pinned in dev (was nothing); deploys on the next apply\n")
    assert "Next: mlinfra --local record-deployment --stack dev  # stands in for CI's apply" in promoted.stdout
    assert run("record-deployment", "--stack", "dev").exit_code == 0
    proposed = run("promote", "churn", "--to", "staging")
    assert proposed.exit_code == 0, proposed.stderr
    hint = re.search(r"^Next: (mlinfra local merge \S+)", proposed.stdout, re.MULTILINE)
    assert hint, proposed.stdout
    # The hint runs as printed, with the workspace holding an uncommitted dev pin (a direct stage's edit).
    merged = run(*shlex.split(hint.group(1))[1:])
    assert merged.exit_code == 0, merged.stderr
    assert "merged mlinfra/promote-staging-churn-v1 into main (fast-forward" in merged.stdout
    assert "churn: staging runs v1 (deployment recorded)" in merged.stdout
    status = json.loads(run("status", "--stack", "staging", "--json").stdout)
    row = next(r for r in status if r["model"] == "churn")
    assert (row["pointer"], row["deployed"]["version"]) == (1, 1)
    again = run(*shlex.split(hint.group(1))[1:])
    assert again.exit_code == 0 and "already merged" in again.stdout
    unknown = run("local", "merge", "mlinfra/promote-prod-churn-v9")
    assert unknown.exit_code == 2
    assert "no branch 'mlinfra/promote-prod-churn-v9' on local mode's remote (branches: " in unknown.stderr


def test_a_second_pull_request_after_main_moved_is_merged_on_top_of_it(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path
) -> None:
    assert run("local", "up").exit_code == 0
    for name, content in (("churn", "w-1"), ("fraud", "w-2")):  # fraud is declared by local mode on register
        model = make_model(tmp_path / name, content)
        assert run("register", str(model), "-m", name, "--image", IMAGE).exit_code == 0
        assert run("promote", name, "--to", "dev").exit_code == 0
    assert run("record-deployment", "--stack", "dev").exit_code == 0
    for name in ("churn", "fraud"):  # both branches start from the same main
        assert run("promote", name, "--to", "staging").exit_code == 0
    first = run("local", "merge", "mlinfra/promote-staging-churn-v1", "--json")
    assert json.loads(first.stdout)["how"] == "fast-forward"
    second = run("local", "merge", "mlinfra/promote-staging-fraud-v1", "--json")
    assert second.exit_code == 0, second.stderr
    merged = json.loads(second.stdout)
    # The model blocks are kept apart in the stack files, so the second branch merges as it is.
    assert (merged["how"], merged["stages"]) == ("merge", ["staging"])
    rows = {r["model"]: r for r in json.loads(run("status", "--stack", "staging", "--json").stdout)}
    assert rows["churn"]["deployed"]["version"] == rows["fraud"]["deployed"]["version"] == 1
    workspace = project_dir / ".mlinfra" / "local" / "workspace"
    assert git(workspace, "rev-parse", "HEAD") == git(workspace, "rev-parse", "origin/main") == merged["commit"]
