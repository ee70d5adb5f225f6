"""`mlinfra up | destroy` where the pulumi CLI is not installed (as on this machine and in CI)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.cli.conftest import snapshot

Run = Callable[..., Result]


@pytest.mark.parametrize("command", ["up", "destroy"])
def test_without_pulumi_cli_exits_1_with_install_hint(project_dir: Path, run: Run, command: str) -> None:
    before = snapshot(project_dir)
    result = run(command, "--stack", "dev", "--yes", env={"PATH": str(project_dir)})
    assert result.exit_code == 1
    assert result.stderr == (
        "error: the pulumi CLI is not installed (needed to deploy): install it "
        "(https://www.pulumi.com/docs/install/) and run again; `mlinfra preview` works without it\n"
    )
    assert "Traceback" not in result.output
    assert snapshot(project_dir) == before


def test_up_of_unknown_stage_is_bad_input_even_without_pulumi(project_dir: Path, run: Run) -> None:
    result = run("up", "--stack", "qa", "--yes", env={"PATH": ""})
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown stage 'qa'")
