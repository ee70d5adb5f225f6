"""Out-of-band tampering with a registry (registry hardening, round two): corrupted artifacts, records of the wrong
shape, a deleted stage pointer, deleted audit records. Each is detected and named in one line; what can be rebuilt
is rebuilt by an explicit command.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from mlinfra.registry import checksum_of
from mlinfra_infra import layout
from tests.cli.test_promotion import bucket, ok, read_json, register, s3

Run = Callable[..., Result]


@pytest.fixture
def registered(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> Path:
    """Bootstrapped stacks, churn v1 and v2 registered, v1 then v2 promoted to dev."""
    ok(run("local", "bootstrap", "--all", "--json"))
    register(run, tmp_path, "weights-1")
    register(run, tmp_path, "weights-2")
    ok(run("promote", "churn", "--to", "dev", "--version", "1", "--reason", "first"))
    ok(run("promote", "churn", "--to", "dev", "--version", "2", "--reason", "second"))
    return project_dir


def one_line(result: Result, code: int) -> str:
    assert result.exit_code == code, f"exit {result.exit_code}: {result.output}"
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    return str(result.stderr)


def tamper(stage: str, version: int, *, checksum: bool) -> str:
    digest = read_json(stage, layout.version_key("churn", version))["digest"]
    key = layout.artifact_key("churn", digest)
    extra = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
    s3().put_object(Bucket=bucket(stage), Key=key, Body=b"not a tarball", **extra)
    return key


# --- 5. diff of a tampered artifact --------------------------------------------------------------------------------


@pytest.mark.parametrize("checksum", [True, False], ids=["with-checksum", "without-checksum"])
def test_diff_of_a_tampered_artifact_is_a_digest_mismatch(registered: Path, run: Run, checksum: bool) -> None:
    key = tamper("sandbox", 2, checksum=checksum)
    tamper("dev", 2, checksum=checksum)
    error = one_line(run("diff", "churn", "1", "2"), 1)
    assert error.startswith(f"error: digest mismatch: s3://{bucket('sandbox')}/{key}"), error


# --- 6. registering the genuine bytes over a corrupted artifact ----------------------------------------------------


@pytest.mark.parametrize("checksum", [True, False], ids=["with-checksum", "without-checksum"])
def test_registering_the_genuine_bytes_again_repairs_a_corrupted_artifact(
    registered: Path, run: Run, tmp_path: Path, checksum: bool
) -> None:
    key = tamper("sandbox", 1, checksum=checksum)
    out = register(run, tmp_path, "weights-1")
    assert out["version"] == 1 and out["existing"] is True
    assert out["repaired"] is True
    attributes = s3().get_object_attributes(Bucket=bucket("sandbox"), Key=key, ObjectAttributes=["Checksum"])
    assert attributes["Checksum"]["ChecksumSHA256"] == checksum_of(out["digest"])
    # And the stage that promoted it verifies again.
    ok(run("promote", "churn", "--to", "dev", "--version", "1", "--reason", "back to the repaired v1"))
    again = register(run, tmp_path, "weights-1")
    assert again["repaired"] is False


def test_registering_over_a_deleted_artifact_uploads_it_again(registered: Path, run: Run, tmp_path: Path) -> None:
    digest = read_json("sandbox", layout.version_key("churn", 1))["digest"]
    s3().delete_object(Bucket=bucket("sandbox"), Key=layout.artifact_key("churn", digest))
    out = register(run, tmp_path, "weights-1")
    assert out["repaired"] is True
    head = s3().head_object(Bucket=bucket("sandbox"), Key=layout.artifact_key("churn", digest))
    assert head["ContentLength"] > 0


def _text(result: Result) -> Any:
    return json.loads(result.stdout)
