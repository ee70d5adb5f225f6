"""Re-runs that converge (registry hardening, round two): a rollback or a register cut off after any request.

A cut is what a dropped network does: the request in flight reaches the registry, its answer is lost, and every
later request fails before it is sent. The re-run of the same command must finish what the first run committed and
never act twice: a rollback re-run says it is already done, a register re-run writes the audit record and the entry
stage's pointer that the first run did not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError
from click.testing import Result

from mlinfra import aws as mlinfra_aws
from mlinfra.stacks.edit import read_pin
from mlinfra.stacks.project import Project
from mlinfra_infra import layout
from tests.cli.test_promotion import bucket, ok, read_json, register, s3

Run = Callable[..., Result]


class Cut:
    """The connection drops after the `at`-th AWS request has been applied: its answer and every later request fail."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.calls = 0
        self.fired: str | None = None

    def install(self, session: Any) -> None:
        session.events.register("before-call", self.before_call)
        session.events.register("after-call", self.after_call)

    def before_call(self, **_: Any) -> None:
        if self.fired is not None:
            raise EndpointConnectionError(endpoint_url="http://emulator")

    def after_call(self, model: Any, **_: Any) -> None:
        self.calls += 1
        if self.calls == self.at:
            self.fired = model.name
            raise ConnectionClosedError(endpoint_url="http://emulator")


@pytest.fixture
def hooks() -> Iterator[list[Any]]:
    saved = list(mlinfra_aws.SESSION_HOOKS)
    yield mlinfra_aws.SESSION_HOOKS
    mlinfra_aws.SESSION_HOOKS[:] = saved


def cut_run(hooks: list[Any], run: Run, at: int, *args: str) -> tuple[Result, Cut]:
    cut = Cut(at)
    hooks.append(cut.install)
    try:
        return run(*args), cut
    finally:
        hooks.remove(cut.install)


def one_line_failure(result: Result) -> None:
    assert result.exit_code == 1, f"exit {result.exit_code}: {result.output}"
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


# --- 1. a rollback re-run says it is already done -----------------------------------------------------------------


@pytest.fixture
def on_v2(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> Path:
    """churn v1 then v2 promoted to dev."""
    ok(run("local", "bootstrap", "--all", "--json"))
    register(run, tmp_path, "weights-1")
    register(run, tmp_path, "weights-2")
    ok(run("promote", "churn", "--to", "dev", "--version", "1", "--reason", "first"))
    ok(run("promote", "churn", "--to", "dev", "--version", "2", "--reason", "second"))
    return project_dir


def rollbacks_since_last_promote(run: Run) -> list[dict[str, Any]]:
    trail = ok(run("history", "churn", "--stage", "dev", "--json"))
    out = []
    for record in trail:  # newest first
        if record["action"] == "promote":
            break
        if record["action"] == "rollback":
            out.append(record)
    return out


def test_rollback_run_twice_says_it_is_already_done(on_v2: Path, run: Run) -> None:
    rollback = ("rollback", "churn", "--stage", "dev", "--reason", "v2 is bad")
    assert "v1 pinned in dev (was v2)" in ok(run(*rollback))
    again = ok(run(*rollback))
    assert "already done" in again and "v1 pinned in dev" in again, again
    assert read_json("dev", layout.stage_key("churn"))["version"] == 1
    assert len(rollbacks_since_last_promote(run)) == 1
    # A rollback asked for again with another reason is a new request: it returns to the version before (v2).
    assert "v2 pinned in dev (was v1)" in ok(run("rollback", "churn", "--stage", "dev", "--reason", "v1 is worse"))


def test_rollback_cut_after_each_request_converges_on_rerun(on_v2: Path, run: Run, hooks: list[Any]) -> None:
    at = 0
    committed = 0
    while True:
        at += 1
        reason = f"bad v2 ({at})"
        rollback = ("rollback", "churn", "--stage", "dev", "--reason", reason)
        first, cut = cut_run(hooks, run, at, *rollback)
        if cut.fired is None:
            ok(first)
            break
        if first.exit_code != 0:
            one_line_failure(first)
        moved = read_json("dev", layout.stage_key("churn"))["version"] == 1
        committed += moved
        again = run(*rollback)
        assert again.exit_code == 0, f"cut after request {at} ({cut.fired}): {again.output}"
        if moved:
            assert "already done" in again.stdout, f"cut after request {at} ({cut.fired}): {again.stdout}"
        pointer = read_json("dev", layout.stage_key("churn"))
        pin = read_pin(Project(on_v2), "dev", "churn")
        assert pointer["version"] == 1 and pin is not None and pin["version"] == 1, (at, cut.fired, pointer, pin)
        done = rollbacks_since_last_promote(run)
        assert [r["reason"] for r in done] == [reason], (at, cut.fired, done)
        ok(run("promote", "churn", "--to", "dev", "--version", "2", "--reason", f"again {at}"))
    assert at > 5 and committed >= 2, (at, committed)


# --- 2. a register re-run finishes the commit ----------------------------------------------------------------------


def test_register_cut_after_each_request_finishes_on_rerun(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path, hooks: list[Any]
) -> None:
    ok(run("local", "bootstrap", "--all", "--json"))
    at = 0
    while True:
        at += 1
        source = tmp_path / f"src-{at}"
        first, cut = cut_run(hooks, run, at, *register_args(source, f"weights-{at}"))
        if cut.fired is None:
            ok(first)
            break
        if first.exit_code != 0:
            one_line_failure(first)
        out = ok(run(*register_args(source, f"weights-{at}"), "--json"))
        version = out["version"]
        pointer = read_json("sandbox", layout.stage_key("churn"))
        assert pointer["version"] == version, (at, cut.fired, pointer)
        trail = ok(run("history", "churn", "--stage", "sandbox", "--json"))
        registered = [r for r in trail if r["action"] == "register" and r["version"] == version]
        assert len(registered) == 1, (at, cut.fired, trail)
        keys = [o["Key"] for o in s3().list_objects_v2(Bucket=bucket("sandbox"), Prefix="audit/").get("Contents", [])]
        assert any(k.endswith(f"-{version}.json") for k in keys), (at, cut.fired, keys)
    assert at > 10, at
    # What the re-runs finished is promotable.
    ok(run("promote", "churn", "--to", "dev", "--reason", "after the cuts"))


def register_args(source: Path, content: str) -> tuple[str, ...]:
    from tests.cli.test_promotion import IMAGE, make_model

    model = make_model(source, content)
    return ("register", str(model), "--model", "churn", "--image", IMAGE)
