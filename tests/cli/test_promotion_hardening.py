"""Registry hardening (issue 10): pins under the stage lock, refusals that write nothing, honest diagnoses.

Each test reproduces one defect found by attacking the registry: a slow client overlapping a second promotion of
another version, rollback into the entry stage, non-UTF-8 files, checks that came after the upload, identical bytes
with new inputs, a tampered artifact without a checksum, promoting what a stage already runs, duplicate model
packages from a retried request, and misleading messages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from click.testing import Result

from mlinfra import aws as mlinfra_aws
from mlinfra.registry.integrity import checksum_of
from mlinfra.stacks.edit import read_pin
from mlinfra.stacks.project import Project
from mlinfra_infra import layout
from tests.cli.conftest import snapshot
from tests.cli.test_promotion import IMAGE, bucket, make_model, ok, read_json, register, s3

Run = Callable[..., Result]


@pytest.fixture
def hooks() -> Iterator[list[Any]]:
    saved = list(mlinfra_aws.SESSION_HOOKS)
    yield mlinfra_aws.SESSION_HOOKS
    mlinfra_aws.SESSION_HOOKS[:] = saved


@pytest.fixture
def three_versions(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> Path:
    """Bootstrapped stacks, churn v1..v3 registered, v1 promoted to dev."""
    ok(run("local", "bootstrap", "--all", "--json"))
    for n in (1, 2, 3):
        register(run, tmp_path, f"weights-{n}")
    ok(run("promote", "churn", "--to", "dev", "--version", "1", "--reason", "start"))
    return project_dir


def other_client(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `mlinfra ARGS` as a separate process (another user's promotion), to completion."""
    env = {**os.environ, "MLINFRA_LOCAL": "1"}
    mlinfra = str(Path(sys.executable).parent / "mlinfra")
    return subprocess.run([mlinfra, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)


class SlowClient:
    """Stalls this process right after it has read `model`'s stage pointer, while another client promotes."""

    def __init__(self, root: Path, *other: str, stage: str = "dev") -> None:
        self.root = root
        self.other = other
        self.bucket = bucket(stage)
        self.done: subprocess.CompletedProcess[str] | None = None

    def install(self, session: Any) -> None:
        session.events.register("after-call.s3.GetObject", self.after_call)

    def after_call(self, http_response: Any = None, **_: Any) -> None:
        url = str(getattr(http_response, "url", ""))
        if self.done is None and self.bucket in url and "/stages/" in url:
            self.done = other_client(self.root, *self.other)  # the second promotion commits meanwhile


def assert_pin_is_pointer(root: Path, stage: str = "dev") -> int:
    pointer = read_json(stage, layout.stage_key("churn"))
    pin = read_pin(Project(root), stage, "churn")
    assert pin is not None and (pin["version"], pin["digest"]) == (pointer["version"], pointer["digest"]), (
        f"pin {pin} vs pointer v{pointer['version']}"
    )
    return int(pointer["version"])


# --- 1. a re-run of a finished promotion pins what the pointer holds --------------------------------------------


def test_rerun_of_a_finished_promotion_overlapped_by_another_promotion_pins_the_pointer(
    three_versions: Path, run: Run, hooks: list[Any]
) -> None:
    ok(run("promote", "churn", "--to", "dev", "--version", "2", "--reason", "second"))
    slow = SlowClient(three_versions, "promote", "churn", "--to", "dev", "--version", "3", "--reason", "fast")
    hooks.append(slow.install)
    result = run("promote", "churn", "--to", "dev", "--version", "2", "--reason", "second")
    assert slow.done is not None and slow.done.returncode == 0, slow.done and slow.done.stderr
    assert assert_pin_is_pointer(three_versions) == 3, "the faster promotion of v3 is what dev runs"
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: conflict: churn in dev was moved to v3 by ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "slow_args",
    [
        ("promote", "churn", "--to", "dev", "--version", "3", "--reason", "slow"),
        ("rollback", "churn", "--stage", "dev", "--to", "1", "--reason", "slow"),
    ],
    ids=["promote", "rollback"],
)
def test_slow_client_overlapped_by_a_promotion_of_another_version_loses_cleanly(
    three_versions: Path, run: Run, hooks: list[Any], slow_args: tuple[str, ...]
) -> None:
    if slow_args[0] == "rollback":
        ok(run("promote", "churn", "--to", "dev", "--version", "3", "--reason", "before"))
    slow = SlowClient(three_versions, "promote", "churn", "--to", "dev", "--version", "2", "--reason", "fast")
    hooks.append(slow.install)
    result = run(*slow_args)
    assert slow.done is not None and slow.done.returncode == 0, slow.done and slow.done.stderr
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: conflict: churn in dev was moved to v2 by ")
    assert assert_pin_is_pointer(three_versions) == 2
    reasons = [h["reason"] for h in ok(run("history", "churn", "--stage", "dev", "--json"))]
    assert reasons[0] == "fast" and "slow" not in reasons


# --- 2. rollback into the entry stage -----------------------------------------------------------------------------


def test_rollback_in_the_entry_stage_is_refused_and_pins_nothing(three_versions: Path, run: Run) -> None:
    before = snapshot(three_versions)
    result = run("rollback", "churn", "--stage", "sandbox", "--to", "1", "--reason", "x")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "error: sandbox is the entry stage: it runs no endpoint and pins no version, so there is nothing to roll "
        "back; promote the version you want into the next stage instead (`mlinfra promote churn --to dev "
        "--version 1`)\n"
    )
    assert snapshot(three_versions) == before
    assert read_pin(Project(three_versions), "sandbox", "churn") is None


# --- 3. files that are not UTF-8 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "command"),
    [
        ("stacks/Pulumi.dev.yaml", ("stack", "show", "dev")),
        ("Pulumi.yaml", ("stack", "list")),
        (".mlinfra/selected-stack", ("stack", "show")),
    ],
)
def test_a_file_that_is_not_utf8_is_bad_input_naming_the_file(
    project_dir: Path, run: Run, file: str, command: tuple[str, ...]
) -> None:
    path = project_dir / file
    path.parent.mkdir(exist_ok=True)
    prefix = path.read_bytes() if path.exists() else b""
    path.write_bytes(prefix + b"\n# caf\xe9\n")
    result = run(*command)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {file}: not UTF-8 text (byte "), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


# --- 4. every check that can precede the upload precedes it ------------------------------------------------------


class Writes:
    """Counts the S3 requests that would store artifact bytes."""

    NAMES = ("PutObject", "CreateMultipartUpload", "UploadPart", "CopyObject")

    def __init__(self) -> None:
        self.calls: list[str] = []

    def install(self, session: Any) -> None:
        session.events.register("before-call.s3", self.before_call)

    def before_call(self, model: Any, **_: Any) -> None:
        if model.name in self.NAMES:
            self.calls.append(model.name)


def all_versions(stage: str) -> list[str]:
    listed = s3().list_object_versions(Bucket=bucket(stage))
    return [v["Key"] for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])]


def test_unknown_framework_version_is_refused_before_any_upload(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path, hooks: list[Any]
) -> None:
    ok(run("local", "bootstrap", "--stack", "sandbox", "--json"))
    writes = Writes()
    hooks.append(writes.install)
    args = ("register", str(make_model(tmp_path)), "-m", "churn", "--framework", "sklearn")
    result = run(*args, "--framework-version", "0.0-0")
    assert result.exit_code == 2, result.output
    assert writes.calls == []
    assert all_versions("sandbox") == [], "nothing left behind, noncurrent versions included"


def test_missing_package_group_is_refused_before_any_upload(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path, hooks: list[Any]
) -> None:
    ok(run("local", "bootstrap", "--stack", "sandbox", "--json"))
    # A model declared after the stack was deployed: its package group does not exist yet.
    stack = project_dir / "stacks" / "Pulumi.sandbox.yaml"
    stack.write_text(stack.read_text() + "    fraud: {}\n")
    writes = Writes()
    hooks.append(writes.install)
    result = run("register", str(make_model(tmp_path)), "-m", "fraud", "--image", IMAGE)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: model package group mlinfra-sandbox-fraud does not exist in sandbox")
    assert writes.calls == []
    assert all_versions("sandbox") == []


def test_promotion_into_a_stage_without_the_package_group_copies_nothing(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path
) -> None:
    sandbox = project_dir / "stacks" / "Pulumi.sandbox.yaml"
    sandbox.write_text(sandbox.read_text() + "    fraud: {}\n")
    ok(run("local", "bootstrap", "--all", "--json"))
    ok(run("register", str(make_model(tmp_path)), "-m", "fraud", "--image", IMAGE))
    dev = project_dir / "stacks" / "Pulumi.dev.yaml"
    dev.write_text(dev.read_text().replace("    churn: {}", "    churn: {}\n    fraud: {}"))
    assert "fraud: {}" in dev.read_text()
    result = run("promote", "fraud", "--to", "dev")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: model package group mlinfra-dev-fraud does not exist in dev")
    assert all_versions("dev") == []


def test_a_successful_register_leaves_no_upload_version_behind(three_versions: Path, run: Run, tmp_path: Path) -> None:
    assert not [k for k in all_versions("sandbox") if k.startswith(layout.UPLOADS_PREFIX)]
    assert not list((three_versions / ".mlinfra").rglob("artifact-*")), "no staged artifact is left on disk"


def test_without_permission_to_delete_versions_the_upload_is_hidden_and_register_succeeds(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path, hooks: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A role without s3:DeleteObjectVersion on uploads/: the upload is deleted (a delete marker hides it) and the
    # bucket's uploads/ lifecycle rule expires the noncurrent version; the registration itself succeeds.
    # (The multipart path: an artifact over 5 GiB, or no disk room to keep the hashed bytes.)
    from botocore.exceptions import ClientError

    from mlinfra.registry import staging

    monkeypatch.setattr(staging, "_fits", lambda _folder, _size: False)
    ok(run("local", "bootstrap", "--stack", "sandbox", "--json"))
    refused: list[str] = []

    def install(session: Any) -> None:
        def before_build(model: Any, params: dict[str, Any], **_: Any) -> None:
            if params.get("VersionId"):
                refused.append(params["Key"])
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "injected"}}, model.name)

        session.events.register("before-parameter-build.s3.DeleteObject", before_build)

    hooks.append(install)
    out = ok(run("register", str(make_model(tmp_path)), "-m", "churn", "--image", IMAGE, "--json"))
    assert out["version"] == 1
    assert refused and refused[0].startswith(layout.UPLOADS_PREFIX)
    current = [o["Key"] for o in s3().list_objects_v2(Bucket=bucket("sandbox")).get("Contents", [])]
    assert not [k for k in current if k.startswith(layout.UPLOADS_PREFIX)], "no current object under uploads/"


# --- 5. identical bytes, new inputs -------------------------------------------------------------------------------


def test_identical_bytes_and_inputs_upload_nothing_and_write_nothing(
    three_versions: Path, run: Run, tmp_path: Path, hooks: list[Any]
) -> None:
    before = all_versions("sandbox")
    writes = Writes()
    hooks.append(writes.install)
    metrics = tmp_path / "metrics.json"
    model = make_model(tmp_path / "src-weights-2", "weights-2")
    result = run(
        "register", str(model), "-m", "churn", "--image", IMAGE, "--metrics", str(metrics), "--git-sha", "abc123"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("churn already registered as v2 ")
    assert writes.calls == [], "hashed first: identical bytes are not uploaded again"
    assert all_versions("sandbox") == before


def test_identical_bytes_with_new_metrics_and_baseline_attach_them_audited(
    three_versions: Path, run: Run, tmp_path: Path, hooks: list[Any]
) -> None:
    model = make_model(tmp_path / "src-weights-2", "weights-2")
    metrics = tmp_path / "new-metrics.json"
    metrics.write_text(json.dumps({"auc": 0.95}))
    baseline = tmp_path / "baseline.csv"
    baseline.write_text("tenure,plan\n3,basic\n5,pro\n")
    writes = Writes()
    hooks.append(writes.install)
    result = run(
        "register", str(model), "-m", "churn", "--image", IMAGE, "--metrics", str(metrics), "--baseline", str(baseline)
    )
    assert result.exit_code == 0, result.output
    assert "UploadPart" not in writes.calls and "CreateMultipartUpload" not in writes.calls
    assert result.stdout.startswith("churn already registered as v2; attached metrics, baseline")
    record = read_json("sandbox", layout.version_key("churn", 2))
    assert record["metrics"] == {"auc": 0.95}
    assert record["baseline"] == f"{layout.version_prefix('churn', 2)}baseline.json"
    assert read_json("sandbox", record["baseline"])["rows"] == 2
    attach = ok(run("history", "churn", "--stage", "sandbox", "--json"))[0]
    assert (attach["action"], attach["version"]) == ("attach", 2)
    assert attach["changes"]["metrics"] == {"old": {"auc": 0.91, "f1": 0.8}, "new": {"auc": 0.95}}
    assert attach["changes"]["baseline"]["old"] is None
    assert attach["actor"].startswith("arn:aws:")
    # The entry pointer is not moved by an attach: v3 stays the latest registered.
    assert read_json("sandbox", layout.stage_key("churn"))["version"] == 3


def test_identical_bytes_with_another_image_are_refused(three_versions: Path, run: Run, tmp_path: Path) -> None:
    model = make_model(tmp_path / "src-weights-2", "weights-2")
    other = IMAGE.replace(":1.2.0", ":1.3.0")
    before = all_versions("sandbox")
    result = run("register", str(model), "-m", "churn", "--image", other)
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: these bytes are already churn v2 with image {IMAGE}; a version's image is part of what stages pin, "
        "so it cannot change: register the model with a changed file to make a new version, or keep v2's image\n"
    )
    assert all_versions("sandbox") == before


def test_attach_and_baseline_commands(three_versions: Path, run: Run, tmp_path: Path) -> None:
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"auc": 0.97}))
    out = ok(run("attach", "churn", "--version", "1", "--metrics", str(metrics), "--json"))
    assert out["model"] == "churn" and out["version"] == 1 and out["changed"] == ["metrics"]
    assert read_json("sandbox", layout.version_key("churn", 1))["metrics"] == {"auc": 0.97}
    again = ok(run("attach", "churn", "--version", "1", "--metrics", str(metrics), "--json"))
    assert again["changed"] == [], "the same metrics again change nothing and write no record"
    data = tmp_path / "train.csv"
    data.write_text("tenure\n1\n2\n3\n")
    text = ok(run("baseline", "churn", "--version", "1", str(data)))
    assert "churn v1: baseline attached in sandbox" in text
    data.write_text("tenure\n1\n2\n3\n4\n")
    ok(run("baseline", "churn", "--version", "1", str(data)))
    assert read_json("sandbox", f"{layout.version_prefix('churn', 1)}baseline.json")["rows"] == 4
    records = [h for h in ok(run("history", "churn", "--stage", "sandbox", "--json")) if h["action"] == "attach"]
    assert len(records) == 3
    assert (
        records[0]["changes"]["baseline"]["old"]["rows"] == 3 and records[0]["changes"]["baseline"]["new"]["rows"] == 4
    )
    result = run("attach", "churn", "--version", "1")
    assert result.exit_code == 2 and "give --metrics, --baseline, --card or --description" in result.stderr
    result = run("attach", "churn", "--version", "9", "--metrics", str(metrics))
    assert result.exit_code == 2 and "churn v9 is not in sandbox's registry" in result.stderr


# --- 6. a tampered artifact is not reported as lost --------------------------------------------------------------


def test_an_artifact_overwritten_without_a_checksum_is_reported_as_changed(three_versions: Path, run: Run) -> None:
    digest = read_json("dev", layout.version_key("churn", 1))["digest"]
    key = layout.artifact_key("churn", digest)
    s3().put_object(Bucket=bucket("dev"), Key=key, Body=b"tampered")
    result = run("promote", "churn", "--to", "staging")
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"error: digest mismatch: s3://{bucket('dev')}/{key} was overwritten without a SHA-256 checksum, so its "
        f"bytes are no longer the registered {digest[:19]}... (changed behind the registry's back); do not promote "
        "it, investigate and re-register\n"
    )


# --- 7. promoting the version a stage already runs ---------------------------------------------------------------


def test_promoting_the_version_a_stage_already_runs_is_refused_and_records_nothing(
    three_versions: Path, run: Run
) -> None:
    pointer = read_json("dev", layout.stage_key("churn"))
    history = ok(run("history", "churn", "--stage", "dev", "--json"))
    result = run("promote", "churn", "--to", "dev", "--version", "1", "--reason", "another reason")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: churn already runs v1 in dev (since ")
    assert result.stderr.count("\n") == 1
    assert read_json("dev", layout.stage_key("churn")) == pointer
    assert ok(run("history", "churn", "--stage", "dev", "--json")) == history
    # The same request again is a re-run of a finished promotion: it converges, exit 0.
    assert ok(run("promote", "churn", "--to", "dev", "--version", "1", "--reason", "start", "--json"))["version"] == 1


# --- 8. a retried CreateModelPackage that created two packages ---------------------------------------------------


def test_a_retried_create_model_package_yields_one_version(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path, hooks: list[Any]
) -> None:
    ok(run("local", "bootstrap", "--all", "--json"))
    sent: list[str] = []

    def install(session: Any) -> None:
        def before_send(request: Any, **_: Any) -> AWSResponse | None:
            target = request.headers.get("X-Amz-Target", b"")
            target = target.decode() if isinstance(target, bytes) else str(target)
            if target.endswith("CreateModelPackage") and not sent:
                # The request reaches the emulator, the response is lost: botocore retries with the same ClientToken.
                body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
                forward = urllib.request.Request(request.url, data=body, method="POST")  # noqa: S310 - loopback
                for name, value in request.headers.items():
                    forward.add_header(name, value.decode() if isinstance(value, bytes) else value)
                with urllib.request.urlopen(forward, timeout=30) as response:  # noqa: S310 - the emulator
                    sent.append(response.read().decode())
                return AWSResponse(request.url, 500, {}, _Raw(b'{"__type": "InternalFailure"}'))
            return None

        session.events.register("before-send.sagemaker", before_send)

    hooks.append(install)
    first = register(run, tmp_path)
    hooks.remove(install)
    assert sent, "the injected cut happened"
    packages = boto3.client("sagemaker", region_name="eu-west-1").list_model_packages(
        ModelPackageGroupName="mlinfra-sandbox-churn"
    )["ModelPackageSummaryList"]
    assert len(packages) == 2, "the emulator ignores ClientToken: two packages for one digest"
    assert first["version"] == 1, "the oldest package of the digest numbers the version"
    assert register(run, tmp_path)["version"] == 1
    out = ok(run("promote", "churn", "--to", "dev", "--json"))
    assert out["version"] == 1
    assert register(run, tmp_path, "weights-2")["version"] == 3, "the duplicate's number is skipped, not reused"


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body

    def read(self, *_: Any) -> bytes:
        return self.body


# --- 9. messages --------------------------------------------------------------------------------------------------


def test_a_duplicate_key_says_which_key_and_where(project_dir: Path, run: Run) -> None:
    path = project_dir / "stacks" / "Pulumi.dev.yaml"
    path.write_text(path.read_text() + "config: {}\n")
    result = run("stack", "show", "dev")
    assert result.exit_code == 2
    lines = path.read_text().splitlines()
    first = next(i for i, text in enumerate(lines, 1) if not text.startswith("#"))
    assert result.stderr == (
        f"error: stacks/Pulumi.dev.yaml: line {len(lines)}: duplicate key 'config' (in the mapping that starts at "
        f"line {first}); keep one of them\n"
    )


def test_a_directory_named_like_a_stack_file_is_named_as_such(project_dir: Path, run: Run) -> None:
    (project_dir / "stacks" / "Pulumi.qa.yaml").mkdir()
    result = run("stack", "show", "qa")
    assert result.exit_code == 2
    assert result.stderr == "error: stacks/Pulumi.qa.yaml is a directory, not a stack file: remove or rename it\n"
    listed = ok(run("stack", "list", "--json"))
    assert "qa" not in [row["stage"] for row in listed]


def test_a_new_digest_is_stored_in_one_verified_put_without_a_copy(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path, hooks: list[Any]
) -> None:
    ok(run("local", "bootstrap", "--stack", "sandbox", "--json"))
    writes = Writes()
    hooks.append(writes.install)
    out = ok(run("register", str(make_model(tmp_path)), "-m", "churn", "--image", IMAGE, "--json"))
    assert "CopyObject" not in writes.calls and "CreateMultipartUpload" not in writes.calls, writes.calls
    attributes = s3().get_object_attributes(
        Bucket=bucket("sandbox"), Key=layout.artifact_key("churn", out["digest"]), ObjectAttributes=["Checksum"]
    )
    assert attributes["Checksum"]["ChecksumSHA256"] == checksum_of(out["digest"])
