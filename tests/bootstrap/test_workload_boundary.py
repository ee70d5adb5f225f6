"""The stage stacks' side of the boundary: every role they create carries the stage's workload boundary, and the
boundary leaves every action those roles are granted."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest

from mlinfra.stacks.files import raw_config
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import RenderedStack, render
from mlinfra_infra.bootstrap.deploy import WORKLOAD_SERVICES
from tests.builders import merge, pin

REPO = Project(Path(__file__).resolve().parents[2])
STAGES = ("sandbox", "dev", "staging", "prod")


@pytest.fixture(scope="module")
def stacks() -> dict[str, RenderedStack]:
    out = {}
    for stage in STAGES:
        raw = merge(raw_config(REPO, stage), {"mlinfra:models": {"churn": {"pinned": pin(stage=stage)}}})
        out[stage] = render(raw, project=REPO.name, stage=stage, source=f"stacks/Pulumi.{stage}.yaml")
    return out


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_role_carries_the_workload_boundary(stacks: dict[str, RenderedStack], stage: str) -> None:
    roles = stacks[stage].of_type("aws:iam/role:Role")
    assert roles
    for role in roles:
        assert role.inputs["permissionsBoundary"] == (
            f"arn:aws:iam::123456789012:policy/mlinfra-{stage}-workload-boundary"
        ), role.name


def test_the_boundary_leaves_every_action_the_stage_roles_are_granted(stacks: dict[str, RenderedStack]) -> None:
    granted: set[str] = set()
    for rendered in stacks.values():
        for policy in rendered.of_type("aws:iam/rolePolicy:RolePolicy"):
            for statement in json.loads(policy.inputs["policy"])["Statement"]:
                if statement["Effect"] == "Allow":
                    actions = statement["Action"]
                    granted.update([actions] if isinstance(actions, str) else actions)
    assert len(granted) > 20
    outside = sorted(
        a for a in granted if not any(fnmatch.fnmatchcase(a.lower(), w.lower()) for w in WORKLOAD_SERVICES)
    )
    assert outside == [], "the workload boundary would take these from the stage's own roles"
