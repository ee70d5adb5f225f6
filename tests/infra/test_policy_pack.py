"""The CrossGuard side of the policy pack: it imports, declares one policy per rule at the right enforcement level,
its callbacks call the same rule functions (invoked with pulumi_policy's own argument types), and the pack served by
`infra/policy/__main__.py` answers the engine's gRPC calls on loopback."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from mlinfra.stacks.files import load_stage
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import RenderedStack
from mlinfra_infra.policy import pack
from mlinfra_infra.policy.engine import RULES, Context, evaluate
from tests.infra.test_policy import MUTATIONS, _mutated
from tests.infra.test_program import STAGES, shipped

REPO = Path(__file__).resolve().parents[2]
PACK_DIR = REPO / "infra" / "policy"


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _urn(stage: str, type_token: str, name: str) -> str:
    return f"urn:pulumi:{stage}::mlinfra::{type_token}::{name}"


@pytest.fixture(scope="module")
def prod() -> RenderedStack:
    return shipped("prod")


def test_pack_declares_one_policy_per_rule_mandatory_by_default() -> None:
    policies = pack.policies()
    assert [p.name for p in policies] == [r.id for r in RULES]
    for policy, rule in zip(policies, RULES, strict=True):
        expected = StackValidationPolicy if rule.is_stack_rule else ResourceValidationPolicy
        assert isinstance(policy, expected)
        assert policy.enforcement_level == EnforcementLevel.MANDATORY
        for check in rule.checkov:
            assert check in policy.description


@pytest.mark.parametrize("stage", STAGES)
def test_pack_config_of_each_stage_matches_its_enforcement(stage: str) -> None:
    cfg = load_stage(Project(REPO), stage).config
    shipped_config = json.loads((PACK_DIR / "config" / f"{stage}.json").read_text())
    assert shipped_config == pack.pack_config(cfg.policy.enforcement)
    assert pack.context_for(stage) == Context.from_config(cfg)


def test_stage_comes_from_the_urn() -> None:
    assert pack.stage_of(_urn("prod", "aws:kms/key:Key", "registry-key")) == "prod"
    assert pack.stage_of("not-an-urn") == ""


@pytest.mark.parametrize("rule_id", [r.id for r in RULES if not r.is_stack_rule])
def test_resource_policies_call_the_rule_function(prod: RenderedStack, rule_id: str) -> None:
    stage, mutation = MUTATIONS[rule_id]
    stack = prod if stage == "prod" else shipped(stage)
    broken = _mutated(stack.resources, mutation)
    policy = next(p for p in pack.policies() if p.name == rule_id)
    rule = next(r for r in RULES if r.id == rule_id)
    ctx = pack.context_for(stage)
    reported: list[str] = []
    for resource in broken:
        args = ResourceValidationArgs(
            resource.type,
            copy.deepcopy(resource.inputs),
            _urn(stage, resource.type, resource.name),
            resource.name,
            _options(),
            None,
        )
        assert isinstance(policy, ResourceValidationPolicy)
        policy.validate(args, lambda message, urn=None: reported.append(message))
    expected = [v.message for v in evaluate(broken, ctx, [rule])]
    assert reported == expected
    assert reported  # the mutation breaks it


@pytest.mark.parametrize(
    "rule_id", [r.id for r in RULES if r.is_stack_rule and MUTATIONS[r.id][0] == "prod" and r.id != "stage-context"]
)
def test_stack_policies_call_the_rule_function(prod: RenderedStack, rule_id: str) -> None:
    broken = _mutated(prod.resources, MUTATIONS[rule_id][1])
    policy = next(p for p in pack.policies() if p.name == rule_id)
    rule = next(r for r in RULES if r.id == rule_id)
    resources: list[PolicyResource] = []
    by_name: dict[str, PolicyResource] = {}
    for r in broken:  # parents first (the render's tree order), as the engine hands them over
        parent = by_name.get(r.parent) if r.parent else None
        adapted = PolicyResource(
            r.type, copy.deepcopy(r.inputs), _urn("prod", r.type, r.name), r.name, _options(), None, parent, [], {}
        )
        by_name[r.name] = adapted
        resources.append(adapted)
    reported: list[tuple[str, str | None]] = []
    assert isinstance(policy, StackValidationPolicy)
    policy.validate(StackValidationArgs(resources), lambda message, urn=None: reported.append((message, urn)))
    expected = [f"{v.resource}: {v.message}" for v in evaluate(broken, pack.context_for("prod"), [rule])]
    assert [m for m, _ in reported] == expected
    assert reported and all(urn and urn.startswith("urn:pulumi:prod::") for _, urn in reported)
    clean = [replace(r) for r in prod.resources]
    assert evaluate(clean, pack.context_for("prod"), [rule]) == []


def test_main_serves_the_pack_over_grpc_on_loopback() -> None:
    import grpc
    from google.protobuf import empty_pb2, struct_pb2
    from pulumi.runtime import proto
    from pulumi.runtime.proto import analyzer_pb2_grpc

    server = subprocess.Popen(
        [sys.executable, str(PACK_DIR / "__main__.py")], cwd=PACK_DIR, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            assert info.name == "mlinfra"
            assert [p.name for p in info.policies] == [r.id for r in RULES]
            assert {p.enforcementLevel for p in info.policies} == {proto.MANDATORY}
            properties = struct_pb2.Struct()
            properties.update({"enableKeyRotation": False, "tags": {"managed-by": "mlinfra", "stage": "prod"}})
            request = proto.AnalyzeRequest(
                type="aws:kms/key:Key", properties=properties, urn=_urn("prod", "aws:kms/key:Key", "k"), name="k"
            )
            answer = stub.Analyze(request, timeout=30)
            found = {d.policyName: d.message for d in answer.diagnostics}
            assert "enableKeyRotation is not true" in found["kms-rotation"]
            assert "missing tags: owner" in found["tags-required"]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_pack_fails_closed_when_the_stage_context_cannot_load(prod: RenderedStack) -> None:
    # A stack whose stack file the pack cannot read (here: no such stage) is a mandatory violation that says why,
    # instead of the allow-list and protection rules passing on defaults.
    ctx = pack.context_for("nosuchstage")
    assert "nosuchstage" in ctx.error
    assert pack.context_for("").error  # a URN that names no stack
    policy = next(p for p in pack.policies() if p.name == "stage-context")
    resources = [
        PolicyResource(r.type, copy.deepcopy(r.inputs), _urn("nosuchstage", r.type, r.name), r.name, _options(), None,
                       None, [], {})
        for r in prod.resources[:3]
    ]  # fmt: skip
    reported: list[str] = []
    assert isinstance(policy, StackValidationPolicy)
    policy.validate(StackValidationArgs(resources), lambda message, urn=None: reported.append(message))
    assert len(reported) == 1 and "could not be loaded" in reported[0]
    assert pack.pack_config("advisory")["stage-context"] == "mandatory"
    assert pack.context_for("prod").error == ""
