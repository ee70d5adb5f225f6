"""`mlinfra check`: the policy pack and the cost estimate through the CLI, its exit codes and its JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.builders import pin
from tests.cli.test_preview import edit_stack

Run = Callable[..., Result]


def pin_churn(root: Path, stage: str, **settings: object) -> None:
    edit_stack(root, stage, "mlinfra:models", {"churn": {"pinned": pin(stage=stage), **settings}})


def test_check_json_has_the_documented_shape(project_dir: Path, run: Run) -> None:
    pin_churn(project_dir, "prod")
    result = run("check", "--stack", "prod", "--offline", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["stack"] == "prod"
    assert doc["rules"] >= 30
    assert doc["violations"] == []
    assert doc["region"] == "eu-west-1"
    assert doc["priceTableDate"]
    lines = {line["resource"]: line for line in doc["resources"]}
    endpoint = lines["mlinfra-prod-churn-c"]
    assert {"resource", "type", "monthlyUsd", "basis"} == set(endpoint)
    # Two ml.m5.xlarge at minCapacity, around the clock, at the table's price.
    assert endpoint["monthlyUsd"] > 300
    assert "minCapacity" in endpoint["basis"]
    # Each line is rounded to the cent on its own: the total may differ from their sum by half a cent per line.
    lines_sum = sum(line["monthlyUsd"] or 0 for line in doc["resources"])
    assert doc["monthlyUsd"] == pytest.approx(lines_sum, abs=0.005 * len(doc["resources"]))


def test_check_all_lists_every_stack(project_dir: Path, run: Run) -> None:
    result = run("check", "--all", "--offline", "--json")
    assert result.exit_code == 0, result.stderr
    docs = json.loads(result.stdout)
    assert [d["stack"] for d in docs] == ["sandbox", "dev", "staging", "prod"]
    sandbox = {line["resource"]: line for line in docs[0]["resources"]}
    # The VM runs 11 h on weekdays (08:00 start, 19:00 stop schedules), its volume all month.
    assert "11 h per weekday" in sandbox["sandbox-instance"]["basis"]
    assert sandbox["sandbox-instance:root-volume"]["monthlyUsd"] > 0


def test_mandatory_violation_exits_3_and_still_reports(project_dir: Path, run: Run) -> None:
    pin_churn(project_dir, "prod", instanceType="ml.m5.large")
    result = run("check", "--stack", "prod", "--offline", "--json")
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert [(v["rule"], v["level"]) for v in doc["violations"]] == [("sagemaker-instance-allowed", "mandatory")]
    assert "mandatory violation" in result.stderr


def test_advisory_violation_prints_but_exits_0(project_dir: Path, run: Run) -> None:
    pin_churn(project_dir, "sandbox")
    edit_stack(
        project_dir, "sandbox", "mlinfra:policy", {"enforcement": "advisory", "allowedInstanceTypes": ["ml.c5.xlarge"]}
    )
    result = run("check", "--stack", "sandbox", "--offline")
    assert result.exit_code == 0, result.stderr
    assert "advisory" in result.stdout
    assert "sagemaker-instance-allowed" in result.stdout


def test_over_budget_exits_3(project_dir: Path, run: Run) -> None:
    pin_churn(project_dir, "prod")
    edit_stack(project_dir, "prod", "mlinfra:budgetMonthlyUsd", 100)
    result = run("check", "--stack", "prod", "--offline", "--json")
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["overBudget"] is True and doc["monthlyUsd"] > 100
    assert "over the budget of 100.00" in result.stderr


def test_region_without_prices_reports_them_missing(project_dir: Path, run: Run) -> None:
    edit_stack(project_dir, "prod", "aws:region", "ap-southeast-2")
    result = run("check", "--stack", "prod", "--offline", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["monthlyUsd"] == 0
    assert doc["region"] == "ap-southeast-2"
    assert {"registry-key", "registry-bucket", "monitoring-dashboard"} <= set(doc["missingPrices"])


def test_preview_shows_the_policy_verdict(project_dir: Path, run: Run) -> None:
    pin_churn(project_dir, "prod", instanceType="ml.m5.large")
    result = run("preview", "--stack", "prod")
    assert result.exit_code == 0, result.stderr
    assert "policy: " in result.stdout and "1 violation(s) (1 mandatory)" in result.stdout


def test_check_refuses_bad_config_with_exit_2(project_dir: Path, run: Run) -> None:
    edit_stack(project_dir, "prod", "mlinfra:policy", {"enforcement": "strict"})
    result = run("check", "--stack", "prod", "--offline")
    assert result.exit_code == 2
    assert "enforcement" in result.stderr


def test_up_runs_the_pack_at_the_stage_level(project_dir: Path) -> None:
    from mlinfra.stacks.check import policy_pack_options
    from mlinfra.stacks.files import load_stage
    from mlinfra.stacks.project import Project

    project = Project(project_dir)
    # The copied project has no infra/policy/: no pack.
    assert policy_pack_options(project, load_stage(project, "prod")) == {}
    pack_dir = project_dir / "infra" / "policy"
    pack_dir.mkdir(parents=True)
    (pack_dir / "PulumiPolicy.yaml").write_text("runtime: python\n")
    for stage, level in (("prod", "mandatory"), ("sandbox", "advisory")):
        options = policy_pack_options(project, load_stage(project, stage))
        assert options["policy_packs"] == [str(pack_dir)]
        # The access contract, the stage context and the framework handler rule stay mandatory whatever the level.
        expected = {
            "all": level,
            "stage-context": "mandatory",
            "access-contract": "mandatory",
            "sagemaker-framework-handler": "mandatory",
        }
        assert json.loads(Path(options["policy_pack_configs"][0]).read_text()) == expected
