"""`mlinfra stack list | select | show` against the shipped stack files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from ruamel.yaml import YAML

from tests.builders import pin
from tests.cli.conftest import snapshot

Run = Callable[..., Result]


def pin_model(root: Path, stage: str, model: str, version: int) -> None:
    path = root / "stacks" / f"Pulumi.{stage}.yaml"
    yaml = YAML()
    data = yaml.load(path.read_text())
    data["config"]["mlinfra:models"][model] = {"pinned": pin(model, version, stage)}
    with path.open("w") as handle:
        yaml.dump(data, handle)


def test_list_shows_every_stage_in_promotion_order(project_dir: Path, run: Run) -> None:
    result = run("stack", "list", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["stage"] for row in rows] == ["sandbox", "dev", "staging", "prod"]
    assert all(row["models"] == {"churn": {"pinned": None}} for row in rows)
    assert not any(row["selected"] for row in rows)


def test_select_persists_and_marks_the_stage(project_dir: Path, run: Run) -> None:
    assert run("stack", "select", "staging").exit_code == 0
    assert (project_dir / ".mlinfra" / "selected-stack").read_text().strip() == "staging"
    rows = json.loads(run("stack", "list", "--json").stdout)
    assert [row["stage"] for row in rows if row["selected"]] == ["staging"]
    table = run("stack", "list").stdout
    assert any(line.split()[:2] == ["*", "staging"] for line in table.splitlines())


def test_selection_overridden_by_env_and_option(project_dir: Path, run: Run) -> None:
    run("stack", "select", "dev")
    assert json.loads(run("stack", "show", "--json").stdout)["stage"] == "dev"
    shown = run("stack", "show", "--json", env={"MLINFRA_STACK": "prod"})
    assert json.loads(shown.stdout)["stage"] == "prod"
    assert json.loads(run("stack", "show", "staging", "--json", env={"MLINFRA_STACK": "prod"}).stdout)["stage"] == (
        "staging"
    )


def test_show_lists_pins_and_the_deterministic_bucket(project_dir: Path, run: Run) -> None:
    pin_model(project_dir, "prod", "churn", 7)
    data = json.loads(run("stack", "show", "prod", "--json").stdout)
    assert data["models"]["churn"]["pinned"]["version"] == 7
    assert data["models"]["churn"]["gates"]["requireApproval"] is True
    assert data["registryBucket"] == "mlinfra-prod-<account>-eu-west-1"
    table = run("stack", "show", "prod").stdout
    assert "v7" in table and "approval" in table
    rows = json.loads(run("stack", "list", "--json").stdout)
    assert rows[-1]["models"] == {"churn": {"pinned": 7}}


def test_shipped_prod_requires_approval_from_staging(project_dir: Path, run: Run) -> None:
    gates = json.loads(run("stack", "show", "prod", "--json").stdout)["models"]["churn"]["gates"]
    assert gates["requireApproval"] is True
    assert gates["fromStage"] == "staging"


def test_select_unknown_stage_suggests_and_writes_nothing(project_dir: Path, run: Run) -> None:
    before = snapshot(project_dir)
    result = run("stack", "select", "prd")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: unknown stage 'prd': no stacks/Pulumi.prd.yaml (did you mean 'prod'?) "
        "(known: sandbox, dev, staging, prod)\n"
    )
    assert snapshot(project_dir) == before


def test_show_without_selection_says_how_to_select(project_dir: Path, run: Run) -> None:
    result = run("stack", "show")
    assert result.exit_code == 2
    assert result.stderr == "error: no stack selected: pass --stack STAGE or run `mlinfra stack select STAGE`\n"


def test_list_reports_a_broken_stack_and_exits_2(project_dir: Path, run: Run) -> None:
    (project_dir / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  mlinfra:models: [unclosed\n")
    result = run("stack", "list", "--json")
    assert result.exit_code == 2
    rows = json.loads(result.stdout)
    assert "invalid YAML" in rows[1]["error"]
    assert rows[0]["models"] == {"churn": {"pinned": None}}  # the others still listed
    assert result.stderr.startswith("error: stacks/Pulumi.dev.yaml: line 3: invalid YAML")


def test_outside_a_project_is_a_clear_error(tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("stack", "list")
    assert result.exit_code == 2
    assert "no Pulumi.yaml in" in result.stderr
    assert result.stderr.count("\n") == 1


def test_select_also_selects_the_pulumi_stack_when_the_cli_is_installed(
    project_dir: Path, run: Run, tmp_path: Path
) -> None:
    # Stands in for the `pulumi` binary (which cannot be installed here) only to see how mlinfra invokes it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    pulumi = bin_dir / "pulumi"
    pulumi.write_text(f'#!/bin/sh\necho "$PWD $*" >> {calls}\n')
    pulumi.chmod(0o755)
    result = run("stack", "select", "dev", "--json", env={"PATH": str(bin_dir)})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"stage": "dev", "pulumiSelected": True}
    assert calls.read_text() == f"{project_dir} stack select dev --create=false\n"


def _with_subscriptions(project_dir: Path, count: int) -> None:
    path = project_dir / "stacks" / "Pulumi.dev.yaml"
    extra = "".join(f"      - protocol: email\n        endpoint: team-{i}@example.com\n" for i in range(count))
    text = path.read_text().replace(
        "      - protocol: email\n        endpoint: ml-dev-alerts@example.com\n",
        "      - protocol: email\n        endpoint: ml-dev-alerts@example.com\n" + extra,
    )
    assert text != path.read_text()
    path.write_text(text)


def test_a_huge_stack_file_is_refused_by_its_size_at_once(project_dir: Path, run: Run) -> None:
    import time

    _with_subscriptions(project_dir, 50_000)
    started = time.monotonic()
    result = run("stack", "show", "dev")
    assert time.monotonic() - started < 5
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: stacks/Pulumi.dev.yaml: ") and "KiB" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_too_many_subscriptions_are_refused_naming_the_key(project_dir: Path, run: Run) -> None:
    _with_subscriptions(project_dir, 150)
    result = run("stack", "show", "dev")
    assert result.exit_code == 2, result.output
    assert "monitoring.notifications" in result.stderr and "at most 100" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
