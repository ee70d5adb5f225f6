"""The GitHub workflows: CI runs the README's test command; stacks use OIDC, never static AWS keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

WORKFLOWS = Path(__file__).resolve().parents[1] / ".github" / "workflows"


def load(name: str) -> dict[str, Any]:
    return YAML(typ="safe").load((WORKFLOWS / name).read_text())


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return list(workflow["jobs"][job]["steps"])


def test_ci_runs_exactly_the_ci_script() -> None:
    ci = load("ci.yml")
    assert [s.get("run") for s in steps(ci, "test") if "run" in s] == ["bash .ci/run"]


def test_no_static_aws_keys_anywhere() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        text = path.read_text()
        for forbidden in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "aws-access-key-id", "aws-secret-access-key"):
            assert forbidden not in text, f"{path.name} mentions {forbidden}"


def test_stacks_assume_a_role_per_stage_through_oidc() -> None:
    stacks = load("stacks.yml")
    assert stacks["permissions"]["id-token"] == "write"
    for job in ("preview", "apply"):
        credentials = [s for s in steps(stacks, job) if str(s.get("uses", "")).startswith("aws-actions/configure-aws")]
        assert len(credentials) == 1, job
        assert "role-to-assume" in credentials[0]["with"], job
    assert stacks["jobs"]["preview"]["strategy"]["matrix"]["stage"] == ["sandbox", "dev", "staging", "prod"]
    # Applies go one stage at a time, each behind its GitHub environment (prod's reviewers approve).
    assert stacks["jobs"]["apply"]["strategy"]["max-parallel"] == 1
    assert stacks["jobs"]["apply"]["environment"] == "${{ matrix.stage }}"


def test_pull_requests_render_offline_before_pulumi_preview() -> None:
    runs = [s.get("run", "") for s in steps(load("stacks.yml"), "preview")]
    assert ".venv/bin/mlinfra preview --stack ${{ matrix.stage }}" in runs
