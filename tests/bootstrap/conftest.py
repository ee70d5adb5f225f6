"""Bootstrap fixtures: the bootstrap stack in three accounts rendered once, and a scratch project with stand-in tools.

Both use tests/fixtures/bootstrap/Pulumi.bootstrap.yaml, the shipped example's settings with staging and prod in
accounts of their own, so cross-account trust, state and promotion policies are exercised; the shipped one-account
example is rendered by tests/bootstrap/test_stack.py and checked whole by `mlinfra check --access`.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from mlinfra.bootstrap import stack
from mlinfra.main import cli
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import RenderedStack

REPO = Path(__file__).resolve().parents[2]
MULTI_ACCOUNT = REPO / "tests" / "fixtures" / "bootstrap" / "Pulumi.bootstrap.yaml"

# A recording stand-in for a CLI (gh, pulumi): one JSON line of argv (and stdin) per call. `gh api` answers the
# lookups `mlinfra bootstrap github --apply` makes (a team's or user's id; an environment's branch policies, from
# STANDIN_BRANCH_POLICIES); STANDIN_FAIL makes any call whose arguments contain it fail the way gh does (a message
# on stderr, exit 1).
STANDIN = """#!{python}
import json, os, sys
stdin = "" if sys.stdin.isatty() else sys.stdin.read()
with open(os.environ["STANDIN_LOG"], "a") as log:
    log.write(json.dumps({{"tool": os.path.basename(sys.argv[0]), "args": sys.argv[1:], "stdin": stdin}}) + "\\n")
fail = os.environ.get("STANDIN_FAIL")
if fail and fail in " ".join(sys.argv[1:]):
    sys.stderr.write("HTTP 403: Resource not accessible by integration\\n")
    sys.exit(1)
if sys.argv[1:2] == ["api"] and "--jq" in sys.argv and sys.argv[-1] == ".id":
    print(42 if "/teams/" in sys.argv[2] else 7)
if sys.argv[1:2] == ["api"] and "--jq" in sys.argv and sys.argv[-1] == ".branch_policies[].name":
    print(os.environ.get("STANDIN_BRANCH_POLICIES", ""))
"""


def platform_copy(root: Path) -> Path:
    """A checkout of the repository's Pulumi.yaml and stacks/ with the three-account bootstrap stack file."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", root / "stacks")
    (root / "infra" / "bootstrap").mkdir(parents=True)
    shutil.copy(MULTI_ACCOUNT, root / "infra" / "bootstrap" / "Pulumi.bootstrap.yaml")
    return root


# The three-account fixture's stage accounts, and the stage-file settings that go with them.
ACCOUNTS = {"sandbox": "111111111111", "dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}


def with_source_roles(root: Path, project: str = "mlinfra") -> Path:
    """Give each stage file of `root` the settings the three-account bootstrap implies: its `mlinfra:accountId`;
    where the next stage is in another account, the source and approval roles it lends that stage
    (`access.sourceRoleArn`, `approvalRoleArn`) and that stage's promotion role as its registry's reader (S3's
    server-side copy reads the artifact with it)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    order = list(ACCOUNTS)
    for index, stage in enumerate(order):
        path = root / "stacks" / f"Pulumi.{stage}.yaml"
        data = yaml.load(path.read_text(encoding="utf-8"))
        config = data["config"]
        account = ACCOUNTS[stage]
        config["mlinfra:accountId"] = account
        following = order[index + 1] if index + 1 < len(order) else None
        if following and ACCOUNTS[following] != account:
            config["mlinfra:access"] = {
                "sourceRoleArn": f"arn:aws:iam::{account}:role/{project}-{stage}-source",
                "approvalRoleArn": f"arn:aws:iam::{account}:role/{project}-{stage}-approval",
            }
            registry = config.setdefault("mlinfra:registry", {})
            registry["readerRoleArns"] = [f"arn:aws:iam::{ACCOUNTS[following]}:role/{project}-{following}-promotion"]
        with path.open("w", encoding="utf-8") as out:
            yaml.dump(data, out)
    return root


@pytest.fixture(scope="session")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[stack.Bootstrap, RenderedStack]:
    """The bootstrap stack in three accounts, loaded and rendered under the mock runtime."""
    loaded = stack.load(Project(platform_copy(tmp_path_factory.mktemp("multi") / "platform")))
    return loaded, stack.render(loaded)


@pytest.fixture
def bootstrap_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch checkout: Pulumi.yaml, stacks/, the bootstrap stack file and the workflows; the working directory."""
    root = platform_copy(tmp_path / "platform")
    shutil.copytree(REPO / ".github" / "workflows", root / ".github" / "workflows")
    monkeypatch.chdir(root)
    for name in ("MLINFRA_STACK", "MLINFRA_PROJECT", "MLINFRA_LOCAL"):
        monkeypatch.delenv(name, raising=False)
    return root


class Standins:
    """Recording stand-ins for `gh` and `pulumi`, each in its own directory, and the calls they received."""

    def __init__(self, root: Path) -> None:
        self.log = root / "standin.log"
        self.base = without_pulumi_path()  # the machine's PATH, before any stand-in is put on it
        self.dirs = {}
        for tool in ("gh", "pulumi"):
            directory = root / f"standin-{tool}"
            directory.mkdir()
            path = directory / tool
            path.write_text(STANDIN.format(python=os.path.realpath(sys.executable)))
            path.chmod(path.stat().st_mode | stat.S_IEXEC)
            self.dirs[tool] = directory

    def path(self, *tools: str) -> str:
        """A PATH with the stand-ins of `tools` first and no real `pulumi` anywhere."""
        return os.pathsep.join([*(str(self.dirs[t]) for t in tools), self.base])

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        """The calls so far (of one tool, if given), in order."""
        found = [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []
        return [c for c in found if tool is None or c["tool"] == tool]


@pytest.fixture
def standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Standins:
    """Stand-ins for gh and pulumi; PATH holds gh's (never a pulumi: the engine is not on this machine)."""
    tools = Standins(tmp_path)
    monkeypatch.setenv("STANDIN_LOG", str(tools.log))
    monkeypatch.setenv("PATH", tools.path("gh"))
    return tools


def without_pulumi_path() -> str:
    """PATH without any directory holding a `pulumi` executable (the machine has none; this keeps it so)."""
    return os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "pulumi").exists()
    )


@pytest.fixture
def run() -> Callable[..., Result]:
    """Invoke `mlinfra ARGS...` in-process; stdout and stderr kept apart."""

    def _run(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return _run
