"""`mlinfra serve --version/--stage` against the AWS emulator: verified download, safe unpack, capture into S3."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import Result

from mlinfra_infra import layout, naming
from tests.cli.serveutil import start_serve, train
from tests.emulator import stop_process

Run = Callable[..., Result]
ACCOUNT = "123456789012"


def bucket(stage: str) -> str:
    return naming.registry_bucket("mlinfra", stage, "eu-west-1", ACCOUNT)


def ok(result: Result) -> Any:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    return json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else result.stdout


@pytest.fixture
def registered(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> dict[str, Any]:
    """The shipped stacks bootstrapped in a fresh emulator, and a real scikit-learn model registered as v1."""
    ok(run("local", "bootstrap", "--all", "--json"))
    model = train(tmp_path / "src" / "model")
    return ok(
        run(
            "register", str(model), "--model", "churn", "--framework", "sklearn",
            "--git-sha", "abc", "--json",
        )
    )  # fmt: skip


def test_serve_a_version_with_capture_into_the_stage_registry(
    registered: dict[str, Any], project_dir: Path, tmp_path: Path
) -> None:
    server = start_serve(["serve", "churn", "--version", "1", "--capture-stage", "sandbox"], tmp_path / "log")
    try:
        status, _, body = server.invoke(b"1,1,1\n-1,-1,-1", content_type="text/csv")
        assert (status, json.loads(body)) == (200, [1, 0])
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0, server.output()
    finally:
        stop_process(server.process)
    output = server.output()
    assert "serving churn v1 (sha256:" in output and "from sandbox's registry" in output
    # The sandbox stage declares no endpoint capture; serve says so and captures anyway.
    assert "warning: sandbox's endpoint for churn does not capture" in output
    endpoint = naming.endpoint("mlinfra", "sandbox", "churn")
    assert f"capture  s3://{bucket('sandbox')}/capture/churn/{endpoint}/primary/" in output
    # Unpacked once into the checkout's cache, under its digest.
    digest = registered["digest"].removeprefix("sha256:")
    assert (project_dir / ".mlinfra" / "serve" / "churn" / digest / "model.joblib").is_file()
    s3 = boto3.client("s3", region_name="eu-west-1")
    prefix = f"{layout.capture_prefix('churn')}/{endpoint}/primary/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket("sandbox"), Prefix=prefix).get("Contents", [])]
    assert len(keys) == 1, keys
    partition = keys[0][len(prefix) :].split("/")
    assert [len(p) for p in partition[:4]] == [4, 2, 2, 2] and partition[4].endswith(".jsonl")
    (record,) = [
        json.loads(line) for line in s3.get_object(Bucket=bucket("sandbox"), Key=keys[0])["Body"].read().splitlines()
    ]
    assert record["captureData"]["endpointInput"]["data"] == "1,1,1\n-1,-1,-1"
    assert record["captureData"]["endpointOutput"]["data"] == "[1, 0]"


def test_serve_a_stage_serves_its_pointer(registered: dict[str, Any], run: Run, tmp_path: Path) -> None:
    ok(run("promote", "churn", "--to", "dev", "--reason", "test", "--json"))
    server = start_serve(["serve", "churn", "--stage", "dev"], tmp_path / "log")  # the older spelling
    try:
        status, _, body = server.invoke(b"[[2, 2, 0]]", content_type="application/json")
        assert (status, json.loads(body)) == (200, [1])
    finally:
        stop_process(server.process)
    assert "serving churn v1 (" in server.output() and "from dev's pointer" in server.output()


def test_a_version_from_a_given_stages_registry(registered: dict[str, Any], run: Run, tmp_path: Path) -> None:
    ok(run("promote", "churn", "--to", "dev", "--reason", "test", "--json"))
    server = start_serve(["serve", "churn", "--version", "1", "--stack", "dev"], tmp_path / "log")
    try:
        assert server.invoke(b"[[2, 2, 0]]", content_type="application/json")[0] == 200
    finally:
        stop_process(server.process)
    assert "serving churn v1 (" in server.output() and "from dev's registry" in server.output()
    result = run("serve", "churn", "--version", "1", "--stack", "staging")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: churn v1 is not in staging's registry (versions there: none yet)\n",
    )


def test_a_tampered_artifact_is_refused_and_nothing_is_kept(
    registered: dict[str, Any], project_dir: Path, run: Run
) -> None:
    key = layout.artifact_key("churn", registered["digest"])
    boto3.client("s3", region_name="eu-west-1").put_object(Bucket=bucket("sandbox"), Key=key, Body=b"not the model")
    result = run("serve", "churn", "--version", "1")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: digest mismatch: s3://{bucket('sandbox')}/{key} is sha256:")
    assert not list((project_dir / ".mlinfra" / "serve" / "churn").iterdir())


def test_unknown_version_and_stage_without_a_version(registered: dict[str, Any], run: Run) -> None:
    result = run("serve", "churn", "--version", "7")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: churn v7 is not in sandbox's registry (versions there: v1)\n",
    )
    result = run("serve", "churn", "--stage", "staging")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: no version of churn runs in staging yet; serve one with --version N\n",
    )


def test_capture_stage_is_refused_outside_local_mode(
    project_dir: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLINFRA_LOCAL", raising=False)
    model = train(tmp_path / "model")
    result = run("serve", "churn", "--path", str(model), "--capture-stage", "dev")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --capture-stage writes into a stage registry's capture prefix and is for")
