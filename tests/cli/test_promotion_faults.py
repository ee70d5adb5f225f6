"""Promotion under faults and races, against the emulator: injected AWS failures, retries, concurrent promoters.

Faults are injected with botocore's own event hooks on the sessions mlinfra creates (`mlinfra.aws.SESSION_HOOKS`):
`after-call` raises once the emulator has applied a call (the worst case: the change landed, the client saw an
error), `before-send` answers with throttling or 5xx responses that botocore's standard retry mode must absorb.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ConnectionClosedError
from click.testing import Result

from mlinfra import aws as mlinfra_aws
from mlinfra.stacks.edit import read_pin
from mlinfra.stacks.project import Project
from mlinfra_infra import layout
from tests.cli.test_promotion import bucket, ok, read_json, register

Run = Callable[..., Result]


@pytest.fixture
def two_versions(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> Path:
    """Bootstrapped stacks, churn v1 and v2 registered, v1 promoted to dev."""
    ok(run("local", "bootstrap", "--all", "--json"))
    register(run, tmp_path, "weights-1")
    register(run, tmp_path, "weights-2")
    ok(run("promote", "churn", "--to", "dev", "--version", "1", "--reason", "start"))
    return project_dir


class Fault:
    """Raise once, after the `at`-th AWS call has been applied by the emulator."""

    KINDS = ("dropped-connection", "internal-error", "throttling")

    def __init__(self, at: int, kind: str) -> None:
        self.at = at
        self.kind = kind
        self.calls = 0
        self.fired: str | None = None

    def install(self, session: Any) -> None:
        session.events.register("after-call", self.after_call)

    def after_call(self, model: Any, **_: Any) -> None:
        self.calls += 1
        if self.calls != self.at:
            return
        self.fired = model.name
        if self.kind == "dropped-connection":
            raise ConnectionClosedError(endpoint_url="http://emulator")
        code = "InternalError" if self.kind == "internal-error" else "Throttling"
        raise ClientError({"Error": {"Code": code, "Message": "injected"}}, model.name)


@pytest.fixture
def hooks() -> Iterator[list[Any]]:
    saved = list(mlinfra_aws.SESSION_HOOKS)
    yield mlinfra_aws.SESSION_HOOKS
    mlinfra_aws.SESSION_HOOKS[:] = saved


def make_cold(digest: str) -> None:
    """Remove dev's copy of v2 (artifact, version record and files) so the next promotion copies and records again.

    Its model package stays (the emulator cannot delete one); the package step is faulted in its own test.
    """
    s3 = boto3.client("s3", region_name="eu-west-1")
    for prefix in (
        layout.artifact_key("churn", digest),
        layout.version_key("churn", 2),
        layout.version_prefix("churn", 2),
    ):
        for item in s3.list_objects_v2(Bucket=bucket("dev"), Prefix=prefix).get("Contents", []):
            s3.delete_object(Bucket=bucket("dev"), Key=item["Key"])


def assert_consistent(root: Path, run: Run) -> dict[str, Any]:
    """Pointer, stack file pin, audit trail and registry of dev agree."""
    pointer = read_json("dev", layout.stage_key("churn"))
    pin = read_pin(Project(root), "dev", "churn")
    assert pin is not None and pin["version"] == pointer["version"], f"pin {pin} vs pointer v{pointer['version']}"
    assert pin["digest"] == pointer["digest"]
    moves = [h for h in ok(run("history", "churn", "--stage", "dev", "--json")) if h["action"] != "approve"]
    assert moves[0]["version"] == pointer["version"], "the newest audit record is the pointer's last move"
    record = read_json("dev", layout.version_key("churn", pointer["version"]))
    assert record["digest"] == pointer["digest"]
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.head_object(Bucket=bucket("dev"), Key=layout.artifact_key("churn", pointer["digest"]))
    return pointer


def test_a_fault_after_any_call_leaves_agreement_and_a_rerun_converges(
    two_versions: Path, run: Run, hooks: list[Any]
) -> None:
    promote = ("promote", "churn", "--to", "dev", "--version", "2", "--reason", "faulty")
    rollback = ("rollback", "churn", "--stage", "dev", "--to", "1", "--reason", "reset")
    digest_of_v2 = read_json("sandbox", layout.version_key("churn", 2))["digest"]
    outcomes = []
    at = 0
    while True:
        # Every run meets a cold target (no copy of v2 in dev, no package, no version record), so every call of the
        # full path gets its turn; the loop ends when a promotion makes fewer calls than the fault waits for.
        make_cold(digest_of_v2)
        at += 1
        fault = Fault(at, Fault.KINDS[at % len(Fault.KINDS)])
        hooks.append(fault.install)
        try:
            result = run(*promote)
        finally:
            hooks.remove(fault.install)
        if fault.fired is None:
            assert result.exit_code == 0, result.stderr
            break
        if result.exit_code != 0:
            assert result.exit_code == 1, result.stderr
            assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
            assert "Traceback" not in result.output
        outcomes.append((at, fault.fired, result.exit_code))
        assert_consistent(two_versions, run)
        # Re-running converges to the state of a clean promotion.
        ok(run(*promote))
        pointer = assert_consistent(two_versions, run)
        assert pointer["version"] == 2
        assert pointer["record"]["reason"] == "faulty"
        ok(run(*rollback))
    assert len(outcomes) >= 15, f"faults were injected after {len(outcomes)} calls: {outcomes}"
    faulted = {name for _, name, _ in outcomes}
    assert {"CopyObject", "PutObject", "GetObjectAttributes", "ListModelPackages"} <= faulted, faulted
    assert [o for o in outcomes if o[2] == 1], "some injected faults must surface as failures"


@pytest.mark.parametrize("kind", Fault.KINDS)
def test_fault_after_creating_the_target_package_converges_to_one_package(
    two_versions: Path, run: Run, hooks: list[Any], kind: str
) -> None:
    class AfterPackage(Fault):
        def after_call(self, model: Any, **_: Any) -> None:
            if model.name == "CreateModelPackage" and self.fired is None:
                self.at = self.calls + 1  # fire on this call
                super().after_call(model=model)

    fault = AfterPackage(0, kind)
    hooks.append(fault.install)
    result = run("promote", "churn", "--to", "dev", "--version", "2", "--reason", "pkg")
    hooks.remove(fault.install)
    assert fault.fired == "CreateModelPackage"
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    pointer = assert_consistent(two_versions, run)
    assert pointer["version"] == 1, "nothing was committed"
    ok(run("promote", "churn", "--to", "dev", "--version", "2", "--reason", "pkg"))
    assert assert_consistent(two_versions, run)["version"] == 2
    digest = read_json("dev", layout.version_key("churn", 2))["digest"]
    packages = boto3.client("sagemaker", region_name="eu-west-1").list_model_packages(
        ModelPackageGroupName="mlinfra-dev-churn"
    )["ModelPackageSummaryList"]
    assert len([p for p in packages if digest in p.get("ModelPackageDescription", "")]) == 1


def test_pointer_write_that_landed_before_the_connection_dropped_counts(
    two_versions: Path, run: Run, hooks: list[Any]
) -> None:
    class DropPointerWrite(Fault):
        def after_call(self, model: Any, http_response: Any = None, **_: Any) -> None:
            is_pointer = "/stages/" in str(getattr(http_response, "url", ""))
            if model.name == "PutObject" and is_pointer and self.fired is None:
                self.fired = model.name
                raise ConnectionClosedError(endpoint_url="http://emulator")

    fault = DropPointerWrite(0, "dropped-connection")
    hooks.append(fault.install)
    result = run("promote", "churn", "--to", "dev", "--version", "2", "--reason", "dropped", "--json")
    hooks.remove(fault.install)
    assert fault.fired == "PutObject"
    assert result.exit_code == 0, result.stderr  # the pointer names our operation: the write counted
    assert json.loads(result.stdout)["version"] == 2
    assert assert_consistent(two_versions, run)["version"] == 2


def test_throttling_and_5xx_are_retried(two_versions: Path, run: Run, hooks: list[Any]) -> None:
    attempts: list[int] = []

    def install(session: Any) -> None:
        def before_send(request: Any, **_: Any) -> AWSResponse | None:
            if request.method == "PUT" and "/stages/" in request.url and len(attempts) < 2:
                attempts.append(1)
                status = 503 if not attempts[1:] else 500
                body = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
                return AWSResponse(request.url, status, {}, _Raw(body))
            return None

        session.events.register("before-send.s3", before_send)

    hooks.append(install)
    result = run("promote", "churn", "--to", "dev", "--version", "2", "--reason", "retried", "--json")
    hooks.remove(install)
    assert len(attempts) == 2, "two failed attempts were injected"
    assert result.exit_code == 0, result.stderr
    assert assert_consistent(two_versions, run)["version"] == 2


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body

    def read(self, *_: Any) -> bytes:
        return self.body


def test_eight_concurrent_promoters_one_winner_per_move(two_versions: Path, aws_env: str, run: Run) -> None:
    env = {**os.environ, "MLINFRA_LOCAL": "1"}
    mlinfra = str(Path(sys.executable).parent / "mlinfra")

    def racer(i: int) -> subprocess.Popen[str]:
        args = ["promote", "churn", "--to", "dev", "--version", str(1 + i % 2), "--reason", f"racer-{i}", "--json"]
        return subprocess.Popen(
            [mlinfra, *args], cwd=two_versions, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    processes = [racer(i) for i in range(8)]
    results = [(i, *p.communicate(timeout=300), p.returncode) for i, p in enumerate(processes)]
    winners = [i for i, _, _, code in results if code == 0]
    losers = [(i, err) for i, _, err, code in results if code != 0]
    assert winners, f"someone wins: {results}"
    for i, err in losers:
        code = results[i][3]
        assert err.count("\n") == 1, err
        if code == 2:
            # It read the pointer after another racer had moved it to the version it wanted: nothing to do.
            assert f"already runs v{1 + i % 2} in dev" in err and "nothing recorded" in err, err
            continue
        assert code == 1, f"racer-{i} exited {code}: {err}"
        assert "conflict" in err and "run the command again" in err, err
    pointer = read_json("dev", layout.stage_key("churn"))
    pin = read_pin(Project(two_versions), "dev", "churn")
    assert pin is not None and pin["version"] == pointer["version"]
    reasons = {h["reason"] for h in ok(run("history", "churn", "--stage", "dev", "--json"))}
    for i in winners:
        assert f"racer-{i}" in reasons, f"winner racer-{i} has its audit record"
    for i, _ in losers:
        assert f"racer-{i}" not in reasons, f"loser racer-{i} left no audit record"
    assert pointer["record"]["reason"] in {f"racer-{i}" for i in winners}


def test_a_denied_check_of_the_source_artifact_names_the_identity_and_writes_nothing(
    two_versions: Path, run: Run, hooks: list[Any]
) -> None:
    """promote checks the source's artifact with the target stage's own identity (a HEAD, as the copy reads it):
    S3's 403 (a role the source's readerRoleArns does not list, or a missing key without s3:ListBucket) is one line
    naming both causes, before anything is written in the target."""
    heads: list[str] = []

    def install(session: Any) -> None:
        def before_send(request: Any, **_: Any) -> AWSResponse | None:
            if request.method == "HEAD" and "/sha256/" in request.url:
                heads.append(request.url)
                return AWSResponse(request.url, 403, {}, _Raw(b""))
            return None

        session.events.register("before-send.s3", before_send)

    hooks.append(install)
    result = run("promote", "churn", "--to", "staging", "--version", "1")
    hooks.remove(install)
    assert heads and all(f"{bucket('dev')}" in url for url in heads), heads
    assert result.exit_code == 1, result.stderr
    assert "access denied to staging's identity" in result.stderr
    assert "dev's `mlinfra:registry.readerRoleArns` does not list it, or the artifact is missing" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=bucket("staging"))
