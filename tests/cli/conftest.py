"""CLI fixtures: a copy of this repository's Pulumi.yaml and stacks/ in a temporary project, and a runner."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mlinfra.main import cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary platform repo holding the shipped Pulumi.yaml and stack files; the working directory."""
    root = tmp_path / "platform"
    root.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", root / "stacks")
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLINFRA_STACK", raising=False)
    monkeypatch.delenv("MLINFRA_PROJECT", raising=False)
    monkeypatch.delenv("MLINFRA_LOCAL", raising=False)  # local mode reads a scratch copy of the stacks
    return root


@pytest.fixture
def run() -> Callable[..., Result]:
    """Invoke `mlinfra ARGS...` in-process; stdout and stderr are kept apart."""

    def _run(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return _run


def snapshot(root: Path) -> dict[str, str]:
    """Path -> sha256 of every file below root, to prove a failed command wrote nothing."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
