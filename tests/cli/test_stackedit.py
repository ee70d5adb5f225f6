"""Pinning a version in a stack file: comments kept, validated before writing, atomic, idempotent."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

import pytest

from mlinfra.errors import BadInputError
from mlinfra.stacks.edit import pin_version, read_pin
from mlinfra.stacks.files import load_stage
from mlinfra.stacks.project import Project
from mlinfra.stacks.yamledit import guess_indent
from tests.builders import IMAGE, digest_of, pin
from tests.cli.conftest import REPO, snapshot

STAGES = ("sandbox", "dev", "staging", "prod")


def stack_file(root: Path, stage: str) -> Path:
    return root / "stacks" / f"Pulumi.{stage}.yaml"


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    return removed, added


def pin_lines(value: dict[str, object], indent: str = "      ") -> list[str]:
    return [
        f"{indent}pinned:",
        *(f"{indent}  {key}: {value[key]}" for key in ("version", "digest", "image", "artifact")),
    ]


@pytest.mark.parametrize("stage", STAGES)
def test_pin_adds_only_the_pin_and_loads_back(project_dir: Path, stage: str) -> None:
    project = Project(project_dir)
    path = stack_file(project_dir, stage)
    before = path.read_text()
    wanted = pin("churn", 3, stage)

    assert pin_version(project, stage, "churn", wanted) is True

    after = path.read_text()
    removed, added = changed_lines(before, after)
    # `churn: {}` becomes a block mapping holding the pin; every other line, comments included, is untouched.
    assert removed == ["    churn: {}"]
    assert added == ["    churn:", *pin_lines(wanted)]
    assert [line for line in before.splitlines() if line.lstrip().startswith("#")] == [
        line for line in after.splitlines() if line.lstrip().startswith("#")
    ]
    pinned = load_stage(project, stage).config.models["churn"].pinned
    assert pinned is not None
    assert pinned.model_dump(exclude_none=True) == wanted
    assert read_pin(project, stage, "churn") == wanted


def test_shipped_stack_files_round_trip_byte_identical() -> None:
    from mlinfra.stacks.yamledit import dump_yaml, round_trip_yaml

    for stage in STAGES:
        text = stack_file(REPO, stage).read_text()
        yaml = round_trip_yaml(guess_indent(text))
        assert dump_yaml(yaml, yaml.load(text), "") == text, stage


def test_guess_indent_reads_the_file_layout() -> None:
    assert guess_indent(stack_file(REPO, "prod").read_text()) == (2, 4, 2)
    assert guess_indent("config:\n    a:\n        b: 1\n    c:\n    - x\n") == (4, 2, 0)
    assert guess_indent("config:\n  a:\n    - x\n") == (2, 4, 2)
    assert guess_indent("a: 1\n") == (2, 4, 2)


@pytest.mark.parametrize(
    "text",
    [
        "# four spaces, dashes flush\nconfig:\n    a:\n        b: 1  # why\n    c:\n    - x\n",
        "config:\n  a:\n    - x\n    - y: 1\n      z: 'quoted'\n  b: \"double\"\n",
    ],
)
def test_other_layouts_round_trip_byte_identical(text: str) -> None:
    from mlinfra.stacks.yamledit import dump_yaml, round_trip_yaml

    yaml = round_trip_yaml(guess_indent(text))
    assert dump_yaml(yaml, yaml.load(text), "") == text


def test_repin_replaces_the_old_pin_in_place(project_dir: Path) -> None:
    project = Project(project_dir)
    path = stack_file(project_dir, "staging")
    assert pin_version(project, "staging", "churn", pin("churn", 3, "staging"))
    once = path.read_text()
    newer = {**pin("churn", 4, "staging"), "image": IMAGE.replace(":1.2-1-", ":1.4-2-")}

    assert pin_version(project, "staging", "churn", newer) is True

    removed, added = changed_lines(once, path.read_text())
    assert removed == pin_lines(pin("churn", 3, "staging"))[1:]
    assert added == pin_lines(newer)[1:]
    assert read_pin(project, "staging", "churn") == newer


def test_pin_keeps_the_models_settings_and_comments(project_dir: Path) -> None:
    path = stack_file(project_dir, "prod")
    text = path.read_text().replace(
        "    churn: {}\n",
        "    churn:\n      # bigger instances for this one\n      instanceType: ml.m5.2xlarge  # see capacity plan\n",
    )
    path.write_text(text)
    wanted = pin("churn", 5, "prod")

    assert pin_version(Project(project_dir), "prod", "churn", wanted)

    removed, added = changed_lines(text, path.read_text())
    assert removed == []
    assert added == pin_lines(wanted)
    assert load_stage(Project(project_dir), "prod").config.models["churn"].instance_type == "ml.m5.2xlarge"


def test_pin_creates_the_models_block_and_model(project_dir: Path) -> None:
    path = stack_file(project_dir, "dev")
    text = path.read_text()
    path.write_text(text[: text.index("  mlinfra:models:")])
    wanted = pin("fraud", 1, "dev")

    assert pin_version(Project(project_dir), "dev", "fraud", wanted)

    assert path.read_text().endswith("  mlinfra:models:\n    fraud:\n" + "\n".join(pin_lines(wanted)) + "\n")
    assert read_pin(Project(project_dir), "dev", "fraud") == wanted
    assert read_pin(Project(project_dir), "dev", "churn") is None


def test_same_pin_twice_leaves_the_file_alone(project_dir: Path) -> None:
    project = Project(project_dir)
    path = stack_file(project_dir, "dev")
    assert pin_version(project, "dev", "churn", pin("churn", 3, "dev"))
    content, mtime = path.read_bytes(), path.stat().st_mtime_ns

    assert pin_version(project, "dev", "churn", pin("churn", 3, "dev")) is False
    # A version given as a string validates to the same pin: still no change.
    assert pin_version(project, "dev", "churn", {**pin("churn", 3, "dev"), "version": "3"}) is False

    assert path.read_bytes() == content
    assert path.stat().st_mtime_ns == mtime


def test_pin_values_are_written_in_canonical_types(project_dir: Path) -> None:
    project = Project(project_dir)
    assert pin_version(project, "dev", "churn", {**pin("churn", 3, "dev"), "version": "3"})
    assert "        version: 3\n" in stack_file(project_dir, "dev").read_text()


def test_bad_digest_is_refused_and_nothing_written(project_dir: Path) -> None:
    before = snapshot(project_dir)
    bad = {**pin("churn", 3, "dev"), "digest": "sha256:XYZ"}

    with pytest.raises(BadInputError) as caught:
        pin_version(Project(project_dir), "dev", "churn", bad)

    assert str(caught.value) == (
        "stacks/Pulumi.dev.yaml: mlinfra:models.churn.pinned.digest: 'sha256:XYZ' is not a digest of the form "
        "sha256:<64 lowercase hex>; nothing was written"
    )
    assert snapshot(project_dir) == before


def test_another_stages_artifact_is_refused(project_dir: Path) -> None:
    before = snapshot(project_dir)
    with pytest.raises(BadInputError, match=r"mlinfra:models\.churn\.pinned\.artifact: .* is not this stage's copy"):
        pin_version(Project(project_dir), "dev", "churn", pin("churn", 3, "prod"))
    assert snapshot(project_dir) == before


def test_missing_pin_field_is_refused(project_dir: Path) -> None:
    incomplete = {key: value for key, value in pin("churn", 3, "dev").items() if key != "image"}
    with pytest.raises(BadInputError, match=r"^stacks/Pulumi.dev.yaml: mlinfra:models.churn.pinned.image: required"):
        pin_version(Project(project_dir), "dev", "churn", incomplete)


def test_invalid_yaml_is_refused_with_the_line(project_dir: Path) -> None:
    path = stack_file(project_dir, "dev")
    path.write_text(path.read_text().replace("    mode: serverless\n", "    mode: [serverless\n"))
    before = snapshot(project_dir)

    with pytest.raises(BadInputError) as caught:
        pin_version(Project(project_dir), "dev", "churn", pin("churn", 3, "dev"))

    message = str(caught.value)
    assert message.startswith("stacks/Pulumi.dev.yaml: line 6: invalid YAML: ")
    assert "\n" not in message
    assert snapshot(project_dir) == before


def test_models_that_is_not_a_mapping_is_refused(project_dir: Path) -> None:
    path = stack_file(project_dir, "dev")
    path.write_text(path.read_text().replace("    churn: {}\n", "    - churn\n"))
    with pytest.raises(BadInputError, match=r"^stacks/Pulumi.dev.yaml: mlinfra:models: must be a mapping"):
        pin_version(Project(project_dir), "dev", "churn", pin("churn", 3, "dev"))


def test_unknown_stage_is_refused(project_dir: Path) -> None:
    with pytest.raises(BadInputError, match=r"unknown stage 'stagin'.*did you mean 'staging'"):
        pin_version(Project(project_dir), "stagin", "churn", pin("churn", 3, "staging"))


def test_failed_replace_leaves_the_original_and_no_temp_file(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(project_dir)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        pin_version(Project(project_dir), "dev", "churn", pin("churn", 3, "dev"))

    assert snapshot(project_dir) == before  # same files (no temp file left behind), same content


def test_file_mode_is_kept(project_dir: Path) -> None:
    path = stack_file(project_dir, "dev")
    path.chmod(0o640)
    assert pin_version(Project(project_dir), "dev", "churn", pin("churn", 3, "dev"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_read_pin_of_an_unpinned_or_undeclared_model(project_dir: Path) -> None:
    project = Project(project_dir)
    assert read_pin(project, "prod", "churn") is None
    assert read_pin(project, "prod", "fraud") is None
    assert pin_version(project, "prod", "churn", pin("churn", 2, "prod"))
    assert read_pin(project, "prod", "churn") == pin("churn", 2, "prod")
    assert read_pin(project, "prod", "churn") != {**pin("churn", 2, "prod"), "digest": digest_of("other")}


def test_a_stack_file_of_comments_only_keeps_them(project_dir: Path) -> None:
    settings = project_dir / "Pulumi.yaml"
    settings.write_text(settings.read_text() + "  aws:region:\n    value: eu-west-1\n")
    path = stack_file(project_dir, "dev")
    path.write_text("# dev: everything from Pulumi.yaml\n")
    wanted = pin("churn", 3, "dev")

    assert pin_version(Project(project_dir), "dev", "churn", wanted)

    assert path.read_text() == (
        "# dev: everything from Pulumi.yaml\nconfig:\n  mlinfra:models:\n    churn:\n"
        + "\n".join(pin_lines(wanted))
        + "\n"
    )


def test_windows_line_endings_are_kept(project_dir: Path) -> None:
    path = stack_file(project_dir, "dev")
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert pin_version(Project(project_dir), "dev", "churn", pin("churn", 3, "dev"))
    content = path.read_bytes()
    assert content.count(b"\n") == content.count(b"\r\n")
    assert b"        version: 3\r\n" in content
    assert pin_version(Project(project_dir), "dev", "churn", pin("churn", 3, "dev")) is False


def test_a_pin_with_the_handler_layout_round_trips_and_an_old_pin_stays_valid(project_dir: Path) -> None:
    project = Project(project_dir)
    handler = {"framework": "xgboost", "program": "inference.py", "directory": "code"}
    wanted = {**pin("churn", 3, "dev"), "handler": handler}
    assert pin_version(project, "dev", "churn", wanted) is True
    assert read_pin(project, "dev", "churn") == wanted
    files = snapshot(project_dir / "stacks")
    assert pin_version(project, "dev", "churn", wanted) is False, "the same pin again changes nothing"
    assert snapshot(project_dir / "stacks") == files
    # a pin written before handlers were recorded (no `handler`) still loads, and re-pinning it drops the block
    old = pin("churn", 4, "dev")
    assert pin_version(project, "dev", "churn", old) is True
    assert read_pin(project, "dev", "churn") == old
    assert "handler" not in stack_file(project_dir, "dev").read_text()
    assert load_stage(project, "dev").config.models["churn"].pinned.handler is None  # type: ignore[union-attr]
