"""`mlinfra init-model-repo`: the generated workflow passes zizmor (offline, pedantic) and GitHub's workflow schema,
pins every action to a commit, scopes permissions per job, holds no AWS keys, and its register step really registers
the repository's model (run here against the emulator, as the runner would run it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from ruamel.yaml import YAML

from mlinfra.models import frameworks, scaffold
from tests.cli.test_model_templates import train
from tests.cli.test_promotion import platform

__all__ = ["platform"]
Run = Callable[..., Result]
BIN = Path(sys.executable).parent
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


def generate(run: Run, target: Path, framework: str = "sklearn") -> dict[str, Any]:
    result = run("init-model-repo", str(target), "--model", "churn", "--framework", framework, "--json")
    assert result.exit_code == 0, result.stderr
    return {"written": json.loads(result.stdout), "workflow": target / scaffold.WORKFLOW}


@pytest.mark.parametrize("framework", frameworks.names())
def test_generated_workflow_passes_zizmor_and_the_workflow_schema(run: Run, tmp_path: Path, framework: str) -> None:
    workflow = generate(run, tmp_path / "repo", framework)["workflow"]
    zizmor = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--persona=pedantic", "--no-progress", str(workflow)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert zizmor.returncode == 0, zizmor.stdout + zizmor.stderr
    assert "No findings to report" in zizmor.stdout
    schema = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr


def test_a_broken_workflow_fails_both_checks(run: Run, tmp_path: Path) -> None:
    # The checks above can fail: an action referenced by a movable tag, and a job the schema does not accept.
    workflow = generate(run, tmp_path / "repo")["workflow"]
    text = workflow.read_text()
    workflow.write_text(re.sub(r"actions/checkout@[0-9a-f]{40} # v[\d.]+", "actions/checkout@v4", text, count=1))
    zizmor = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--persona=pedantic", "--no-progress", str(workflow)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert zizmor.returncode != 0 and "unpinned-uses" in zizmor.stdout, zizmor.stdout + zizmor.stderr
    workflow.write_text(text.replace("    runs-on: ubuntu-latest\n", "    runs-on: ubuntu-latest\n    timeout: 5\n", 1))
    schema = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert schema.returncode != 0, schema.stdout


def test_workflow_structure(run: Run, tmp_path: Path) -> None:
    workflow = generate(run, tmp_path / "repo")["workflow"]
    text = workflow.read_text()
    data = YAML(typ="safe").load(text)
    assert data["on"] == {"push": {"tags": ["v*"]}}, "YAML 1.2 (as GitHub reads it): `on` is a key, not true"
    assert data["permissions"] == {}, "no permissions at the top: each job names its own"
    jobs = data["jobs"]
    assert set(jobs) == {"register", "promote"}
    assert jobs["register"]["permissions"] == {"contents": "read", "id-token": "write"}
    assert jobs["promote"]["permissions"] == {}
    assert jobs["promote"]["needs"] == "register"
    for job in jobs.values():
        for step in job["steps"]:
            if "uses" in step:
                assert SHA_PIN.match(step["uses"]), step["uses"]
    for repo, sha, version in scaffold.ACTIONS.values():
        if f"{repo}@" in text:
            assert f"{repo}@{sha} # {version}" in text
    for key in ("aws-access-key-id", "aws-secret-access-key", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"):
        assert key not in text, "OIDC only: no static AWS keys"
    dispatch = jobs["promote"]["steps"][-1]["run"]
    assert "gh workflow run promote.yml" in dispatch
    for field in ("model=churn", "stage=dev", 'version="$VERSION"', "reason="):
        assert f"-f {field}" in dispatch


def test_the_register_step_registers_the_tagged_model(platform: Path, run: Run, tmp_path: Path) -> None:
    # The platform checkout is tmp_path/platform (the `platform` fixture), the model repo sits beside it, as in the
    # workflow (working-directory: platform; ../model-repo/model).
    repo = tmp_path / "model-repo"
    workflow = generate(run, repo)["workflow"]
    train("sklearn", repo / "model")
    (repo / "metrics.json").write_text('{"auc": 0.93}')
    step = next(
        s for s in YAML(typ="safe").load(workflow.read_text())["jobs"]["register"]["steps"] if s.get("id") == "register"
    )
    output = tmp_path / "github-output"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "TAG": "v1.0.0",
        "GIT_SHA": "0123456789abcdef0123456789abcdef01234567",
        "GITHUB_OUTPUT": str(output),
        # the runner has no emulator: here the step is pointed at it, and the framework image resolves offline
        "MLINFRA_LOCAL": "1",
    }
    done = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=tmp_path / step["working-directory"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert output.read_text() == "version=1\n"
    registered = json.loads((tmp_path / "registered.json").read_text())
    assert registered["version"] == 1
    card = json.loads(run("card", "churn", "--json").stdout)
    assert card["description"] == "churn v1.0.0"
    assert card["gitSha"] == env["GIT_SHA"]
    assert card["metrics"] == {"auc": 0.93}
    assert card["handler"] == {"directory": "code", "framework": "sklearn", "program": "inference.py"}
    assert card["sections"] == {}, "the stub's prompts are comments: nothing is documented yet"


def test_init_model_repo_refuses_a_bad_stage_and_existing_files(run: Run, tmp_path: Path) -> None:
    result = run("init-model-repo", str(tmp_path / "r"), "--model", "churn", "--to", "Prod!")
    assert result.exit_code == 2
    assert "'Prod!' is not a stage name" in result.stderr
    assert not (tmp_path / "r").exists()
    generate(run, tmp_path / "r")
    result = run("init-model-repo", str(tmp_path / "r"), "--model", "churn")
    assert result.exit_code == 2
    assert "nothing was written" in result.stderr
