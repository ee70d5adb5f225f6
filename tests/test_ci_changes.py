""".ci/changes.py: whether a stage has changes, from `pulumi preview --json`, and never "no" on a bad plan."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "changes.py"


def module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_changes", SCRIPT)
    assert spec and spec.loader
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def run(tmp_path: Path, plan: object, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    path = tmp_path / "plan.json"
    path.write_text(plan if isinstance(plan, str) else json.dumps(plan))
    code = module().main([str(path), "--stage", "dev", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({"same": 12}, "changes=false\n"),
        ({"same": 10, "update": 1}, "changes=true\n"),
        ({"same": 0, "create": 3}, "changes=true\n"),
        ({"same": 9, "replace": 1, "delete": 0}, "changes=true\n"),
        ({}, "changes=false\n"),
    ],
)
def test_changes_from_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], summary: dict[str, int], expected: str
) -> None:
    code, out, _ = run(tmp_path, {"steps": [], "changeSummary": summary}, capsys=capsys)
    assert (code, out) == (0, expected)


def test_dispatch_always_applies_and_the_summary_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = tmp_path / "summary.md"
    code, out, _ = run(
        tmp_path,
        {"changeSummary": {"same": 4}},
        "--event",
        "workflow_dispatch",
        "--summary",
        str(summary),
        capsys=capsys,
    )
    assert (code, out) == (0, "changes=true\n")
    assert summary.read_text() == "- plan dev: 4 same (re-apply requested)\n"


@pytest.mark.parametrize("plan", ["", "not json", {"steps": []}, {"changeSummary": {"update": "x"}}])
def test_an_unreadable_plan_is_an_error_not_no_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], plan: object
) -> None:
    code, out, err = run(tmp_path, plan, capsys=capsys)
    assert code == 1
    assert out == ""
    assert err.startswith("error: ")
