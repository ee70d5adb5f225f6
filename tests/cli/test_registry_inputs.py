"""Inputs the registry refuses (registry hardening, round two): control characters in file names, 0-byte model
files, an unbounded --run-url. Each is one line of bad input (exit 2) and nothing is uploaded or recorded."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from mlinfra.errors import BadInputError
from mlinfra.models.archives import inspect_archive
from mlinfra.models.packaging import pack
from tests.cli.test_promotion import IMAGE, bucket, make_model, ok, s3

Run = Callable[..., Result]


@pytest.mark.parametrize("name", ["new\nline.bin", "tab\there.bin", "bell\x07.bin"])
def test_a_file_name_with_a_control_character_is_refused(tmp_path: Path, name: str) -> None:
    model = make_model(tmp_path)
    (model / name).write_text("x")
    with pytest.raises(BadInputError, match="control character") as refused:
        pack(model, lambda _chunk: None)
    assert "\n" not in str(refused.value)


def test_an_archive_member_with_a_newline_in_its_name_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("model\n.bin")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(BadInputError, match="control character"):
        inspect_archive(archive)


def uploads() -> list[str]:
    listed = s3().list_object_versions(Bucket=bucket("sandbox"))
    return [v["Key"] for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])]


@pytest.mark.parametrize("as_archive", [False, True], ids=["directory", "archive"])
def test_a_zero_byte_model_file_is_refused_before_any_upload(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path, as_archive: bool
) -> None:
    ok(run("local", "bootstrap", "--stack", "sandbox", "--json"))
    model = make_model(tmp_path)
    (model / "model.bin").write_bytes(b"")
    (model / "code" / "__init__.py").write_bytes(b"")  # empty code files are fine
    path = model
    if as_archive:
        path = tmp_path / "model.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for file in sorted(model.rglob("*")):
                tar.add(file, arcname=str(file.relative_to(model)), recursive=False)
    before = uploads()
    result = run("register", str(path), "--model", "churn", "--image", IMAGE)
    assert result.exit_code == 2, result.output
    assert "'model.bin' is empty (0 bytes)" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert uploads() == before
    (model / "model.bin").write_text("weights")
    ok(run("register", str(model), "--model", "churn", "--image", IMAGE, "--json"))


def test_run_url_is_bounded(project_dir: Path, aws_env: str, run: Run) -> None:
    ok(run("local", "bootstrap", "--stack", "dev", "--json"))
    url = "https://github.com/o/r/actions/runs/" + "1" * 100_000
    result = run("record-deployment", "--stack", "dev", "--run-url", url)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --run-url: ") and "2048" in result.stderr, result.stderr[:300]
    assert len(result.stderr) < 400 and result.stderr.count("\n") == 1


def test_a_disk_that_fills_up_while_hashing_falls_back_to_streaming(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from mlinfra.registry import staging

    ok(run("local", "bootstrap", "--stack", "sandbox", "--json"))
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, handle: int, mode: str) -> None:
            self.out = real_fdopen(handle, mode)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *_: object) -> None:
            self.out.close()

        def write(self, _chunk: bytes) -> int:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(staging.os, "fdopen", Full)
    out = ok(run("register", str(make_model(tmp_path)), "--model", "churn", "--image", IMAGE, "--json"))
    assert out["version"] == 1
    assert not list((project_dir / ".mlinfra").rglob("artifact-*"))
