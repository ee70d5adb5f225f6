"""docs/bootstrap.md, run: every command on the page, mlinfra's for real, pulumi's and gh's against stand-ins."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from mlinfra.bootstrap import stack
from mlinfra.stacks.render import RenderedStack
from mlinfra.stacks.yamlio import read_yaml
from tests.bootstrap.conftest import REPO, Standins

Run = Callable[..., Result]
Shipped = tuple[stack.Bootstrap, RenderedStack]
DOC = REPO / "docs" / "bootstrap.md"
NEEDS_PULUMI = "the pulumi CLI is not installed"


def commands() -> list[str]:
    """The commands of the page's sh blocks, in order."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_page_walks_the_whole_path() -> None:
    found = commands()
    order = [
        "mlinfra bootstrap preview",
        "mlinfra bootstrap up",
        "mlinfra bootstrap github --apply",
        "pulumi stack init sandbox",
        "mlinfra up --stack sandbox",
        "gh workflow run promote.yml",
    ]
    positions = [next(i for i, c in enumerate(found) if c.startswith(step)) for step in order]
    assert positions == sorted(positions), found
    assert all(c.split()[0] in {"mlinfra", "pulumi", "gh"} for c in found), found


def test_every_command_on_the_page_runs(
    bootstrap_project: Path, run: Run, standins: Standins, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = json.loads(run("bootstrap", "preview", "--json").stdout)["outputs"]
    for line in commands():
        argv = shlex.split(line)
        tool, args = argv[0], argv[1:]
        if tool == "mlinfra":
            result = run(*args)
            if args[:2] in (["bootstrap", "up"], ["up", "--stack"]):
                # Needs the Pulumi engine and AWS: here it must stop with its one-line error, having checked config.
                assert result.exit_code == 1, (line, result.stderr)
                assert result.stderr.startswith(f"error: {NEEDS_PULUMI}"), (line, result.stderr)
                assert result.stderr.count("\n") == 1
            else:
                assert result.exit_code == 0, (line, result.stderr)
            continue
        monkeypatch.setenv("PATH", standins.path("gh", "pulumi"))
        done = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
        monkeypatch.setenv("PATH", standins.path("gh"))
        assert done.returncode == 0, (line, done.stderr)
        assert standins.calls(tool)[-1]["args"] == args
        if tool == "pulumi" and args[0] == "login" and args[1] != "--local":
            assert args[1] == outputs["stateBackendUrl"], "the page's backend URL is the stack's output"
        if tool == "pulumi" and args[:2] == ["stack", "init"]:
            stage = args[2]
            assert args[args.index("--secrets-provider") + 1] == outputs["secretsProviders"][stage]
        if tool == "gh" and args[:2] == ["workflow", "run"]:
            _check_dispatch(args)
    applied = [c["args"] for c in standins.calls("gh") if c["args"][:2] == ["variable", "set"]]
    assert applied, "the page's `mlinfra bootstrap github --apply` set the variables with gh"


def _check_dispatch(args: list[str]) -> None:
    """A `gh workflow run` line gives exactly the workflow's inputs, the required ones, with allowed values."""
    workflow = read_yaml(REPO / ".github" / "workflows" / args[2])
    inputs = (workflow.get("on") or workflow.get(True))["workflow_dispatch"]["inputs"]
    given = dict(value.split("=", 1) for flag, value in zip(args[3::2], args[4::2], strict=True) if flag == "-f")
    assert set(given) <= set(inputs)
    assert {name for name, spec in inputs.items() if spec.get("required")} <= set(given)
    for name, value in given.items():
        options = inputs[name].get("options")
        assert options is None or value in options, (name, value, options)


def test_the_cross_account_page_names_a_resource_the_stack_renders(shipped: Shipped) -> None:
    text = (REPO / "docs" / "cross-account.md").read_text(encoding="utf-8")
    assert "```json" not in text, "the promotion role's policy is the stack's, not a copy"
    [name] = re.findall(r'select\(\.name == "([^"]+)"\)', text)
    policy = json.loads(shipped[1].named(name).inputs["policy"])
    sids = {statement["Sid"] for statement in policy["Statement"]}
    # prod's source (staging) is in another account: the copy's read, and the source roles for the rest.
    assert {"SourceRegistryCopyModels", "SourceRegistryKeyThroughS3", "AssumeSourceStageRoles"} <= sids
    assert "OwnRegistrySwapPointer" in sids and "SourceStageAlarmStates" not in sids


def test_no_hand_copied_trust_policy_is_left_in_the_readme() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "sts:AssumeRoleWithWebIdentity" not in text
    assert "docs/bootstrap.md" in text
