"""Delivery that only moves forward, against real git repositories (a bare origin), a stand-in `gh` and the emulator.

- recording an older commit after a newer one is refused (exit 3) and leaves the pointer;
- a pin that differs from the stage pointer is re-checked where it is applied: `mlinfra check` fails (exit 3) naming
  the gate, for a hand-written pin and for a pull request left open while its gates stopped holding;
- a revert of a promotion's merge is recorded as an `undeploy`, and `status` and the soak gate say so;
- a failing `gh`, a push the server rejects and a branch someone else committed to each stop the promotion (exit 1);
- a promotion refuses gate settings that differ from origin's (exit 3).
"""

# ruff: noqa: F811 - tests take the imported `repo` fixture as a parameter
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_delivery import (
    Run,
    agree,
    apply_job,
    bucket,
    gh_calls,
    git,
    merge,
    ok,
    pointer,
    promoted_to_staging,
    register,
    repo,  # noqa: F401 - the fixture: a clone with a bare origin, gh replaced, bootstrapped in the emulator
    s3,
    shift_times,
)
from tests.cli.test_promotion import IMAGE, make_model

pytestmark = pytest.mark.emulator


def second_version(run: Run, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """v2 through dev into staging, merged and recorded; the merge commit."""
    (tmp_path / "v2").mkdir()
    ok(run("register", str(make_model(tmp_path / "v2", "weights-2")), "--model", "churn", "--image", IMAGE, "--json"))
    ok(run("promote", "churn", "--to", "dev", "--json"))
    ok(run("promote", "churn", "--to", "staging", "--json"))
    merged = merge(tmp_path, "mlinfra/promote-staging-churn-v2")
    assert apply_job(run, tmp_path, monkeypatch, "staging", 2, cwd=repo)["models"][0]["status"] == "deployed"
    return merged


def record_at(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str, sha: str, repo: Path) -> Any:
    """`record-deployment --commit SHA` in a full clone of origin (as the apply job, fetch-depth 0)."""
    ci = tmp_path / f"ci-{stage}-{sha[:7]}"
    if not ci.exists():
        git(tmp_path, "clone", "--quiet", str(tmp_path / "remote.git"), str(ci))
    git(ci, "fetch", "--quiet", "origin")
    monkeypatch.chdir(ci)
    try:
        return run("record-deployment", "--stack", stage, "--commit", sha, "--json")
    finally:
        monkeypatch.chdir(repo)


def test_recording_an_older_commit_after_a_newer_one_is_refused_and_leaves_the_pointer(
    repo: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    promoted_to_staging(run, repo, tmp_path, monkeypatch)
    first = pointer("staging")["deployed"]["commit"]
    newer = second_version(run, repo, tmp_path, monkeypatch)
    before = pointer("staging")
    assert (before["version"], before["deployed"]["commit"]) == (2, newer)

    # "Re-run failed jobs" on the run of the first merge: its record-deployment would move staging back to v1.
    result = record_at(run, tmp_path, monkeypatch, "staging", first, repo)
    assert result.exit_code == 3, result.stderr
    assert result.stderr.count("\n") == 1
    assert first[:12] in result.stderr and newer[:12] in result.stderr
    assert "older than" in result.stderr
    assert pointer("staging") == before, "the pointer is left as it was"
    assert ok(run("history", "churn", "--stage", "staging", "--json"))[0]["action"] == "deploy"
    # The same commit again, and a newer commit, are fine.
    assert ok(record_at(run, tmp_path, monkeypatch, "staging", newer, repo))["models"][0]["status"] == "unchanged"


def hand_pin(repo: Path, source: str, target: str) -> str:
    """Copy `source`'s pin of churn into `target`'s stack file, as a hand edit, committed and pushed to main."""
    from ruamel.yaml import YAML

    from mlinfra.stacks.edit import pinned_text
    from mlinfra.stacks.project import Project

    origin_text = git(repo, "show", f"origin/main:stacks/Pulumi.{source}.yaml")
    pin = YAML(typ="safe").load(origin_text)["config"]["mlinfra:models"]["churn"]["pinned"]
    pin["artifact"] = pin["artifact"].replace(f"-{source}-", f"-{target}-")
    path = repo / "stacks" / f"Pulumi.{target}.yaml"
    text = pinned_text(Project(repo), target, "churn", pin, raw=path.read_bytes(), source=path.name)
    assert text is not None
    path.write_text(text)
    git(repo, "commit", "--quiet", "-am", f"pin churn in {target} by hand")
    return git(repo, "rev-parse", "HEAD")


def test_a_hand_written_prod_pin_without_approval_fails_check_naming_the_approval_gate(
    repo: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    promoted_to_staging(run, repo, tmp_path, monkeypatch)
    git(repo, "pull", "--quiet", "--no-edit", "origin", "main")
    shift_times("staging", deployed_hours_ago=30, since_hours_ago=30)  # soaked: only approval is missing
    hand_pin(repo, "staging", "prod")

    result = run("check", "--stack", "prod")
    assert result.exit_code == 3, result.stderr
    assert result.stderr.count("\n") == 1
    approval = "churn v1: approval: v1 is PendingManualApproval in staging; run `mlinfra approve churn --version 1"
    assert f"{approval} --stack prod" in result.stderr
    assert "soak" not in result.stderr.split("approval:")[1], "soak passed: only the failed gates are named"
    report = json.loads(run("check", "--stack", "prod", "--json").stdout)
    (pin,) = report["pins"]
    assert (pin["model"], pin["version"], pin["checked"], pin["passed"]) == ("churn", 1, True, False)
    failed = {g["gate"] for g in pin["gates"] if not g["passed"]}
    assert failed == {"approval", "registry"}, pin["gates"]  # never promoted: prod's registry lacks v1 too

    # Approved and promoted the proper way, the same pin passes; once recorded it is what the pointer says.
    ok(run("approve", "churn", "--version", "1", "--stage", "prod", "--reason", "card reviewed"))
    git(repo, "reset", "--quiet", "--hard", "origin/main")
    ok(run("promote", "churn", "--to", "prod", "--reason", "soaked", "--json"))
    merge(tmp_path, "mlinfra/promote-prod-churn-v1")
    git(repo, "pull", "--quiet", "--no-edit", "origin", "main")
    report = json.loads(ok_json(run("check", "--stack", "prod", "--json")))
    assert [(p["checked"], p["passed"]) for p in report["pins"]] == [(True, True)]
    apply_job(run, tmp_path, monkeypatch, "prod", 9, cwd=repo)
    report = json.loads(ok_json(run("check", "--stack", "prod", "--json")))
    assert [(p["checked"], p["note"]) for p in report["pins"]] == [(False, "v1 is what prod's pointer records")]
    # --offline checks the policy pack and cost only, without AWS.
    assert "pins" not in json.loads(ok_json(run("check", "--stack", "prod", "--offline", "--json")))


def ok_json(result: Any) -> str:
    assert result.exit_code == 0, result.stderr
    return str(result.stdout)


def test_a_pull_request_left_open_while_the_source_stage_regressed_cannot_apply(
    repo: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    promoted_to_staging(run, repo, tmp_path, monkeypatch)
    ok(run("approve", "churn", "--version", "1", "--stage", "prod", "--reason", "card reviewed"))
    shift_times("staging", deployed_hours_ago=25, since_hours_ago=25)
    ok(run("promote", "churn", "--to", "prod", "--reason", "soaked", "--json"))
    # Meanwhile staging's error alarm fires; the pull request is merged anyway.
    import boto3

    cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1")
    from mlinfra_infra import naming

    alarm = naming.alarm("mlinfra", "staging", "churn", naming.ALARM_KINDS[0])
    cloudwatch.put_metric_alarm(AlarmName=alarm, MetricName="Invocation5XXErrors", Namespace="AWS/SageMaker",
                                Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                                ComparisonOperator="GreaterThanOrEqualToThreshold")  # fmt: skip
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="test")
    merge(tmp_path, "mlinfra/promote-prod-churn-v1")
    git(repo, "pull", "--quiet", "--no-edit", "origin", "main")
    result = run("check", "--stack", "prod")
    assert result.exit_code == 3
    assert f"churn v1: source-alarms: in ALARM in staging: {alarm}" in result.stderr


def revert(tmp_path: Path, merged: str) -> str:
    clone = tmp_path / "revert"
    git(tmp_path, "clone", "--quiet", str(tmp_path / "remote.git"), str(clone))
    git(clone, "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "revert", "--no-edit", "-m", "1", merged)
    git(clone, "push", "--quiet", "origin", "main")
    return git(clone, "rev-parse", "HEAD")


def test_a_revert_followed_by_record_deployment_writes_an_undeploy_record(
    repo: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    promoted_to_staging(run, repo, tmp_path, monkeypatch)
    merged = pointer("staging")["deployed"]["commit"]
    reverted = revert(tmp_path, merged)
    out = apply_job(run, tmp_path, monkeypatch, "staging", 5, cwd=repo)
    assert out["commit"] == reverted
    assert [(m["model"], m["version"], m["status"]) for m in out["models"]] == [("churn", 1, "undeployed")]
    record = ok(run("history", "churn", "--stage", "staging", "--json"))[0]
    assert (record["action"], record["version"], record["commit"]) == ("undeploy", 1, reverted)
    assert record["runUrl"] == "https://github.com/acme/platform/actions/runs/5"
    assert pointer("staging")["deployed"] is None
    assert agree(run)["staging"]["deployed"] is None, "status and history tell the same story"
    (row,) = ok(run("status", "--stack", "staging", "--json"))
    assert row["deployed"] is None and row["pending"] is None
    assert any(note.startswith("v1 undeployed") for note in row["notes"]), row["notes"]
    table = ok(run("status", "--stack", "staging"))
    assert "v1 undeployed at" in table and f"by {reverted[:12]}" in table
    # A day later prod's soak gate does not count a version that is gone.
    ok(run("approve", "churn", "--version", "1", "--stage", "prod", "--reason", "card reviewed"))
    refused = run("promote", "churn", "--to", "prod")
    assert refused.exit_code == 3
    assert "soak: v1 was undeployed from staging" in refused.stderr
    # Recording the revert again changes nothing.
    again = apply_job(run, tmp_path, monkeypatch, "staging", 6, cwd=repo)
    assert again["models"] == []
    assert (
        len([r for r in ok(run("history", "churn", "--stage", "staging", "--json")) if r["action"] == "undeploy"]) == 1
    )


FAILING_GH = """#!{python}
import sys
sys.stdin.read()
sys.stderr.write("pull request create failed: GraphQL: Resource not accessible by integration (createPullRequest)\\n")
sys.exit(1)
"""


def test_a_failing_gh_makes_promote_exit_1_and_records_nothing(
    repo: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gh = tmp_path / "bin" / "gh"
    gh.write_text(FAILING_GH.format(python=os.path.realpath(sys.executable)))
    gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev", "--json"))
    result = run("promote", "churn", "--to", "staging", "--reason", "ready")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "gh pr create failed (pull request create failed: GraphQL: Resource not accessible by integration" in (
        result.stderr
    )
    assert "mlinfra/promote-staging-churn-v1 is on origin" in result.stderr
    assert ok(run("history", "churn", "--stage", "staging", "--json")) == [], "no audit record of an unopened PR"
    assert git(tmp_path / "remote.git", "rev-parse", "mlinfra/promote-staging-churn-v1")


def test_a_rejected_push_keeps_the_servers_reason(
    repo: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = tmp_path / "remote.git" / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\necho 'GH013: Repository rule violations found for refs/heads/mlinfra/promote-staging-churn-v1.' >&2"
        "\necho '- Branch names must match release/*' >&2\nexit 1\n"
    )
    hook.chmod(0o755)
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev", "--json"))
    result = run("promote", "churn", "--to", "staging")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "pushing mlinfra/promote-staging-churn-v1 to origin: ! [remote rejected]" in result.stderr
    assert "(remote: GH013: Repository rule violations found for refs/heads/mlinfra/promote-staging-churn-v1. - " \
        "Branch names must match release/*)" in result.stderr  # fmt: skip
    assert gh_calls(tmp_path) == []


def test_a_branch_carrying_someone_elses_commit_is_not_overwritten(
    repo: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev", "--json"))
    branch = "mlinfra/promote-staging-churn-v1"
    clone = tmp_path / "colleague"
    git(tmp_path, "clone", "--quiet", str(tmp_path / "remote.git"), str(clone))
    git(clone, "checkout", "--quiet", "-b", branch)
    (clone / "stacks" / "Pulumi.staging.yaml").write_text(
        (clone / "stacks" / "Pulumi.staging.yaml").read_text() + "# a colleague's work in progress\n"
    )
    git(clone, "-c", "user.email=colleague@example.com", "-c", "user.name=Colleague", "commit", "--quiet", "-am", "wip")
    git(clone, "push", "--quiet", "origin", branch)
    theirs = git(clone, "rev-parse", "HEAD")

    result = run("promote", "churn", "--to", "staging")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert f"{branch} on origin carries commit {theirs[:7]}" in result.stderr
    assert "Colleague <colleague@example.com>" in result.stderr
    assert git(tmp_path / "remote.git", "rev-parse", branch) == theirs, "their commit is still there"

    # mlinfra's own branch is still reused and updated (a re-run after main moved).
    git(clone, "push", "--quiet", "origin", f":{branch}")
    first = ok(run("promote", "churn", "--to", "staging", "--json"))["pullRequest"]["commit"]
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "main moves")
    git(repo, "push", "--quiet", "origin", "main")
    again = ok(run("promote", "churn", "--to", "staging", "--json"))
    assert again["pullRequest"]["commit"] == first, "same pin on the branch: reused"


def test_promote_refuses_gate_settings_that_differ_from_origins(
    repo: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev", "--json"))
    path = repo / "stacks" / "Pulumi.staging.yaml"
    path.write_text(path.read_text().replace("blockOnSourceAlarm: true", "blockOnSourceAlarm: false"))
    result = run("promote", "churn", "--to", "staging")
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1
    assert "blockOnSourceAlarm: false here, true on origin/main" in result.stderr
    listed = s3().list_objects_v2(Bucket=bucket("staging")).get("Contents", [])
    assert listed == [], "nothing copied into staging"
    assert gh_calls(tmp_path) == []
