"""The analyst's first hour, measured: docs/analyst.md run command by command from a fresh folder.

A newcomer starts in an empty folder next to their notebook, with nothing but the README and docs/analyst.md. The
first thing they try is what the README's table lists (`mlinfra status`), before pointing mlinfra at the platform
clone: that fails, and its message must name MLINFRA_PROJECT. Then every block of docs/analyst.md runs in page order
(shell commands one by one, each Python block as one notebook session), and the test counts the commands that fail:
at most one before the first register, none after. Each `Next:` hint printed on the way is checked to be runnable
as printed (local mode's `--local`, a known stack). The time from `import mlinfra` to the first served prediction
(register, which declares the model, uploads and records it; serve, which fetches and loads it; one request) must
be under 10 s; it is printed.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlinfra.main import cli
from tests.docs_blocks import blocks, mlinfra_arguments
from tests.test_docs import page_environment, scratch_project

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "analyst.md"
FIRST_PREDICTION_SECONDS = 10.0
_NEXT = re.compile(r"^Next: (mlinfra .*)$", re.MULTILINE)


# Runs a notebook cell and prints how long it took from `import mlinfra` to the first answer of /invocations: an audit
# hook sees the import, and urllib's urlopen (which the served endpoint's predict() calls) is wrapped to see the answer.
CELL = """
import sys, time, urllib.request
_marks = {}
def _hook(event, args):
    if event == "import" and args[0] == "mlinfra" and "import" not in _marks:
        _marks["import"] = time.perf_counter()
sys.addaudithook(_hook)
_urlopen = urllib.request.urlopen
def _timed(request, *args, **kwargs):
    answer = _urlopen(request, *args, **kwargs)
    if "/invocations" in getattr(request, "full_url", str(request)) and "answer" not in _marks:
        _marks["answer"] = time.perf_counter()
    return answer
urllib.request.urlopen = _timed
exec(compile(sys.stdin.read(), "<notebook cell>", "exec"), {"__name__": "__main__"})
if "import" in _marks and "answer" in _marks:
    print(f"MLINFRA_FIRST_PREDICTION {_marks['answer'] - _marks['import']:.3f}")
"""
_TIMING = re.compile(r"^MLINFRA_FIRST_PREDICTION (\S+)$", re.MULTILINE)


class Journey:
    """Runs commands the way a person at a shell would, with `export` and `cd` carried over; counts failures."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.failed: list[str] = []
        self.registered = False
        self.failed_before_register = 0
        self.log: list[str] = []
        self.hints: list[str] = []

    def shell(self, command: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        if command.startswith("export "):
            for assignment in shlex.split(command[len("export ") :], comments=True):
                name, _, value = assignment.partition("=")
                self.env[name] = self.env["HOME"] + value[1:] if value.startswith("~") else value
            return subprocess.CompletedProcess(command, 0, "", "")
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        self._count(command, done, expect)
        return done

    def python(self, code: str) -> tuple[subprocess.CompletedProcess[str], float | None]:
        """Run a notebook cell; its time from `import mlinfra` to the first served prediction, if it made one."""
        done = subprocess.run(
            [sys.executable, "-c", CELL], input=code, cwd=self.cwd, env=self.env, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        self._count("python: " + code.strip().splitlines()[0], done, 0)
        if "mlinfra.register(" in code and done.returncode == 0:
            self.registered = True
        timing = _TIMING.search(done.stdout)
        return done, float(timing.group(1)) if timing else None

    def _count(self, command: str, done: subprocess.CompletedProcess[str], expect: int) -> None:
        self.log.append(f"$ {command}  -> exit {done.returncode}\n{done.stdout}{done.stderr}")
        self.hints += _NEXT.findall(done.stdout)
        if done.returncode != expect:
            self.failed.append(f"{command} (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-400:]}")
            if not self.registered:
                self.failed_before_register += 1
        if re.match(r"(\S+=\S+ )*mlinfra .*\bregister\b", command) and done.returncode == 0:
            self.registered = True


@pytest.mark.emulator
def test_the_analyst_journey(aws_env: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    scratch_project(home)
    notebook = home / "notebooks" / "cancer"
    notebook.mkdir(parents=True)
    journey = Journey(notebook, page_environment(home, aws_env))

    # The newcomer's first try, before reading the set-up section: one failure, which names the way out.
    first = journey.shell("mlinfra status")
    assert first.returncode == 2
    assert "MLINFRA_PROJECT" in first.stderr and "--project" in first.stderr

    timings: list[float | None] = []
    for block in blocks(PAGE):
        if block.skip_reason is not None:
            continue
        if block.lang == "python":
            done, elapsed = journey.python(block.text)
            timings.append(elapsed)
            assert done.returncode == 0, f"{block.where()}:\n{done.stderr[-3000:]}"
            continue
        for command in block.commands():
            journey.shell(command, expect=block.exit_code)

    transcript = "\n".join(journey.log)
    assert journey.failed_before_register <= 1, transcript
    after = journey.failed[journey.failed_before_register :]
    assert not after, "failed after the first register:\n" + "\n".join(after)
    # The shifted batch moves the model's answers too: the register stored its prediction baseline, serve captured
    # the answers, and the drift verdict says so (as the page promises).
    assert "Predictions drifted: share of class 1 " in " ".join(transcript.split()), transcript
    # prod's refusal names the approval to run, for the right version and stage, runnable as printed.
    assert '`mlinfra --local approve cancer --version 1 --stack prod --reason "..."`' in transcript
    first_prediction = next(t for t in timings if t is not None)
    print(f"\nfrom `import mlinfra` to the first served prediction: {first_prediction:.2f} s")
    print(f"failed commands: {journey.failed_before_register} before the first register, {len(after)} after")
    assert first_prediction < FIRST_PREDICTION_SECONDS, transcript

    # Every `Next:` hint printed on the way runs as printed: local mode's flag, commands and options that exist.
    assert journey.hints, "no command printed a Next: hint"
    for hint in journey.hints:
        arguments = mlinfra_arguments(hint)
        assert arguments is not None and arguments[0] in {"--local", "local"}, f"hint not in local mode: {hint}"
        parsed = CliRunner().invoke(cli, [*arguments, "--help"])
        assert parsed.exit_code == 0, f"hint does not parse: {hint}: {parsed.output}"
