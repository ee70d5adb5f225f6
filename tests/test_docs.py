"""The README and docs/ pages: short, self-contained, and every command they show runs (or parses, where it cannot).

Blocks and their marks are described in tests/docs_blocks.py. docs/analyst.md is run by tests/test_journey.py,
which also counts its failed commands; every other page with runnable blocks is run here, in a scratch copy of the
repository's project on the test emulator.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlinfra.main import cli
from tests.docs_blocks import Block, blocks, make_targets, mlinfra_arguments, script

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 250
# tests/test_journey.py runs analyst.md command by command; tests/bootstrap/test_docs.py runs bootstrap.md with
# stand-ins for pulumi and gh.
RUN_ELSEWHERE = {"analyst.md", "bootstrap.md"}
# Pages the README links to that other branches write; remove a name once its page is on this branch (the test below
# fails when a listed page exists, so the list cannot go stale).
WRITTEN_ELSEWHERE: set[str] = set()
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _all_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks(page)]


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, f"README.md has {len(text.splitlines())} lines"
    first = next(block for block in blocks(REPO / "README.md") if block.shell)
    assert first.commands()[:2] == ["make quickstart", "make test"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_links_out_of_the_repository_and_no_issue_numbers(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for target in _LINK.findall(text):
        assert not re.match(r"^[a-z][a-z0-9+.-]*:", target), f"{page.name} links out of the repository: {target}"
        path = target.split("#", 1)[0]
        if not path:
            continue
        resolved = (page.parent / path).resolve()
        assert resolved.is_relative_to(REPO), f"{page.name} links outside the repository: {target}"
        if resolved.parent == REPO / "docs" and resolved.name in WRITTEN_ELSEWHERE:
            continue
        assert resolved.exists(), f"{page.name} links to {target}, which does not exist"
    assert not re.search(r"\bissues? #?\d+", text, re.IGNORECASE), f"{page.name} names an issue number"


def test_pages_written_elsewhere_are_not_here_yet() -> None:
    present = sorted(name for name in WRITTEN_ELSEWHERE if (REPO / "docs" / name).exists())
    assert not present, f"{present} exist now: remove them from WRITTEN_ELSEWHERE so their links are checked"


def test_skipped_blocks_say_why() -> None:
    for block in _all_blocks():
        if block.skip_reason is not None:
            assert block.skip_reason != "no reason given", f"{block.where()}: `not run` without a reason"


@pytest.mark.parametrize("block", [b for b in _all_blocks() if b.shell], ids=lambda b: b.where())
def test_every_shell_command_parses(block: Block) -> None:
    """Each `mlinfra` line is accepted by the CLI (its command path and options exist); each make target exists."""
    targets = make_targets(REPO / "Makefile")
    for command in block.commands():
        words = command.split()
        if words[:1] == ["make"]:
            for target in words[1:]:
                assert target in targets, f"{block.where()}: `{command}`: the Makefile has no target {target}"
            continue
        arguments = mlinfra_arguments(command)
        if arguments is None:
            continue
        result = CliRunner().invoke(cli, [*arguments, "--help"])
        assert result.exit_code == 0, f"{block.where()}: `{command}` does not parse: {result.output.strip()}"


def scratch_project(home: Path) -> Path:
    """A copy of this repository's project (Pulumi.yaml, stacks/, examples/, the bootstrap stack's files and the
    workflows) at HOME/platform, with its .venv."""
    root = home / "platform"
    root.mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    for name in ("stacks", "examples", ".github"):
        shutil.copytree(REPO / name, root / name)
    (root / "infra" / "bootstrap").mkdir(parents=True)
    for name in ("Pulumi.yaml", "Pulumi.bootstrap.yaml"):
        shutil.copy(REPO / "infra" / "bootstrap" / name, root / "infra" / "bootstrap" / name)
    (root / ".venv").symlink_to(Path(sys.prefix))
    return root


def page_environment(home: Path, emulator: str) -> dict[str, str]:
    """The environment a page runs in: HOME, PATH with this venv's scripts, the emulator, no stack selection."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLINFRA_"))}
    env.update(
        HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        AWS_ENDPOINT_URL=emulator,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


RUNNABLE = [
    page for page in PAGES if page.name not in RUN_ELSEWHERE and any(b.skip_reason is None for b in blocks(page))
]


@pytest.mark.emulator
@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.name)
def test_page_runs(page: Path, aws_env: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    root = scratch_project(home)
    text = script(blocks(page), sys.executable)
    done = subprocess.run(
        ["bash", "-c", text],
        cwd=root,
        env=page_environment(home, aws_env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{page.name}:\n{done.stderr[-3000:]}"
