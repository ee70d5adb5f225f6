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

from mlinfra.registry.integrity import checksum_of
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


# --- 7. a deleted stage pointer ------------------------------------------------------------------------------------


def delete_pointer(stage: str) -> dict[str, Any]:
    before = read_json(stage, layout.stage_key("churn"))
    s3().delete_object(Bucket=bucket(stage), Key=layout.stage_key("churn"))
    return before


def test_a_deleted_pointer_is_recognised_and_rebuilt_from_the_audit_log(registered: Path, run: Run) -> None:
    ok(run("record-deployment", "--stack", "dev", "--json"))
    before = delete_pointer("dev")
    assert before["version"] == 2 and before["deployed"]["version"] == 2

    (row,) = ok(run("status", "--stack", "dev", "--json"))
    assert row["pointerMissing"] is True
    command = "mlinfra repair pointer churn --stack dev"
    assert any("pointer missing" in note and command in note for note in row["notes"]), row["notes"]
    assert not any("re-run the promotion" in note for note in row["notes"]), row["notes"]

    repair = "`mlinfra repair pointer churn --stack dev`"
    for args in (
        ("rollback", "churn", "--stack", "dev", "--reason", "x"),
        ("promote", "churn", "--to", "dev", "--version", "1", "--reason", "x"),
        ("record-deployment", "--stack", "dev"),
    ):
        error = one_line(run(*args), 1)
        assert "stage pointer" in error and "is missing" in error and repair in error, (args, error)
        assert "never run" not in error

    out = ok(run("repair", "pointer", "churn", "--stack", "dev", "--json"))
    assert (out["version"], out["rebuilt"], out["from"]["action"]) == (2, True, "deploy")
    rebuilt = read_json("dev", layout.stage_key("churn"))
    assert (rebuilt["version"], rebuilt["digest"], rebuilt["record"]) == (2, before["digest"], before["record"])
    assert rebuilt["deployed"] == before["deployed"], "the recorded deployment (and the soak clock) is kept"
    trail = ok(run("history", "churn", "--stage", "dev", "--json"))
    assert trail[0]["action"] == "repair" and trail[0]["version"] == 2
    assert "nothing to repair" in ok(run("repair", "pointer", "churn", "--stack", "dev"))
    # The rollback now knows where it was.
    assert "v1 pinned in dev (was v2)" in ok(run("rollback", "churn", "--stack", "dev", "--reason", "after repair"))


def test_a_deleted_entry_pointer_is_recognised_by_promote_and_register(
    registered: Path, run: Run, tmp_path: Path
) -> None:
    delete_pointer("sandbox")
    error = one_line(run("promote", "churn", "--to", "dev", "--reason", "x"), 1)
    assert "`mlinfra repair pointer churn --stack sandbox`" in error
    error = one_line(run(*register_args(tmp_path, "weights-3")), 1)
    assert "`mlinfra repair pointer churn --stack sandbox`" in error
    out = ok(run("repair", "pointer", "churn", "--stack", "sandbox", "--json"))
    assert (out["version"], out["from"]["action"]) == (2, "register")


def test_repair_of_a_model_that_never_ran_is_bad_input(registered: Path, run: Run) -> None:
    error = one_line(run("repair", "pointer", "churn", "--stack", "staging"), 2)
    assert "nothing to rebuild" in error


def register_args(root: Path, content: str) -> tuple[str, ...]:
    from tests.cli.test_promotion import IMAGE, make_model

    return ("register", str(make_model(root / content, content)), "--model", "churn", "--image", IMAGE)


# --- 8. audit records cannot vanish from history -------------------------------------------------------------------


def test_history_reads_through_a_delete_marker_and_reports_it(registered: Path, run: Run) -> None:
    listed = s3().list_objects_v2(Bucket=bucket("dev"), Prefix=layout.audit_prefix("churn"))["Contents"]
    records = {o["Key"]: read_json("dev", o["Key"]) for o in listed}
    key = next(k for k, r in records.items() if r["action"] == "promote" and r["version"] == 1)
    s3().delete_object(Bucket=bucket("dev"), Key=key)  # a plain delete: a delete marker hides it
    trail = ok(run("history", "churn", "--stack", "dev", "--json"))
    hidden = [r for r in trail if r.get("deleted")]
    assert [(r["action"], r["version"], r["reason"]) for r in hidden] == [("promote", 1, "first")]
    assert hidden[0]["deleted"]["key"] == key
    assert len(trail) == len(records)
    table = ok(run("history", "churn", "--stack", "dev"))
    assert "DELETED" in table and "deleted out of band" in table


# --- 4. records of the wrong shape ---------------------------------------------------------------------------------


def overwrite_record(stage: str, version: int, body: Any) -> str:
    key = layout.version_key("churn", version)
    s3().put_object(Bucket=bucket(stage), Key=key, Body=json.dumps(body).encode())
    return key


@pytest.mark.parametrize(
    ("shape", "named"),
    [
        ("no-digest", "digest"),
        ("a-list", "not a JSON object"),
        ("made-up-digest", "digest"),
        ("version-as-text", "version"),
    ],
)
def test_a_record_of_the_wrong_shape_is_one_line_and_other_versions_still_list(
    registered: Path, run: Run, shape: str, named: str
) -> None:
    good = read_json("sandbox", layout.version_key("churn", 1))
    body: Any = {
        "no-digest": {k: v for k, v in good.items() if k != "digest"},
        "a-list": [1, 2],
        "made-up-digest": {**good, "digest": "sha256:made-up"},
        "version-as-text": {**good, "version": "one"},
    }[shape]
    key = overwrite_record("sandbox", 1, body)
    error = one_line(run("promote", "churn", "--to", "dev", "--version", "1", "--reason", "x"), 1)
    assert f"s3://{bucket('sandbox')}/{key}" in error and named in error, error
    assert "lost the artifact" not in error
    listed = run("versions", "churn", "--stack", "sandbox", "--json")
    assert listed.exit_code == 0, listed.output
    assert [row["version"] for row in json.loads(listed.stdout)] == [2]
    assert key in listed.stderr and named in listed.stderr, listed.stderr
    assert ok(run("show", "churn", "--version", "2", "--json"))["version"] == 2
    error = one_line(run("show", "churn", "--version", "1"), 1)
    assert key in error and named in error, error
