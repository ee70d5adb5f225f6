"""What a new user meets: --stack everywhere, "did you mean", runnable Next: hints, JSON refusals, completion."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.cli.test_promotion import direct_delivery

Run = Callable[..., Result]
IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
MLINFRA = str(Path(sys.executable).parent / "mlinfra")


def ok(result: Result) -> Any:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    return json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else result.stdout


def test_a_mistyped_command_gets_a_suggestion(run: Run) -> None:
    result = run("promot", "churn")
    assert result.exit_code == 2
    assert "Error: No such command 'promot' (did you mean 'promote'?)." in result.stderr
    result = run("frobnicate")
    assert result.exit_code == 2
    assert "Error: No such command 'frobnicate'." in result.stderr


def test_stack_is_required_where_the_stage_was(project_dir: Path, run: Run) -> None:
    result = run("approve", "churn", "--version", "1", "--reason", "r")
    assert result.exit_code == 2
    assert "Error: Missing option '--stack' / '-s'." in result.stderr


def test_stack_show_takes_stack_or_the_older_argument(project_dir: Path, run: Run) -> None:
    assert ok(run("stack", "show", "--stack", "dev", "--json"))["stage"] == "dev"
    assert ok(run("stack", "show", "dev", "--json"))["stage"] == "dev"
    result = run("stack", "show", "dev", "--stack", "prod")
    assert result.exit_code == 2
    assert "STAGE dev and --stack prod disagree" in result.stderr


@pytest.fixture
def registered(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> Result:
    direct_delivery(project_dir)  # staging pins at once, so prod's gates are what refuses
    ok(run("local", "bootstrap", "--all", "--json"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.bin").write_text("w")
    return run("register", str(model), "-m", "churn", "--image", IMAGE, "--git-sha", "abc")


def test_next_hints_run_as_printed_in_local_mode(registered: Result, run: Run) -> None:
    assert ok(registered).splitlines()[-1] == "Next: mlinfra --local promote churn --version 1 --to dev"
    out = ok(run("promote", "churn", "--version", "1", "--to", "dev", "--reason", "r"))
    assert out.splitlines()[-1] == "Next: mlinfra --local record-deployment --stack dev  # stands in for CI's apply"
    # ... and the printed command does run (here in-process; --local is the group option).
    recorded = ok(run("--local", "record-deployment", "--stack", "dev"))
    assert recorded.startswith("churn: dev runs v1")


def test_a_refusal_with_json_prints_every_failing_gate(registered: Result, run: Run) -> None:
    ok(registered)
    ok(run("promote", "churn", "--to", "dev", "--reason", "r", "--json"))
    ok(run("promote", "churn", "--to", "staging", "--reason", "r", "--json"))
    result = run("promote", "churn", "--to", "prod", "--json")
    assert result.exit_code == 3
    refusal = json.loads(result.stdout)
    assert refusal["refused"] is True and refusal["exitCode"] == 3
    assert refusal["error"].startswith("churn v1 may not enter prod (2 gate(s) failed)")
    assert {gate["gate"] for gate in refusal["failed"]} == {"approval", "soak"}
    assert all(gate["passed"] is False and gate["reason"] for gate in refusal["failed"])
    assert result.stderr.startswith("error: churn v1 may not enter prod")
    # Without --json, nothing on stdout.
    assert run("promote", "churn", "--to", "prod").stdout == ""


def complete(project_dir: Path, words: str) -> list[str]:
    """What bash completion offers for the last word of `words` (click's completion protocol)."""
    cword = str(len(words.split()) - 1)
    env = {**os.environ, "_MLINFRA_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword}
    out = subprocess.run([MLINFRA], env=env, cwd=project_dir, capture_output=True, text=True, check=True).stdout
    return [line.split(",", 1)[1] for line in out.splitlines() if line.startswith("plain,")]


def test_shell_completion_offers_stage_and_model_names(project_dir: Path) -> None:
    assert complete(project_dir, "mlinfra status --stack s") == ["sandbox", "staging"]
    assert complete(project_dir, "mlinfra history churn --stack p") == ["prod"]
    assert complete(project_dir, "mlinfra versions c") == ["churn"]
    assert complete(project_dir, "mlinfra register model -m c") == ["churn"]
    assert complete(project_dir, "mlinfra serve churn --capture-stage d") == ["dev"]


def test_vertical_lines_wrap_values_under_themselves_and_cut_nothing() -> None:
    from mlinfra.options import vertical_lines

    digest = "sha256:" + "ab" * 32
    lines = vertical_lines(["VERSION", "DIGEST"], [["v1", digest], ["v2", "short"]], 40)
    assert lines[0] == "VERSION  v1"
    assert lines[1].startswith("DIGEST   sha256:") and all(len(line) <= 40 for line in lines)
    assert "".join(line[9:] for line in lines[1:4] if line.startswith(("DIGEST", " "))) == digest
    assert lines[lines.index("") + 1 :] == ["VERSION  v2", "DIGEST   short"]


def _in_terminal(tmp_path: Path, rows: list[tuple[str, str, str]], columns: int) -> tuple[list[str], list[str]]:
    script = tmp_path / "table.py"
    script.write_text(
        "from rich.table import Table\n"
        "from mlinfra.options import console\n"
        "t = Table(box=None, pad_edge=False)\n"
        "for c in ('STAGE', 'MODEL', 'NOTES'):\n"
        "    t.add_column(c)\n" + "".join(f"t.add_row{row!r}\n" for row in rows) + "console().print(t)\n"
    )
    command = f"{sys.executable} {script}"
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "xterm"}
    # `script` gives the program a terminal, as a user's shell would.
    run_in_terminal = ["script", "-qc", command, "/dev/null"]
    out = subprocess.run(run_in_terminal, env=env, capture_output=True, text=True, check=True).stdout
    lines = [line.rstrip() for line in out.replace("\r", "").splitlines()]
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
    return lines, plain


def test_a_table_that_does_not_fit_goes_vertical_and_cuts_nothing(tmp_path: Path) -> None:
    note = "pinned v7, live nothing: apply pending; ALARM: a-very-long-alarm-name"
    lines, plain = _in_terminal(tmp_path, [("staging", "churn", note), ("prod", "churn", "ok")], 50)
    assert plain[:2] == ["STAGE  staging", "MODEL  churn"]
    assert " ".join(line[7:] for line in plain[2:4]) == note  # wrapped under itself, whole
    assert plain[4] == "" and plain[5:8] == ["STAGE  prod", "MODEL  churn", "NOTES  ok"]
    assert all(len(line) <= 50 for line in plain)
    assert "…" not in "".join(plain)
    _lines, fits_plain = _in_terminal(tmp_path, [("prod", "churn", "ok")], 80)
    assert fits_plain[0].split() == ["STAGE", "MODEL", "NOTES"]  # a table that fits stays a table
    assert not any("\x1b[3" in line for line in lines), "NO_COLOR: no colour escapes"
