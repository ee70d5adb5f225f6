"""`mlinfra versions | show | diff` and `register --git-sha auto`, against the AWS emulator over HTTP."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

Run = Callable[..., Result]
IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
IMAGE_2 = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"


def ok(result: Result) -> Any:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    return json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else result.stdout


def model_dir(root: Path, weights: str) -> Path:
    model = root / f"model-{weights}"
    model.mkdir(parents=True)
    (model / "model.bin").write_text(weights)
    (model / "inference.py").write_text("def model_fn(d):\n    return d\n")
    return model


def register(run: Run, root: Path, weights: str, image: str, metrics: dict[str, float], *extra: str) -> Any:
    path = root / f"metrics-{weights}.json"
    path.write_text(json.dumps(metrics))
    args = ["register", str(model_dir(root, weights)), "-m", "churn", "--image", image, "--metrics", str(path)]
    return ok(run(*args, "--git-sha", "c0ffee", "--json", *extra))


@pytest.fixture
def two_versions(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> Path:
    """v1 (with a baseline) promoted to dev and approved for staging; v2 registered after it."""
    ok(run("local", "bootstrap", "--all", "--json"))
    baseline = tmp_path / "baseline.csv"
    baseline.write_text("tenure,plan\n1,basic\n5,pro\n9,basic\n")
    register(run, tmp_path, "w1", IMAGE, {"auc": 0.9, "f1": 0.7}, "--baseline", str(baseline))
    ok(run("promote", "churn", "--to", "dev", "--reason", "first", "--json"))
    ok(run("approve", "churn", "--version", "1", "--stage", "staging", "--reason", "reviewed"))
    register(run, tmp_path, "w2", IMAGE_2, {"auc": 0.93, "recall": 0.5})
    return tmp_path


def test_versions_lists_newest_first_with_where_each_runs(two_versions: Path, run: Run) -> None:
    rows = ok(run("versions", "churn", "--json"))
    assert [r["version"] for r in rows] == [2, 1]
    v2, v1 = rows
    for row in rows:
        assert {"version", "digest", "metrics", "image", "registered", "stages"} <= set(row)
        assert row["digest"].startswith("sha256:") and row["registered"].endswith("Z")
        assert row["gitSha"] == "c0ffee" and row["registeredBy"].startswith("arn:aws:")
    assert (v1["stages"], v1["runningIn"], v1["pinnedIn"]) == (["sandbox", "dev"], ["dev"], ["dev"])
    assert v1["approval"] == {"sandbox": "PendingManualApproval", "dev": "Approved"}
    assert (v2["stages"], v2["runningIn"], v2["pinnedIn"]) == (["sandbox"], ["sandbox"], [])
    assert v1["liveIn"] == v2["liveIn"] == []  # the emulator runs no endpoints
    assert (v1["image"], v2["image"], v2["metrics"]) == (IMAGE, IMAGE_2, {"auc": 0.93, "recall": 0.5})
    only_dev = ok(run("versions", "churn", "--stage", "dev", "--json"))
    assert [r["version"] for r in only_dev] == [1]
    table = ok(run("versions", "churn"))
    assert "v2" in table and "auc=0.93" in table and "dev:approved" in table


def test_show_one_version_with_its_lineage(two_versions: Path, run: Run) -> None:
    data = ok(run("show", "churn", "--version", "1", "--json"))
    assert (data["version"], data["registeredIn"], data["metrics"]) == (1, "sandbox", {"auc": 0.9, "f1": 0.7})
    assert [(s["stage"], s["running"], s["pinned"], s["from"]) for s in data["stages"]] == [
        ("sandbox", False, False, None),
        ("dev", True, True, "sandbox"),
    ]
    assert [(step["action"], step["stage"]) for step in data["lineage"]] == [
        ("register", "sandbox"),
        ("promote", "dev"),
        ("approve", "staging"),
    ]
    assert data["baseline"] == {"rows": 3, "source": "baseline.csv", "features": ["plan", "tenure"], "outputs": None}
    assert data["card"] is None
    text = ok(run("show", "churn", "-v", "1"))
    assert "promote dev from sandbox" in text and "3 rows: plan, tenure" in text
    missing = run("show", "churn", "--version", "9")
    assert (missing.exit_code, missing.stderr) == (2, "error: churn v9 is in no stage's registry (versions: v1, v2)\n")


def test_diff_two_versions_side_by_side(two_versions: Path, run: Run) -> None:
    data = ok(run("diff", "churn", "1", "2", "--json"))
    fields = {f["field"]: f for f in data["fields"]}
    assert fields["image"] == {"field": "image", "a": IMAGE, "b": IMAGE_2, "changed": True}
    assert fields["digest"]["changed"] and not fields["gitSha"]["changed"]
    metrics = {m["metric"]: m for m in data["metrics"]}
    assert metrics["auc"]["delta"] == pytest.approx(0.03)
    assert (metrics["f1"]["b"], metrics["recall"]["a"], metrics["recall"]["delta"]) == (None, None, None)
    assert {f["file"]: f["change"] for f in data["files"]} == {"inference.py": "same", "model.bin": "changed"}
    assert data["baseline"]["a"]["features"] == ["plan", "tenure"] and data["baseline"]["b"] is None
    assert {(r["feature"], r["stat"]) for r in data["baseline"]["features"]} >= {("tenure", "mean"), ("plan", "type")}
    text = ok(run("diff", "churn", "1", "2"))
    assert "model.bin" in text and "changed" in text and "+0.03" in text


def test_live_is_what_the_stages_endpoint_serves(two_versions: Path, run: Run) -> None:
    """An endpoint whose model carries MLINFRA_VERSION=1, created in the emulator as ModelEndpoint declares it."""
    import boto3

    from mlinfra_infra import naming

    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    role = "arn:aws:iam::123456789012:role/endpoint"
    container = {"Image": IMAGE, "Environment": {"MLINFRA_MODEL": "churn", "MLINFRA_VERSION": "1"}}
    sagemaker.create_model(ModelName="churn-dev-model", ExecutionRoleArn=role, PrimaryContainer=container)
    variant = {"VariantName": "primary", "ModelName": "churn-dev-model", "InstanceType": "ml.m5.large"}
    sagemaker.create_endpoint_config(
        EndpointConfigName="churn-dev-config", ProductionVariants=[{**variant, "InitialInstanceCount": 1}]
    )
    sagemaker.create_endpoint(
        EndpointName=naming.endpoint("mlinfra", "dev", "churn"), EndpointConfigName="churn-dev-config"
    )
    rows = {row["version"]: row for row in ok(run("versions", "churn", "--json"))}
    assert (rows[1]["liveIn"], rows[2]["liveIn"]) == (["dev"], [])
    stages = {s["stage"]: s for s in ok(run("show", "churn", "--version", "1", "--json"))["stages"]}
    assert (stages["dev"]["live"], stages["sandbox"]["live"]) == (True, False)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_git_sha_auto_reads_the_model_directorys_own_repository(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path
) -> None:
    ok(run("local", "bootstrap", "--stack", "sandbox", "--json"))
    repo = tmp_path / "analyst-repo"
    model = model_dir(repo, "w1")
    git(repo, "init", "-q")
    git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "add", ".")
    git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "model")
    head = git(repo, "rev-parse", "HEAD")
    result = run("register", str(model), "-m", "churn", "--image", IMAGE, "--json")
    ok(result)
    assert ok(run("show", "churn", "-v", "1", "--json"))["gitSha"] == head
    outside = model_dir(tmp_path / "plain", "w2")
    result = run("register", str(outside), "-m", "churn", "--image", IMAGE, "--json")
    ok(result)
    assert result.stderr == (
        f"note: {outside} is not in a git repository (or one without commits): no git commit recorded; "
        "pass --git-sha SHA to record one\n"
    )
    assert ok(run("show", "churn", "-v", "2", "--json"))["gitSha"] is None
