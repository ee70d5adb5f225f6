"""The stage stacks' side of the boundary: every role they create carries the stage's workload boundary, and the
boundary leaves every action those roles are granted."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest

from mlinfra.stacks.files import raw_config
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import RenderedStack, render
from mlinfra_infra.bootstrap.boundaries import WORKLOAD_SERVICES
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


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_identity_lives_under_the_stage_path(stacks: dict[str, RenderedStack], stage: str) -> None:
    """The deploy role may change only identities under `/<project>/<stage>/`: every role, managed policy and
    instance profile the stage's stack creates is there (and its ARN says so)."""
    kinds = ("aws:iam/role:Role", "aws:iam/policy:Policy", "aws:iam/instanceProfile:InstanceProfile")
    identities = [r for kind in kinds for r in stacks[stage].of_type(kind)]
    assert identities
    for identity in identities:
        assert identity.inputs["path"] == f"/mlinfra/{stage}/", identity.name


def test_the_workload_boundary_refuses_pulumi_state_and_secrets(shipped_boundaries: dict[str, Any]) -> None:
    """A role the deploy role creates (under the workload boundary) can never read or write Pulumi's state or a
    stack's secrets key, though the boundary allows s3:* and KMS use elsewhere."""
    from mlinfra_infra.bootstrap import names
    from mlinfra_infra.policy import iam

    boundary = shipped_boundaries["dev"]
    anything = [{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}]
    state = names.state_bucket("mlinfra", "111111111111", "eu-west-1")
    role = "arn:aws:iam::111111111111:role/mlinfra/dev/churn-endpoint-role-0a1b2c3"

    def decide(action: str, resource: str, context: dict[str, Any] | None = None) -> iam.Decision:
        request = iam.Request(action, resource, context or {})
        return iam.evaluate(request, anything, [], role, boundary_policies=[boundary])

    assert not decide("s3:GetObject", f"arn:aws:s3:::{state}/.pulumi/stacks/mlinfra/prod.json").allowed
    assert not decide("s3:PutObject", f"arn:aws:s3:::{state}/.pulumi/stacks/mlinfra/dev.json").allowed
    key = "arn:aws:kms:eu-west-1:111111111111:key/00000000-0000-4000-8000-000000000002"
    assert not decide("kms:Decrypt", key, {"kms:ResourceAliases": ["alias/mlinfra-prod-pulumi-secrets"]}).allowed
    assert not decide("kms:Decrypt", key, {"kms:ResourceAliases": [names.state_key_alias("mlinfra")]}).allowed
    # What the workloads use stays allowed: the stage's own registry and its key.
    assert decide("s3:GetObject", "arn:aws:s3:::mlinfra-dev-111111111111-eu-west-1/models/churn/x").allowed
    assert decide("kms:Decrypt", key, {"kms:ResourceAliases": ["alias/mlinfra-dev-registry"]}).allowed


@pytest.fixture(scope="module")
def shipped_boundaries() -> dict[str, Any]:
    from mlinfra.bootstrap import stack

    rendered = stack.render(stack.load(REPO))
    return {stage: json.loads(rendered.named(f"{stage}-ci-workload-boundary").inputs["policy"]) for stage in STAGES}


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
