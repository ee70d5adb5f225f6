"""`mlinfra model add`: declares a model in every stage's stack file, keeping comments, validated, all or nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from mlinfra.stacks.files import load_stage
from mlinfra.stacks.project import Project
from tests.cli.conftest import snapshot

Run = Callable[..., Result]


def test_model_add_declares_in_every_stage_keeping_comments(project_dir: Path, run: Run) -> None:
    before = {p.name: p.read_text() for p in (project_dir / "stacks").glob("*.yaml")}
    result = run("model", "add", "fraud", "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out == {"model": "fraud", "declared": ["sandbox", "dev", "staging", "prod"], "unchanged": []}
    project = Project.find()
    for stage in out["declared"]:
        path = project_dir / "stacks" / f"Pulumi.{stage}.yaml"
        text = path.read_text()
        old = before[path.name].splitlines()
        new = text.splitlines()
        added = [line for line in new if line not in old and line.strip()]
        assert added == ["    fraud: {}  # inherits this stage's mlinfra:modelDefaults; add keys here to override them"]
        assert "    churn: {}\n\n    fraud: {}" in text, "a blank line apart: promotions of the two models merge"
        assert [line for line in old if line not in new] == [], f"{path.name}: nothing else changes"
        config = load_stage(project, stage).config
        # the model takes the stage's defaults: what the stage declares for every model
        assert config.models["fraud"].model_dump(exclude={"pinned"}) == config.models["churn"].model_dump(
            exclude={"pinned"}
        )


def test_model_add_twice_changes_nothing(project_dir: Path, run: Run) -> None:
    assert run("model", "add", "fraud").exit_code == 0
    files = snapshot(project_dir / "stacks")
    result = run("model", "add", "fraud")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "sandbox    already declared in stacks/Pulumi.sandbox.yaml"
    assert snapshot(project_dir / "stacks") == files


def test_model_add_only_some_stages(project_dir: Path, run: Run) -> None:
    out = json.loads(run("model", "add", "fraud", "--stack", "sandbox", "--stack", "dev", "--json").stdout)
    assert out["declared"] == ["sandbox", "dev"]
    assert "fraud" not in (project_dir / "stacks" / "Pulumi.prod.yaml").read_text()


def test_model_add_refuses_bad_names_and_stages_writing_nothing(project_dir: Path, run: Run) -> None:
    files = snapshot(project_dir / "stacks")
    result = run("model", "add", "Fraud_Model")
    assert result.exit_code == 2
    assert "'Fraud_Model' is not a model name" in result.stderr
    result = run("model", "add", "fraud", "--stack", "qa")
    assert result.exit_code == 2
    assert snapshot(project_dir / "stacks") == files


def test_model_add_validates_every_file_before_writing_any(project_dir: Path, run: Run) -> None:
    prod = project_dir / "stacks" / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text() + "  mlinfra:bogus: 1\n")
    files = snapshot(project_dir / "stacks")
    result = run("model", "add", "fraud")
    assert result.exit_code == 2
    assert "stacks/Pulumi.prod.yaml" in result.stderr
    assert snapshot(project_dir / "stacks") == files, "sandbox, dev and staging were not written either"
