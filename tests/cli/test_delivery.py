"""Promotion as a pull request and deploy records, against real git repositories and the AWS emulator.

The platform repository is a real git clone whose `origin` is a bare repository in a temporary folder; `gh` is a
stand-in executable on the PATH that records its arguments and the body it was given, and prints a pull request
URL as gh does. Merges happen in the bare remote (through a clone, as a forge does), and the apply job is a fresh
clone of the merged commit running `mlinfra record-deployment`. Everything else is real: git, the CLI, the emulator.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import Result

from mlinfra.stacks.edit import read_pin
from mlinfra_infra import layout, naming
from tests.cli.test_promotion import IMAGE, make_model

Run = Callable[..., Result]
ACCOUNT = "123456789012"
PR_URL = "https://github.com/acme/platform/pull/{n}"
GH_STANDIN = """#!{python}
import json, os, sys
log = os.environ["GH_STANDIN_LOG"]
body = sys.stdin.read() if "-" in sys.argv else ""
calls = [json.loads(line) for line in open(log)] if os.path.exists(log) else []
with open(log, "a") as handle:
    handle.write(json.dumps({{"args": sys.argv[1:], "cwd": os.getcwd(), "body": body}}) + "\\n")
head = sys.argv[sys.argv.index("--head") + 1]
opened = [c for c in calls if c["args"][c["args"].index("--head") + 1] == head]
if opened:  # what gh says when the branch already has an open pull request
    url = "https://github.com/acme/platform/pull/%d" % (calls.index(opened[0]) + 1)
    sys.stderr.write('a pull request for branch "%s" into branch "main" already exists:\\n%s\\n' % (head, url))
    sys.exit(1)
print("https://github.com/acme/platform/pull/%d" % (len(calls) + 1))
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def ok(result: Result) -> Any:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    return json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else result.stdout


def bucket(stage: str) -> str:
    return naming.registry_bucket("mlinfra", stage, "eu-west-1", ACCOUNT)


def s3() -> Any:
    return boto3.client("s3", region_name="eu-west-1")


def pointer(stage: str) -> dict[str, Any] | None:
    try:
        body = s3().get_object(Bucket=bucket(stage), Key=layout.stage_key("churn"))["Body"].read()
    except s3().exceptions.NoSuchKey:
        return None
    return dict(json.loads(body))


def shift_times(stage: str, *, deployed_hours_ago: float, since_hours_ago: float) -> None:
    """Move the stage pointer's clocks: when the version was deployed, and when the pointer last moved."""
    data = pointer(stage)
    assert data is not None
    stamp = lambda hours: (datetime.now(UTC) - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")  # noqa: E731
    data["deployed"]["since"] = stamp(deployed_hours_ago)
    data["since"] = stamp(since_hours_ago)
    s3().put_object(Bucket=bucket(stage), Key=layout.stage_key("churn"), Body=json.dumps(data).encode())


@pytest.fixture
def repo(project_dir: Path, aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Run) -> Path:
    """The platform repo as a git clone with a bare origin, bootstrapped in the emulator, gh replaced on PATH.

    Runs as an analyst against AWS would (AWS_ENDPOINT_URL points boto3 at the emulator; local mode off).
    """
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    (project_dir / ".gitignore").write_text(".mlinfra/\n")
    git(project_dir, "init", "--quiet", "--initial-branch=main")
    git(project_dir, "config", "user.email", "analyst@example.com")
    git(project_dir, "config", "user.name", "Analyst")
    git(project_dir, "add", "-A")
    git(project_dir, "commit", "--quiet", "-m", "platform")
    git(project_dir, "remote", "add", "origin", str(remote))
    git(project_dir, "push", "--quiet", "origin", "main")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(GH_STANDIN.format(python=os.path.realpath(sys.executable)))
    gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("GH_STANDIN_LOG", str(tmp_path / "gh.log"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    ok(run("local", "bootstrap", "--all", "--json"))
    monkeypatch.delenv("MLINFRA_LOCAL")  # from here on: the analyst's and CI's path, against the emulator's API
    return project_dir


def gh_calls(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "gh.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def register(run: Run, tmp_path: Path) -> dict[str, Any]:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"auc": 0.91}))
    model = make_model(tmp_path / "src")
    return ok(run("register", str(model), "--model", "churn", "--image", IMAGE, "--metrics", str(metrics), "--json"))


def merge(tmp_path: Path, branch: str) -> str:
    """Merge `branch` into main in the bare remote, as a forge's merge button does (a merge commit)."""
    clone = tmp_path / f"merge-{branch.replace('/', '-')}"
    git(tmp_path, "clone", "--quiet", str(tmp_path / "remote.git"), str(clone))
    git(clone, "-c", "user.email=forge@example.com", "-c", "user.name=Forge", "merge", "--quiet", "--no-ff",
        f"origin/{branch}", "-m", f"Merge {branch}")  # fmt: skip
    git(clone, "push", "--quiet", "origin", "main")
    return git(clone, "rev-parse", "HEAD")


def apply_job(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str, n: int, *, cwd: Path
) -> dict[str, Any]:
    """CI's apply job stand-in: a fresh clone of main, `pulumi up` assumed to succeed, then the deploy record."""
    ci = tmp_path / f"ci-{stage}-{n}"
    git(tmp_path, "clone", "--quiet", str(tmp_path / "remote.git"), str(ci))
    sha = git(ci, "rev-parse", "HEAD")
    monkeypatch.chdir(ci)
    try:
        url = f"https://github.com/acme/platform/actions/runs/{n}"
        out = ok(run("record-deployment", "--stack", stage, "--commit", sha, "--run-url", url, "--json"))
    finally:
        monkeypatch.chdir(cwd)
    assert out["commit"] == sha
    return dict(out)


def agree(run: Run) -> dict[str, dict[str, Any]]:
    """Assert that `status` and `history` tell the same story for every stage; status rows by stage."""
    rows = {row["stage"]: row for row in ok(run("status", "--all", "--json"))}
    history = ok(run("history", "churn", "--json"))
    for stage, row in rows.items():
        records = [r for r in history if r["stage"] == stage]  # newest first
        moves = [r for r in records if r["action"] in {"register", "deploy"} or r.get("delivery") != "pullRequest"]
        moves = [r for r in moves if r["action"] != "approve"]
        assert row["pointer"] == (moves[0]["version"] if moves else None), (stage, row, records)
        deploys = [r for r in records if r["action"] in {"deploy", "undeploy"}]  # an undeploy clears it
        deployed = row["deployed"]["version"] if row["deployed"] else None
        assert deployed == (deploys[0]["version"] if deploys and deploys[0]["action"] == "deploy" else None), (
            stage,
            row,
            records,
        )
        proposals = [r for r in records if r.get("delivery") == "pullRequest"]
        waiting = proposals[0] if proposals and proposals[0]["version"] != deployed else None
        undone = [r for r in deploys if r["action"] == "undeploy" and r["version"] == (waiting or {}).get("version")]
        if waiting is not None and any(r["time"] > waiting["time"] for r in undone):
            waiting = None  # merged, deployed, then reverted: nothing waits
        assert (row["pending"] or {}).get("version") == (waiting or {}).get("version"), (stage, row, records)
        if waiting is not None:
            assert row["pending"]["pullRequest"] == waiting["pullRequest"]["url"]
            assert any("not deployed" in note for note in row["notes"]), row["notes"]
    return rows


def checkout_state(root: Path) -> tuple[str, str, str, str]:
    """HEAD's commit and branch, the index's tree and the working tree's status: what must not change."""
    return (
        git(root, "rev-parse", "HEAD"),
        git(root, "symbolic-ref", "HEAD"),
        git(root, "write-tree"),
        git(root, "status", "--porcelain", "--untracked-files=all"),
    )


def test_register_to_prod_through_pull_requests_and_recorded_deployments(
    repo: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = register(run, tmp_path)
    agree(run)

    # dev is delivered directly: the pointer moves and the checkout's stack file is pinned at once.
    ok(run("promote", "churn", "--to", "dev", "--reason", "first", "--json"))
    assert read_pin_version(repo, "dev") == 1
    rows = agree(run)
    assert rows["dev"]["pointer"] == 1 and rows["dev"]["deployed"] is None
    assert any("no deployment recorded" in note for note in rows["dev"]["notes"])
    git(repo, "commit", "--quiet", "-am", "Promote churn v1 to dev")
    git(repo, "push", "--quiet", "origin", "main")
    dev = apply_job(run, tmp_path, monkeypatch, "dev", 1, cwd=repo)
    assert dev["models"] == [{"model": "churn", "version": 1, "status": "deployed", "since": dev["models"][0]["since"]}]
    assert agree(run)["dev"]["deployed"]["version"] == 1

    # staging is delivered by pull request: a branch from origin/main, pushed; gh opens the PR; nothing else moves.
    before = checkout_state(repo)
    out = ok(run("promote", "churn", "--to", "staging", "--reason", "ready for staging", "--json"))
    assert checkout_state(repo) == before, "the checkout (HEAD, branch, index, working tree) is untouched"
    assert out["delivery"] == "pullRequest" and out["version"] == 1 and out["previous"] is None
    branch = "mlinfra/promote-staging-churn-v1"
    assert out["pullRequest"]["branch"] == branch
    assert out["pullRequest"]["url"] == PR_URL.format(n=1)
    calls = gh_calls(tmp_path)
    assert [c["args"][:2] for c in calls] == [["pr", "create"]]
    args = calls[0]["args"]
    assert args[args.index("--base") + 1] == "main" and args[args.index("--head") + 1] == branch
    assert args[args.index("--title") + 1] == "Promote churn v1 to staging"
    body = calls[0]["body"]
    assert "| source-stage | pass | promoted from dev |" in body
    assert "ready for staging" in body and "arn:aws:" in body, "who asked and why"
    assert "sagemaker" in body.lower() and "Endpoint" in body, "the preview diff names the new endpoint"
    # The branch carries exactly the pin; the checkout's staging file is not pinned.
    remote_file = git(tmp_path / "remote.git", "show", f"{branch}:stacks/Pulumi.staging.yaml")
    assert "version: 1" in remote_file and reg["digest"] in remote_file
    changed = git(tmp_path / "remote.git", "diff", "--name-only", f"main..{branch}")
    assert changed == "stacks/Pulumi.staging.yaml"
    assert read_pin_version(repo, "staging") is None
    assert pointer("staging") is None, "a pull request does not move the stage pointer"
    rows = agree(run)
    assert rows["staging"]["pending"]["version"] == 1

    # Re-running the promotion finds its branch and pull request: no second record, same commit.
    again = ok(run("promote", "churn", "--to", "staging", "--reason", "ready for staging", "--json"))
    assert again["pullRequest"]["commit"] == out["pullRequest"]["commit"]
    assert again["pullRequest"]["url"] == out["pullRequest"]["url"], "gh reports the open pull request"
    assert len(ok(run("history", "churn", "--stage", "staging", "--json"))) == 1

    # Merge, then the apply job records the deployment: now the pointer moves, with the commit and run URL.
    merged = merge(tmp_path, branch)
    # Merged but not applied yet: promoting again proposes nothing, and status still says it is not deployed.
    text = ok(run("promote", "churn", "--to", "staging"))
    assert "origin/main already pins v1 for staging; nothing to propose" in text
    assert agree(run)["staging"]["pending"]["version"] == 1
    staging = apply_job(run, tmp_path, monkeypatch, "staging", 2, cwd=repo)
    assert staging["commit"] == merged
    assert [m["status"] for m in staging["models"]] == ["deployed"]
    record = ok(run("history", "churn", "--stage", "staging", "--json"))[0]
    assert (record["action"], record["version"], record["commit"]) == ("deploy", 1, merged)
    assert record["runUrl"] == "https://github.com/acme/platform/actions/runs/2"
    rows = agree(run)
    assert rows["staging"]["pointer"] == 1 and rows["staging"]["pending"] is None
    # The same apply recorded twice changes nothing.
    assert apply_job(run, tmp_path, monkeypatch, "staging", 3, cwd=repo)["models"][0]["status"] == "unchanged"
    assert len(ok(run("history", "churn", "--stage", "staging", "--json"))) == 2

    # prod: soak counts from staging's recorded deployment, not from when it was promoted there.
    refused = run("promote", "churn", "--to", "prod")
    assert refused.exit_code == 3
    assert "soak: v1 has been deployed 0.0 h in staging; 24 h required" in refused.stderr
    ok(run("approve", "churn", "--version", "1", "--stage", "prod", "--reason", "card reviewed"))
    shift_times("staging", deployed_hours_ago=1, since_hours_ago=48)
    refused = run("promote", "churn", "--to", "prod")
    assert refused.exit_code == 3
    assert "soak: v1 has been deployed 1.0 h in staging; 24 h required" in refused.stderr
    shift_times("staging", deployed_hours_ago=25, since_hours_ago=25)
    out = ok(run("promote", "churn", "--to", "prod", "--reason", "soaked", "--json"))
    assert out["pullRequest"]["url"] == PR_URL.format(n=3)
    body = gh_calls(tmp_path)[-1]["body"]
    assert "| soak | pass | deployed 25.0 h in staging |" in body
    assert "| approval | pass | approved in staging |" in body
    rows = agree(run)
    assert rows["prod"]["pending"]["pullRequest"] == PR_URL.format(n=3) and rows["prod"]["pointer"] is None

    merged = merge(tmp_path, "mlinfra/promote-prod-churn-v1")
    prod = apply_job(run, tmp_path, monkeypatch, "prod", 4, cwd=repo)
    assert prod["commit"] == merged and prod["models"][0]["status"] == "deployed"
    rows = agree(run)
    assert rows["prod"]["pointer"] == 1 and rows["prod"]["deployed"]["commit"] == merged
    actions = [(h["action"], h["stage"]) for h in ok(run("history", "churn", "--json"))]
    assert actions[:3] == [("deploy", "prod"), ("promote", "prod"), ("approve", "prod")]
    table = ok(run("history", "churn", "--stage", "prod"))
    assert f"commit {merged[:12]} https://github.com/acme/platform/actions/runs/4" in table
    assert PR_URL.format(n=3) in table
    status = ok(run("status", "--stack", "prod"))
    assert "DEPLOYED" in status and f"v1 since {prod['models'][0]['since'].replace('T', ' ')[:19]}" in status


def read_pin_version(root: Path, stage: str) -> int | None:
    from mlinfra.stacks.project import Project

    pin = read_pin(Project(root), stage, "churn")
    return None if pin is None else int(pin["version"])


def promoted_to_staging(run: Run, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """v1 through dev into staging, merged and recorded as deployed."""
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev", "--json"))
    ok(run("promote", "churn", "--to", "staging", "--json"))
    merge(tmp_path, "mlinfra/promote-staging-churn-v1")
    apply_job(run, tmp_path, monkeypatch, "staging", 1, cwd=repo)


def test_rollback_in_a_pull_request_stage_opens_a_pull_request_and_refuses_apply(
    repo: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    promoted_to_staging(run, repo, tmp_path, monkeypatch)
    (tmp_path / "v2").mkdir()
    model = make_model(tmp_path / "v2", "weights-2")
    ok(run("register", str(model), "--model", "churn", "--image", IMAGE, "--json"))
    ok(run("promote", "churn", "--to", "dev", "--json"))
    ok(run("promote", "churn", "--to", "staging", "--json"))
    merge(tmp_path, "mlinfra/promote-staging-churn-v2")
    apply_job(run, tmp_path, monkeypatch, "staging", 2, cwd=repo)

    refused = run("rollback", "churn", "--stage", "staging", "--reason", "latency", "--apply")
    assert refused.exit_code == 2
    assert refused.stderr == (
        "error: --apply is refused for staging: it is delivered by pull request (mlinfra:delivery), and CI's next "
        "apply from main would revert an apply from this checkout; merge the pull request instead\n"
    )
    refused = run("promote", "churn", "--to", "staging", "--apply")
    assert refused.exit_code == 2 and "--apply is refused for staging" in refused.stderr

    # As promote.yml runs it: the GitHub user who dispatched the run is named beside the role's identity.
    for name, value in {"GITHUB_ACTOR": "octo", "GITHUB_SERVER_URL": "https://github.com",
                        "GITHUB_REPOSITORY": "acme/platform", "GITHUB_RUN_ID": "77"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    before = checkout_state(repo)
    out = ok(run("rollback", "churn", "--stage", "staging", "--reason", "latency", "--json"))
    assert checkout_state(repo) == before
    assert (out["version"], out["previous"], out["delivery"]) == (1, 2, "pullRequest")
    assert out["pullRequest"]["branch"] == "mlinfra/rollback-staging-churn-v1"
    call = gh_calls(tmp_path)[-1]
    assert call["args"][call["args"].index("--title") + 1] == "Roll back churn in staging to v1"
    assert "dispatched by @octo in https://github.com/acme/platform/actions/runs/77" in call["body"]
    proposal = ok(run("history", "churn", "--stage", "staging", "--json"))[0]
    assert (proposal["action"], proposal["requestedBy"]) == ("rollback", "octo")
    assert pointer("staging")["version"] == 2, "still deployed: v2"
    rows = agree(run)
    assert rows["staging"]["pending"]["action"] == "rollback"

    merge(tmp_path, "mlinfra/rollback-staging-churn-v1")
    apply_job(run, tmp_path, monkeypatch, "staging", 3, cwd=repo)
    rows = agree(run)
    assert rows["staging"]["pointer"] == 1 and rows["staging"]["pending"] is None
    deploy = ok(run("history", "churn", "--stage", "staging", "--json"))[0]
    assert (deploy["action"], deploy["version"], deploy["previous"]) == ("deploy", 1, 2)


def test_without_gh_the_branch_is_pushed_and_the_way_to_open_the_pull_request_printed(
    repo: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_git = tmp_path / "only-git"
    only_git.mkdir()
    (only_git / "git").symlink_to(git_path())
    monkeypatch.setenv("PATH", str(only_git))
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev", "--json"))
    result = run("promote", "churn", "--to", "staging")
    text = ok(result)
    assert "churn: v1 proposed for staging on branch mlinfra/promote-staging-churn-v1" in text
    assert "gh is not installed: open the pull request from mlinfra/promote-staging-churn-v1" in text
    assert gh_calls(tmp_path) == []
    assert git(tmp_path / "remote.git", "rev-parse", "mlinfra/promote-staging-churn-v1")


def test_compare_url_for_github_remotes() -> None:
    from mlinfra.delivery.pullrequest import compare_url

    expected = "https://github.com/acme/platform/compare/main...mlinfra/x?expand=1"
    assert compare_url("git@github.com:acme/platform.git", "main", "mlinfra/x") == expected
    assert compare_url("https://github.com/acme/platform", "main", "mlinfra/x") == expected
    assert compare_url("/srv/git/platform.git", "main", "mlinfra/x") is None


def test_no_origin_refuses_before_anything_is_written(
    repo: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev", "--json"))
    git(repo, "remote", "remove", "origin")
    result = run("promote", "churn", "--to", "staging")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "has no `origin` remote: this stage is delivered by pull request" in result.stderr
    listed = s3().list_objects_v2(Bucket=bucket("staging")).get("Contents", [])
    assert listed == [], "nothing copied into staging before the refusal"


def test_a_hand_edited_pin_is_not_recorded_as_deployed(
    repo: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev", "--json"))
    path = repo / "stacks" / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("version: 1", "version: 7"))
    result = run("record-deployment", "--stack", "dev")
    assert result.exit_code == 1
    assert "pins churn v7" in result.stderr and "promote it with `mlinfra promote`" in result.stderr
    assert pointer("dev")["deployed"] is None
    result = run("record-deployment", "--stack", "dev", "--run-url", "ci/run/1")
    assert result.exit_code == 2
    assert result.stderr == "error: --run-url 'ci/run/1' is not an http(s) URL (the apply run's page)\n"
    result = run("record-deployment", "--stack", "dev", "--commit", "no-such-ref")
    assert result.exit_code == 2
    assert result.stderr == "error: --commit no-such-ref: no such commit in this repository (fetch it first)\n"


def git_path() -> str:
    import shutil

    found = shutil.which("git")
    assert found is not None
    return found


# --- local mode stays local ----------------------------------------------------------------------------------------


def test_local_mode_works_on_a_scratch_copy_and_proposes_to_a_scratch_remote(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.cli.conftest import snapshot
    from tests.emulator import reset_emulator

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(GH_STANDIN.format(python=os.path.realpath(sys.executable)))
    gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("GH_STANDIN_LOG", str(tmp_path / "gh.log"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    real = snapshot(project_dir / "stacks")
    workspace = project_dir / ".mlinfra" / "local" / "workspace"

    boot = ok(run("local", "bootstrap", "--all"))
    assert "the stack files are a scratch copy in .mlinfra/local/workspace/" in boot
    register(run, tmp_path)
    text = ok(run("promote", "churn", "--to", "dev"))
    assert "pinned in .mlinfra/local/workspace/stacks/Pulumi.dev.yaml" in text
    assert "your own stack files are never changed" in text
    assert "version: 1" in (workspace / "stacks" / "Pulumi.dev.yaml").read_text()

    # staging follows its delivery setting in local mode too: a branch on local mode's own remote, no gh.
    out = ok(run("promote", "churn", "--to", "staging", "--json"))
    assert out["delivery"] == "pullRequest" and out["pullRequest"]["url"] is None
    assert "local mode's scratch remote has no pull requests" in out["pullRequest"]["note"]
    assert gh_calls(tmp_path) == []
    remote = project_dir / ".mlinfra" / "local" / "remote.git"
    assert "version: 1" in git(remote, "show", "mlinfra/promote-staging-churn-v1:stacks/Pulumi.staging.yaml")
    # Accept it as the note says, then record the apply.
    git(workspace, "pull", "--quiet", "--no-edit", "origin", "mlinfra/promote-staging-churn-v1")
    git(workspace, "push", "--quiet", "origin", "HEAD:main")
    recorded = ok(run("record-deployment", "--stack", "staging", "--json"))
    assert recorded["models"][0]["status"] == "deployed"
    assert agree(run)["staging"]["deployed"]["version"] == 1

    # Editing the real stack file reaches the scratch copy, which keeps its pin.
    dev_file = project_dir / "stacks" / "Pulumi.dev.yaml"
    dev_file.write_text(dev_file.read_text().replace("serverlessMemoryMb: 2048", "serverlessMemoryMb: 3072"))
    real = snapshot(project_dir / "stacks")
    shown = ok(run("stack", "show", "dev", "--json"))
    assert "3072" in json.dumps(shown) and '"version": 1' in json.dumps(shown)
    assert snapshot(project_dir / "stacks") == real, "local mode never writes the real stack files"
    assert "digest:" not in (project_dir / "stacks" / "Pulumi.staging.yaml").read_text()

    # The emulator loses its state when it restarts: status says so and what to run.
    reset_emulator(aws_env)
    rows = ok(run("status", "--all", "--json"))
    assert all("the emulator was restarted and lost its state" in " ".join(r["notes"]) for r in rows), [
        r["notes"] for r in rows
    ]
    assert any("`mlinfra local bootstrap --all`" in n for n in rows[0]["notes"])
    ok(run("local", "bootstrap", "--all"))
    assert "digest:" not in (workspace / "stacks" / "Pulumi.dev.yaml").read_text(), "a fresh scratch copy"
    rows = ok(run("status", "--all", "--json"))
    assert all(r["pointer"] is None and r["pinned"] is None for r in rows)
    assert snapshot(project_dir / "stacks") == real


def test_the_commit_leaves_the_checkout_alone_and_takes_the_identity_ci_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlinfra.delivery.pullrequest import Checkout, commit_file
    from mlinfra.git import Git

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "stacks").mkdir()
    (repo / "stacks" / "Pulumi.prod.yaml").write_text("config: {}\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=a@example.com", "-c", "user.name=A", "commit", "--quiet", "-m", "base")
    (repo / "stacks" / "Pulumi.prod.yaml").write_text("config: {}\n# work in progress\n")
    before = checkout_state(repo)
    monkeypatch.setenv("HOME", str(tmp_path))  # no global git identity
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "github-actions[bot]")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "bot@users.noreply.github.com")
    parent = git(repo, "rev-parse", "HEAD")
    commit = commit_file(
        Checkout(Git(repo), repo, "stacks/Pulumi.prod.yaml"), parent, "stacks/Pulumi.prod.yaml", b"pinned\n", "Pin"
    )
    assert checkout_state(repo) == before, "HEAD, index and working tree untouched"
    assert git(repo, "show", f"{commit}:stacks/Pulumi.prod.yaml") == "pinned"
    assert git(repo, "log", "-1", "--format=%an <%ae> / %cn", commit) == (
        "github-actions[bot] <bot@users.noreply.github.com> / mlinfra"
    )
    assert git(repo, "rev-parse", f"{commit}^") == parent
