"""The access contract against every shipped stack's rendered policies: each principal's calls are allowed.

The contract (infra/policy/access-contract.json) is what the code does, recorded from the emulator suites; this test
evaluates it with AWS's rules (mlinfra_infra.policy.iam) against the identity, bucket and key policies the program
renders, including S3's 403 for a missing key without s3:ListBucket, and shows the check catches the drift job's old
role (ListBucket only under the capture prefixes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlinfra.stacks.files import raw_config
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import RenderedResource, RenderedStack, render
from mlinfra_infra.policy import rules  # noqa: F401 - registers the rules
from mlinfra_infra.policy.accesscheck import evaluate_stack
from mlinfra_infra.policy.contract import Call, load
from mlinfra_infra.policy.engine import RULES, Context, evaluate, pack_config
from tests.builders import merge, pin

REPO = Project(Path(__file__).resolve().parents[2])
STAGES = ("sandbox", "dev", "staging", "prod")


def rendered(stage: str) -> RenderedStack:
    raw = merge(raw_config(REPO, stage), {"mlinfra:models": {"churn": {"pinned": pin(stage=stage)}}})
    return render(raw, project=REPO.name, stage=stage, source=f"stacks/Pulumi.{stage}.yaml")


@pytest.fixture(scope="module")
def stacks() -> dict[str, RenderedStack]:
    return {stage: rendered(stage) for stage in STAGES}


@pytest.mark.parametrize("stage", STAGES)
def test_every_call_of_every_principal_is_allowed(stacks: dict[str, RenderedStack], stage: str) -> None:
    access = evaluate_stack(stacks[stage].resources, Context(stage=stage))
    denied = [f"{r.principal}: {r.action} {r.resource} {r.context} -> {r.decision.reason}" for r in access.denied]
    assert denied == []
    assert access.results, f"{stage}: no call evaluated"
    for result in access.results:
        assert result.decision.decided_by, f"{result.action} allowed without a deciding statement"


def test_the_principals_each_stage_declares(stacks: dict[str, RenderedStack]) -> None:
    def principals(stage: str) -> set[str]:
        return {r.principal for r in evaluate_stack(stacks[stage].resources, Context(stage=stage)).results}

    assert {"sandbox-vm", "analyst"} <= principals("sandbox")
    assert {"drift-job", "scheduler", "endpoint"} <= principals("prod")
    assert "endpoint" in principals("dev")


def _narrow_drift_listing(stack: RenderedStack) -> list[RenderedResource]:
    """The drift job's role as it was: s3:ListBucket only under the capture prefixes."""
    out = []
    for resource in stack.resources:
        if not resource.name.endswith("drift-job-role-policy"):
            out.append(resource)
            continue
        doc = json.loads(resource.inputs["policy"])
        for statement in doc["Statement"]:
            if statement["Action"] == ["s3:ListBucket"]:
                statement["Condition"] = {"StringLike": {"s3:prefix": ["capture/churn/*"]}}
        inputs = {**resource.inputs, "policy": json.dumps(doc)}
        out.append(RenderedResource(resource.type, resource.name, resource.parent, inputs, True))
    return out


def test_the_old_drift_role_is_denied_the_missing_checkpoint(stacks: dict[str, RenderedStack]) -> None:
    resources = _narrow_drift_listing(stacks["prod"])
    denied = evaluate_stack(resources, Context(stage="prod")).denied
    checkpoint = [r for r in denied if r.principal == "drift-job" and "checkpoint.json" in str(r.context)]
    assert checkpoint, [f"{r.action} {r.context}" for r in denied]
    assert checkpoint[0].action == "s3:ListBucket"
    assert "403" in checkpoint[0].why
    # The same finding through the policy pack's rule, mandatory even in a stage whose pack is advisory.
    violations = evaluate(resources, Context(stage="prod", enforcement="advisory"))
    found = [v for v in violations if v.rule == "access-contract"]
    assert found and all(v.level == "mandatory" for v in found)
    assert any("monitoring/churn/checkpoint.json" in v.message for v in found)


def test_a_bucket_policy_deny_decides(stacks: dict[str, RenderedStack]) -> None:
    # An upload naming another key is refused by the registry's bucket policy, whatever the role allows.
    from mlinfra_infra.policy.contract import Contract, Principal

    odd = Call(
        "drift-job",
        "s3:PutObject",
        "arn:aws:s3:::{bucket}/monitoring/{model}/checkpoint.json",
        (("s3:if-none-match", "*"), ("s3:x-amz-server-side-encryption", "aws:kms"),
         ("s3:x-amz-server-side-encryption-aws-kms-key-id", "arn:aws:kms:eu-west-1:123456789012:key/other")),
    )  # fmt: skip
    contract = Contract({"drift-job": Principal("drift-job", "", ("drift-job",))}, [odd])
    denied = evaluate_stack(stacks["prod"].resources, Context(stage="prod"), contract).denied
    assert [r.action for r in denied] == ["s3:PutObject"]
    assert denied[0].decision.outcome == "explicit-deny"
    assert "DenyOtherKmsKeys" in denied[0].decision.decided_by


def test_the_contract_names_a_principal_for_every_recorded_caller() -> None:
    contract = load()
    callers = {c.caller for c in contract.calls}
    assert callers <= contract.known_callers() | set(contract.ignored_callers)
    assert {"drift-job", "mlinfra promote", "mlinfra register"} <= callers


def test_the_access_rule_is_mandatory_in_every_packs_config() -> None:
    rule = next(r for r in RULES if r.id == "access-contract")
    assert rule.level == "mandatory"
    for stage in STAGES:
        config = json.loads((REPO.root / "infra" / "policy" / "config" / f"{stage}.json").read_text())
        assert config == pack_config(config["all"])
        assert config["access-contract"] == "mandatory"


def test_ci_roles_are_evaluated_where_a_stack_declares_them(stacks: dict[str, RenderedStack]) -> None:
    # The bootstrap stack declares CI's roles by name; rendered together with the stage they are checked like the rest.
    bucket = "arn:aws:s3:::mlinfra-prod-123456789012-eu-west-1"
    role = RenderedResource("aws:iam/role:Role", "prod-deploy", None, {"name": "mlinfra-prod-deploy"}, True)
    grants = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Pointers", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
             "Resource": [f"{bucket}/stages/*", f"{bucket}/audit/*"]},
        ],
    }  # fmt: skip
    inline = RenderedResource(
        "aws:iam/rolePolicy:RolePolicy",
        "prod-deploy-policy",
        None,
        {"role": "mlinfra-prod-deploy", "policy": json.dumps(grants)},
        True,
    )
    access = evaluate_stack([*stacks["prod"].resources, role, inline], Context(stage="prod"))
    deploy = [r for r in access.results if r.principal == "ci-deploy"]
    assert "ci-deploy" not in access.absent and deploy
    allowed = {(r.action, r.resource.rsplit("/", 2)[-2]) for r in deploy if r.decision.allowed}
    assert ("s3:PutObject", "stages") in allowed
    # What this policy lacks is denied, by name: the version records record-deployment reads, the key it writes with.
    denied = {r.action for r in deploy if not r.decision.allowed}
    assert {"s3:GetObjectAttributes", "kms:GenerateDataKey"} <= denied


def test_get_object_attributes_is_also_decided_as_get_object(stacks: dict[str, RenderedStack]) -> None:
    """Without a version id S3 authorises GetObjectAttributes as s3:GetObject too (its API reference): a role
    granted s3:GetObjectAttributes alone is denied the GetObject that goes with it, on the very same object."""
    bucket = "arn:aws:s3:::mlinfra-prod-123456789012-eu-west-1"
    role = RenderedResource("aws:iam/role:Role", "prod-deploy", None, {"name": "mlinfra-prod-deploy"}, True)
    grants = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:GetObjectAttributes"], "Resource": [f"{bucket}/models/*"]}],
    }
    inline = RenderedResource(
        "aws:iam/rolePolicy:RolePolicy",
        "prod-deploy-policy",
        None,
        {"role": "mlinfra-prod-deploy", "policy": json.dumps(grants)},
        True,
    )
    access = evaluate_stack([*stacks["prod"].resources, role, inline], Context(stage="prod"))
    deploy = [r for r in access.results if r.principal == "ci-deploy"]
    attributes = [r for r in deploy if r.action == "s3:GetObjectAttributes" and r.resource.endswith("model.tar.gz")]
    assert attributes and all(r.decision.allowed for r in attributes)
    implied = [r for r in deploy if r.action == "s3:GetObject" and "authorised as s3:GetObject" in r.why]
    assert {r.resource for r in implied} == {r.resource for r in attributes}
    assert not any(r.decision.allowed for r in implied)


def test_across_accounts_a_bucket_policy_naming_the_callers_account_delegates_to_its_policies(
    stacks: dict[str, RenderedStack],
) -> None:
    """A caller in another account: S3 needs the caller's own policy and the bucket's. A bucket policy naming the
    caller's account (not the role) delegates to the caller's own policies, as AWS does; naming neither refuses."""
    from mlinfra_infra.policy.accesscheck import Found, _decide, _registry
    from mlinfra_infra.policy.engine import Index

    owner = _registry(Index(stacks["dev"].resources), Context(stage="dev"))
    assert owner is not None
    key = f"arn:aws:s3:::{owner.bucket}/stages/churn.json"
    grants = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    caller = Found("ci-preview", "arn:aws:iam::999999999999:role/mlinfra-staging-preview", "x", [grants], ["churn"])

    def bucket_policy(principal: str) -> dict[str, object]:
        allowed = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "s3:GetObject", "Resource": key}
        return {"Version": "2012-10-17", "Statement": [allowed]}

    owner.bucket_policy = bucket_policy("arn:aws:iam::999999999999:root")
    assert _decide(owner, caller, "s3:GetObject", key, {}, role_account="999999999999").allowed
    owner.bucket_policy = bucket_policy("arn:aws:iam::888888888888:root")
    assert not _decide(owner, caller, "s3:GetObject", key, {}, role_account="999999999999").allowed
