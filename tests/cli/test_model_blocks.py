"""Model blocks in a stack file stay one blank line apart, so promotions of two models into one stage both merge.

Real git: the shipped staging stack file declares a second model, two branches each pin one model from the same
base (the edit `mlinfra promote` makes), and git merges both into main.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlinfra.stacks.edit import declare_model, pin_version, pinned_text
from mlinfra.stacks.project import Project
from mlinfra.stacks.separate import separate_models
from tests.builders import pin


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=a@example.com", "-c", "user.name=A", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def test_two_models_pinned_on_two_branches_merge_without_conflict(project_dir: Path) -> None:
    project = Project(project_dir)
    assert declare_model(project, ["sandbox", "dev", "staging", "prod"], "fraud") == [
        "sandbox",
        "dev",
        "staging",
        "prod",
    ]
    staging = project_dir / "stacks" / "Pulumi.staging.yaml"
    assert "    churn: {}\n\n    fraud: {}" in staging.read_text()
    git(project_dir, "init", "--quiet", "--initial-branch=main")
    git(project_dir, "add", "-A")
    git(project_dir, "commit", "--quiet", "-m", "two models")
    base = staging.read_bytes()
    for model, version in (("churn", 4), ("fraud", 2)):
        git(project_dir, "checkout", "--quiet", "-b", f"promote-{model}", "main")
        text = pinned_text(project, "staging", model, pin(model, version, "staging"), raw=base, source=staging.name)
        assert text is not None
        staging.write_text(text)
        git(project_dir, "commit", "--quiet", "-am", f"pin {model}")
    git(project_dir, "checkout", "--quiet", "main")
    git(project_dir, "merge", "--quiet", "--no-ff", "-m", "merge churn", "promote-churn")
    git(project_dir, "merge", "--quiet", "--no-ff", "-m", "merge fraud", "promote-fraud")  # no conflict
    from mlinfra.stacks.edit import read_pin

    assert read_pin(project, "staging", "churn")["version"] == 4
    assert read_pin(project, "staging", "fraud")["version"] == 2
    # And again: a second round of pins (blocks now hold `pinned`) merges too.
    base = staging.read_bytes()
    for model, version in (("churn", 5), ("fraud", 3)):
        git(project_dir, "checkout", "--quiet", "-b", f"again-{model}", "main")
        text = pinned_text(project, "staging", model, pin(model, version, "staging"), raw=base, source=staging.name)
        assert text is not None
        staging.write_text(text)
        git(project_dir, "commit", "--quiet", "-am", f"pin {model} again")
    git(project_dir, "checkout", "--quiet", "main")
    git(project_dir, "merge", "--quiet", "--no-ff", "-m", "merge churn", "again-churn")
    git(project_dir, "merge", "--quiet", "--no-ff", "-m", "merge fraud", "again-fraud")
    assert read_pin(project, "staging", "fraud")["version"] == 3


def test_without_the_blank_line_the_same_two_pins_conflict(project_dir: Path) -> None:
    """The control: what git does with touching blocks (why the separation exists)."""
    text = "config:\n  mlinfra:models:\n    churn: {}\n    fraud: {}\n"
    git(project_dir, "init", "--quiet", "--initial-branch=main")
    (project_dir / "f.yaml").write_text(text)
    git(project_dir, "add", "f.yaml")
    git(project_dir, "commit", "--quiet", "-m", "base")
    for model in ("churn", "fraud"):
        git(project_dir, "checkout", "--quiet", "-b", model, "main")
        (project_dir / "f.yaml").write_text(text.replace(f"{model}: {{}}", f"{model}:\n      pinned: 1"))
        git(project_dir, "commit", "--quiet", "-am", model)
    git(project_dir, "checkout", "--quiet", "main")
    git(project_dir, "merge", "--quiet", "churn")
    done = subprocess.run(["git", "merge", "fraud"], cwd=project_dir, capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "CONFLICT" in done.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("config:\n  mlinfra:models:\n    a: {}\n    b: {}\n", "config:\n  mlinfra:models:\n    a: {}\n\n    b: {}\n"),
        (
            "config:\n  mlinfra:models:\n    a:\n      pinned:\n        version: 1\n\n\n    # b's note\n    b: {}\n"
            "  x: 1\n",
            "config:\n  mlinfra:models:\n    a:\n      pinned:\n        version: 1\n\n    # b's note\n    b: {}\n"
            "  x: 1\n",
        ),
        ("config:\n  mlinfra:models: {a: {}, b: {}}\n", "config:\n  mlinfra:models: {a: {}, b: {}}\n"),
        ("config:\n  mlinfra:models:\n    a: {}\n", "config:\n  mlinfra:models:\n    a: {}\n"),
        ("config: {}\n", "config: {}\n"),
    ],
    ids=["touching", "comments stay with their block", "flow mapping", "one model", "no models"],
)
def test_separate_models(text: str, expected: str) -> None:
    assert separate_models(text) == expected
    assert separate_models(expected) == expected


def test_pinning_keeps_the_separation(project_dir: Path) -> None:
    project = Project(project_dir)
    declare_model(project, ["sandbox", "dev", "staging", "prod"], "fraud")
    assert pin_version(project, "dev", "churn", pin("churn", 3, "dev"))
    text = (project_dir / "stacks" / "Pulumi.dev.yaml").read_text()
    assert "\n\n    fraud: {}" in text
    assert pin_version(project, "dev", "churn", pin("churn", 4, "dev"))
    assert "\n\n    fraud: {}" in (project_dir / "stacks" / "Pulumi.dev.yaml").read_text()
