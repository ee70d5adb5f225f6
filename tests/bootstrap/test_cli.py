"""`mlinfra bootstrap preview | up | github`: output, exit codes, one-line errors, and `gh` driven for real."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.bootstrap.conftest import REPO, Standins

Run = Callable[..., Result]


def test_preview_json_lists_provider_roles_state_backend_and_packages(bootstrap_project: Path, run: Run) -> None:
    result = run("bootstrap", "preview", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    types = [r["type"] for r in data["resources"]]
    assert types.count("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == 3
    # 3 per stage, and a source and an approval role in dev and staging (the next stage is in another account).
    assert types.count("aws:iam/role:Role") == 12 + 4
    assert data["outputs"]["sourceRoles"] == {
        "dev": {
            "source": "arn:aws:iam::111111111111:role/mlinfra-dev-source",
            "approval": "arn:aws:iam::111111111111:role/mlinfra-dev-approval",
        },
        "staging": {
            "source": "arn:aws:iam::222222222222:role/mlinfra-staging-source",
            "approval": "arn:aws:iam::222222222222:role/mlinfra-staging-approval",
        },
    }
    assert "mlinfra:aws:StateBackend" in types and "aws:s3/bucketVersioning:BucketVersioning" in types
    assert "aws:codeartifact/domain:Domain" in types and "aws:codeartifact/repository:Repository" in types
    assert data["outputs"]["roles"]["prod"]["deploy"] == "arn:aws:iam::333333333333:role/mlinfra-prod-deploy"
    assert data["stack"] == "bootstrap"
    trust = {row["scenario"]: row for row in data["trust"]}
    assert trust["pull request from a fork"] == {
        "scenario": "pull request from a fork",
        "subject": None,
        "noToken": "GitHub issues fork pull requests no OIDC token",
        "assumes": [],
    }
    assert trust["push to main, environment prod"]["assumes"] == ["mlinfra-prod-deploy (after review)"]


def test_preview_prints_the_tree(bootstrap_project: Path, run: Run) -> None:
    result = run("bootstrap", "preview")
    assert result.exit_code == 0, result.stderr
    assert "stack bootstrap" in result.stdout
    assert "prod-ci-deploy" in result.stdout
    assert "Who may assume which role" in result.stdout
    assert "no token: GitHub issues fork pull requests no OIDC token" in result.stdout


def test_bad_bootstrap_config_exits_2_naming_file_and_key(bootstrap_project: Path, run: Run) -> None:
    path = bootstrap_project / "infra" / "bootstrap" / "Pulumi.bootstrap.yaml"
    path.write_text(path.read_text().replace('accountId: "333333333333"', 'accountId: "3333"'))
    result = run("bootstrap", "preview")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: infra/bootstrap/Pulumi.bootstrap.yaml: bootstrap:stages.prod.accountId: '3333' is not a 12-digit "
        "AWS account id\n"
    )


def test_missing_stack_file_exits_2(bootstrap_project: Path, run: Run) -> None:
    (bootstrap_project / "infra" / "bootstrap" / "Pulumi.bootstrap.yaml").unlink()
    result = run("bootstrap", "github")
    assert result.exit_code == 2
    assert "infra/bootstrap/Pulumi.bootstrap.yaml: file not found" in result.stderr


def test_up_without_the_pulumi_cli_fails_in_one_line(bootstrap_project: Path, run: Run, standins: Standins) -> None:
    result = run("bootstrap", "up", "--yes")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: the pulumi CLI is not installed (needed to apply the bootstrap stack): install it "
        "(https://www.pulumi.com/docs/install/) and run again; `mlinfra bootstrap preview` works without it\n"
    )


def test_up_checks_the_config_before_the_cli(bootstrap_project: Path, run: Run, standins: Standins) -> None:
    path = bootstrap_project / "infra" / "bootstrap" / "Pulumi.bootstrap.yaml"
    path.write_text(path.read_text().replace("kind: self-managed", "kind: pulumi-cloud"))
    result = run("bootstrap", "up", "--yes")
    assert result.exit_code == 2
    assert "needs organization" in result.stderr


def test_github_prints_what_the_workflows_read_filled_from_the_outputs(bootstrap_project: Path, run: Run) -> None:
    result = run("bootstrap", "github", "--json")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    repo_vars = plan["variables"]["repository"]
    assert repo_vars["AWS_REGION"] == "eu-west-1"
    assert repo_vars["PULUMI_BACKEND_URL"] == "s3://mlinfra-pulumi-state-111111111111-eu-west-1?region=eu-west-1"
    envs = plan["variables"]["environments"]
    assert envs["prod"]["AWS_DEPLOY_ROLE"] == "arn:aws:iam::333333333333:role/mlinfra-prod-deploy"
    assert envs["promote-staging"]["AWS_PROMOTION_ROLE"] == "arn:aws:iam::222222222222:role/mlinfra-staging-promotion"
    # promote.yml offers dev, staging and prod only: no promote-sandbox environment is asked for.
    assert "promote-sandbox" not in envs
    rules = {env["name"]: env for env in plan["environments"]}
    assert rules["prod"] == {
        "name": "prod",
        "reviewers": ["team:ml-platform"],
        "preventSelfReview": True,
        "deploymentBranches": ["main"],
    }
    assert rules["dev"]["reviewers"] == [] and rules["dev"]["deploymentBranches"] == ["main"]
    # With a self-managed backend the Pulumi Cloud variables stay unset (the workflows skip that step).
    assert "PULUMI_ORG" in plan["unset"]


def test_github_reports_a_job_that_assumes_a_role_outside_its_environment(bootstrap_project: Path, run: Run) -> None:
    workflow = bootstrap_project / ".github" / "workflows" / "extra.yml"
    workflow.write_text(
        "name: extra\non: [pull_request]\njobs:\n  peek:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ vars.AWS_PREVIEW_ROLE_PROD }}\n"
    )
    result = run("bootstrap", "github")
    assert result.exit_code == 0
    assert (
        "warning: .github/workflows/extra.yml: job peek assumes AWS_PREVIEW_ROLE_PROD in no environment; the role "
        "trusts only environment preview-prod (run the job in that environment)"
    ) in result.stderr


def test_a_variable_the_bootstrap_cannot_fill_refuses(bootstrap_project: Path, run: Run) -> None:
    workflow = bootstrap_project / ".github" / "workflows" / "extra.yml"
    workflow.write_text(
        "name: extra\non: [push]\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    environment: prod\n    steps:\n"
        "      - run: echo ${{ vars.SLACK_CHANNEL }}\n"
    )
    result = run("bootstrap", "github")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: .github/workflows/extra.yml: job x reads vars.SLACK_CHANNEL, which the bootstrap stack does not provide"
    )


def test_github_apply_sets_environments_then_variables_with_gh(
    bootstrap_project: Path, run: Run, standins: Standins
) -> None:
    planned = json.loads(run("bootstrap", "github", "--json").stdout)
    result = run("bootstrap", "github", "--apply")
    assert result.exit_code == 0, result.stderr
    calls = [c["args"] for c in standins.calls("gh")]
    repo = "example-org/mlinfra"
    put = next(
        c
        for c in standins.calls("gh")
        if c["args"][:4] == ["api", "--method", "PUT", f"repos/{repo}/environments/prod"]
    )
    body = json.loads(put["stdin"])
    assert body["reviewers"] == [{"type": "Team", "id": 42}]  # the team's id, looked up with gh
    assert body["prevent_self_review"] is True
    assert body["deployment_branch_policy"] == {"protected_branches": False, "custom_branch_policies": True}
    assert ["api", "orgs/example-org/teams/ml-platform", "--jq", ".id"] in calls
    assert [
        "api",
        "--method",
        "POST",
        f"repos/{repo}/environments/prod/deployment-branch-policies",
        "-f",
        "name=main",
        "-f",
        "type=branch",
    ] in calls
    assert [
        "variable",
        "set",
        "AWS_DEPLOY_ROLE",
        "--repo",
        repo,
        "--env",
        "prod",
        "--body",
        "arn:aws:iam::333333333333:role/mlinfra-prod-deploy",
    ] in calls
    assert ["variable", "set", "AWS_REGION", "--repo", repo, "--body", "eu-west-1"] in calls
    variable_sets = [c for c in calls if c[:2] == ["variable", "set"]]
    expected = len(planned["variables"]["repository"]) + sum(
        len(v) for v in planned["variables"]["environments"].values()
    )
    assert len(variable_sets) == expected
    # Environments exist before their variables are set.
    first_variable = calls.index(variable_sets[0])
    assert all(c[:3] != ["api", "--method", "PUT"] for c in calls[first_variable:])


def test_github_apply_stops_at_the_first_gh_failure(
    bootstrap_project: Path, run: Run, standins: Standins, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_FAIL", "environments/staging")
    result = run("bootstrap", "github", "--apply")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: gh api --method PUT failed: HTTP 403: Resource not accessible by integration (what was set before "
        "stays; run again to finish)\n"
    )
    assert not [c for c in standins.calls("gh") if c["args"][:2] == ["variable", "set"]]


def test_github_apply_without_gh_says_how_to_get_it(
    bootstrap_project: Path, run: Run, standins: Standins, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", standins.path())  # neither gh nor pulumi
    result = run("bootstrap", "github", "--apply")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: the gh CLI is not installed (needed for --apply)")


def test_github_with_pulumi_cloud_sets_the_organization_and_per_stage_teams(bootstrap_project: Path, run: Run) -> None:
    path = bootstrap_project / "infra" / "bootstrap" / "Pulumi.bootstrap.yaml"
    path.write_text(path.read_text().replace("kind: self-managed", "kind: pulumi-cloud\n    organization: acme"))
    result = run("bootstrap", "github", "--json")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["variables"]["repository"]["PULUMI_ORG"] == "acme"
    assert "PULUMI_BACKEND_URL" in plan["unset"]
    assert plan["variables"]["environments"]["prod"]["PULUMI_DEPLOY_TEAM"] == "mlinfra-prod-deploy"
    # One team per stage cannot be a repository-wide variable: a job reading it outside its environment is reported.
    (bootstrap_project / ".github" / "workflows" / "extra.yml").write_text(
        "name: extra\non: [push]\njobs:\n  plan:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ vars.PULUMI_PREVIEW_TEAM }}\n"
    )
    result = run("bootstrap", "github")
    assert result.exit_code == 0
    assert (
        "warning: .github/workflows/extra.yml: job plan reads vars.PULUMI_PREVIEW_TEAM in no environment, where it has "
        "no value (it is set per stage environment: run the job in its stage's environment)"
    ) in result.stderr


@pytest.mark.parametrize(
    ("stage_file", "edit", "message"),
    [
        (
            "Pulumi.prod.yaml",
            "config:\n  mlinfra:accountId: '444444444444'\n",
            "error: infra/bootstrap/Pulumi.bootstrap.yaml: bootstrap:stages.prod.accountId: 333333333333 but "
            "stacks/Pulumi.prod.yaml says mlinfra:accountId 444444444444; make them the same\n",
        ),
        (
            "Pulumi.staging.yaml",
            "config:\n  mlinfra:access:\n    sourceRoleArn: arn:aws:iam::222222222222:role/mlinfra-staging-reader\n"
            "    approvalRoleArn: arn:aws:iam::222222222222:role/mlinfra-staging-approval\n",
            "error: stacks/Pulumi.staging.yaml: mlinfra:access.sourceRoleArn: "
            "arn:aws:iam::222222222222:role/mlinfra-staging-reader is not the bootstrap's role for prod to use staging "
            "as its source; set it to arn:aws:iam::222222222222:role/mlinfra-staging-source\n",
        ),
        (
            "Pulumi.sandbox.yaml",
            "config:\n  mlinfra:access:\n    sourceRoleArn: arn:aws:iam::111111111111:role/mlinfra-sandbox-source\n"
            "    approvalRoleArn: arn:aws:iam::111111111111:role/mlinfra-sandbox-approval\n",
            "error: stacks/Pulumi.sandbox.yaml: mlinfra:access.sourceRoleArn: "
            "arn:aws:iam::111111111111:role/mlinfra-sandbox-source, but the bootstrap creates no such role for sandbox "
            "(dev shares its account); remove it\n",
        ),
        (
            "Pulumi.dev.yaml",
            "config:\n  mlinfra:access:\n    sourceRoleArn: arn:aws:iam::111111111111:role/mlinfra-dev-source\n",
            "error: stacks/Pulumi.dev.yaml: mlinfra:access: sourceRoleArn and approvalRoleArn go together: set both "
            "(`mlinfra bootstrap preview --json | jq .outputs.sourceRoles`) or neither\n",
        ),
        (
            "Pulumi.qa.yaml",
            "config:\n  aws:region: eu-west-1\n",
            "error: infra/bootstrap/Pulumi.bootstrap.yaml: bootstrap:stages: no entry for stage 'qa' "
            "(stacks/Pulumi.qa.yaml); add it with its accountId\n",
        ),
    ],
)
def test_the_bootstrap_must_agree_with_the_stage_stacks(
    bootstrap_project: Path, run: Run, stage_file: str, edit: str, message: str
) -> None:
    path = bootstrap_project / "stacks" / stage_file
    text = path.read_text() if path.exists() else ""
    path.write_text(text.replace("config:\n", edit, 1) if text else edit)
    result = run("bootstrap", "preview", "--json")
    assert result.exit_code == 2
    assert result.stderr == message


def test_github_fills_per_environment_preview_roles_for_jobs_in_preview_environments(
    bootstrap_project: Path, run: Run
) -> None:
    """The convention's shape: preview jobs in `preview-<stage>` read one `AWS_PREVIEW_ROLE`, set per environment."""
    for workflow in (bootstrap_project / ".github" / "workflows").glob("*.yml"):
        workflow.unlink()
    (bootstrap_project / ".github" / "workflows" / "stacks.yml").write_text(
        "name: stacks\non: [pull_request]\njobs:\n  preview:\n    runs-on: ubuntu-24.04\n"
        "    environment: preview-${{ matrix.stage }}\n"
        "    strategy:\n      matrix:\n        stage: [sandbox, dev, staging, prod]\n"
        "    steps:\n      - run: echo ${{ vars.AWS_PREVIEW_ROLE }} ${{ vars.AWS_REGION }}\n"
    )
    result = run("bootstrap", "github", "--json")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["warnings"] == []
    assert plan["variables"]["repository"] == {"AWS_REGION": "eu-west-1"}
    assert plan["variables"]["environments"] == {
        f"preview-{stage}": {"AWS_PREVIEW_ROLE": f"arn:aws:iam::{account}:role/mlinfra-{stage}-preview"}
        for stage, account in (
            ("sandbox", "111111111111"),
            ("dev", "111111111111"),
            ("staging", "222222222222"),
            ("prod", "333333333333"),
        )
    }
    rules = {env["name"]: env["deploymentBranches"] for env in plan["environments"]}
    assert rules == {
        "preview-sandbox": "all",
        "preview-dev": "all",
        "preview-staging": ["main"],
        "preview-prod": ["main"],
    }


def test_github_apply_again_adds_no_branch_policy_that_exists(
    bootstrap_project: Path, run: Run, standins: Standins, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_BRANCH_POLICIES", "main")
    result = run("bootstrap", "github", "--apply")
    assert result.exit_code == 0, result.stderr
    calls = [c["args"] for c in standins.calls("gh")]
    assert [c for c in calls if c[:3] == ["api", "--method", "PUT"]], "environments are still put (idempotent)"
    assert not [c for c in calls if c[:3] == ["api", "--method", "POST"]], "no second branch policy"


def test_commands_work_from_inside_infra_bootstrap(
    bootstrap_project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(REPO / "infra" / "bootstrap" / "Pulumi.yaml", bootstrap_project / "infra" / "bootstrap" / "Pulumi.yaml")
    monkeypatch.chdir(bootstrap_project / "infra" / "bootstrap")  # where `pulumi` commands for the stack run
    result = run("bootstrap", "github", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["repository"] == "example-org/mlinfra"
