"""Who may assume which role: the rendered trust policies evaluated against sample GitHub OIDC tokens."""

from __future__ import annotations

import json

import pytest

from mlinfra.bootstrap import stack, trust
from mlinfra.stacks.render import RenderedStack
from mlinfra_infra.bootstrap import names

Shipped = tuple[stack.Bootstrap, RenderedStack]
STAGES = ("sandbox", "dev", "staging", "prod")


def table(shipped: Shipped) -> dict[str, list[str]]:
    loaded, rendered = shipped
    return {row.scenario: row.assumes for row in trust.assumable(loaded.config, rendered)}


def test_a_fork_assumes_no_role(shipped: Shipped) -> None:
    rows = table(shipped)
    assert rows["pull request from a fork"] == []
    assert rows["a fork's own workflow, environment prod on main"] == []


def test_a_pull_request_from_the_repository_reaches_only_unprotected_preview_roles(shipped: Shipped) -> None:
    rows = table(shipped)
    reached = sorted(
        {role for scenario, roles in rows.items() if scenario.startswith("pull request from this") for role in roles}
    )
    assert reached == ["mlinfra-dev-preview", "mlinfra-sandbox-preview"]


def test_only_environment_prod_on_main_assumes_the_prod_deploy_role(shipped: Shipped) -> None:
    rows = table(shipped)
    holders = [scenario for scenario, roles in rows.items() if any(r.startswith("mlinfra-prod-deploy") for r in roles)]
    assert holders == ["push to main, environment prod"]
    assert rows["push to main, environment prod"] == ["mlinfra-prod-deploy (after review)"]


def test_no_token_without_an_environment_assumes_anything(shipped: Shipped) -> None:
    rows = table(shipped)
    for scenario in (
        "push to main, no environment",
        "push to a branch, no environment",
        "pull request from this repository, no environment",
    ):
        assert rows[scenario] == [], scenario


def test_the_audience_is_checked(shipped: Shipped) -> None:
    rows = table(shipped)
    assert rows["push to main, environment prod, audience not sts.amazonaws.com"] == []


@pytest.mark.parametrize("stage", STAGES)
def test_each_environment_assumes_exactly_its_own_role(shipped: Shipped, stage: str) -> None:
    rows = table(shipped)
    for kind in names.ROLE_KINDS:
        env = names.environment(stage, kind)
        [role] = rows[f"push to main, environment {env}"]
        assert role.removesuffix(" (after review)") == names.role("mlinfra", stage, kind)


def test_reviewed_previews_admit_pull_requests_after_a_review(shipped: Shipped) -> None:
    loaded, rendered = shipped
    config = loaded.config.model_copy(
        update={
            "stages": {
                **loaded.config.stages,
                "prod": loaded.config.stages["prod"].model_copy(update={"preview_on_pull_requests": "reviewed"}),
            }
        }
    )
    rows = {row.scenario: row.assumes for row in trust.assumable(config, rendered)}
    assert rows["pull request from this repository, environment preview-prod"] == [
        "mlinfra-prod-preview (after review)"
    ]


def test_a_wildcard_subject_would_be_caught(shipped: Shipped) -> None:
    """The evaluation is not a string comparison: a StringLike wildcard trust admits a branch's token."""
    _, rendered = shipped
    role = next(r for r in rendered.of_type("aws:iam/role:Role") if r.inputs["name"] == "mlinfra-prod-deploy")
    policy = json.loads(role.inputs["assumeRolePolicy"])
    condition = policy["Statement"][0]["Condition"]
    condition["StringLike"] = {"token.actions.githubusercontent.com:sub": "repo:example-org/mlinfra:*"}
    del condition["StringEquals"]["token.actions.githubusercontent.com:sub"]
    provider = names.oidc_provider_arn("333333333333")
    arn = "arn:aws:iam::333333333333:role/mlinfra-prod-deploy"
    pull_request = "repo:example-org/mlinfra:pull_request"
    assert trust.admits(json.dumps(policy), arn, provider, pull_request, "sts.amazonaws.com")
    assert not trust.admits(role.inputs["assumeRolePolicy"], arn, provider, pull_request, "sts.amazonaws.com")
    # The same token from another account's provider of the same issuer is not this account's federation.
    other = names.oidc_provider_arn("111111111111")
    subject = "repo:example-org/mlinfra:environment:prod"
    assert trust.admits(role.inputs["assumeRolePolicy"], arn, provider, subject, "sts.amazonaws.com")
    assert not trust.admits(role.inputs["assumeRolePolicy"], arn, other, subject, "sts.amazonaws.com")


# --- the roles a source stage lends the next stage in another account ----------------------------------------------

ACCOUNTS = {"sandbox": "111111111111", "dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}
LENT = {"dev": "staging", "staging": "prod"}  # source stage -> the next stage, in another account


def arn(stage: str, kind: str) -> str:
    return f"arn:aws:iam::{ACCOUNTS[stage]}:role/mlinfra-{stage}-{kind}"


def role_named(rendered: RenderedStack, name: str) -> dict[str, str]:
    [role] = [r for r in rendered.of_type("aws:iam/role:Role") if r.inputs["name"] == name]
    policy = next(
        r.inputs["policy"]
        for r in rendered.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.inputs["role"] in {name, f"{name}-id"}
    )
    return {"trust": role.inputs["assumeRolePolicy"], "policy": policy}


def test_only_stages_followed_by_another_account_lend_roles(shipped: Shipped) -> None:
    _, rendered = shipped
    lent = sorted(
        r.inputs["name"]
        for r in rendered.of_type("aws:iam/role:Role")
        if r.inputs["name"].endswith(("-source", "-approval"))
    )
    # sandbox -> dev share an account (dev reads sandbox directly); prod is promoted from and into nothing after it.
    assert lent == ["mlinfra-dev-approval", "mlinfra-dev-source", "mlinfra-staging-approval", "mlinfra-staging-source"]


@pytest.mark.parametrize("source", sorted(LENT))
def test_only_the_next_stages_preview_and_promotion_roles_assume_the_source_role(shipped: Shipped, source: str) -> None:
    _, rendered = shipped
    following = LENT[source]
    policy = role_named(rendered, f"mlinfra-{source}-source")["trust"]
    target = arn(source, "source")
    callers = {f"{stage}-{kind}": arn(stage, kind) for stage in STAGES for kind in names.ROLE_KINDS}
    admitted = sorted(name for name, caller in callers.items() if trust.role_may_assume(policy, target, caller))
    assert admitted == [f"{following}-preview", f"{following}-promotion"]
    # Nor the source stage's own account (its root, so its administrators' roles), nor a session name trick.
    assert not trust.role_may_assume(policy, target, f"arn:aws:iam::{ACCOUNTS[source]}:root")
    session = f"arn:aws:sts::{ACCOUNTS[following]}:assumed-role/mlinfra-{following}-deploy/mlinfra-{following}-preview"
    assert not trust.role_may_assume(policy, target, session)
    assert trust.role_may_assume(
        policy, target, f"arn:aws:sts::{ACCOUNTS[following]}:assumed-role/mlinfra-{following}-preview/GitHubActions"
    )


@pytest.mark.parametrize("source", sorted(LENT))
def test_only_the_next_stages_promotion_role_assumes_the_approval_role(shipped: Shipped, source: str) -> None:
    _, rendered = shipped
    policy = role_named(rendered, f"mlinfra-{source}-approval")["trust"]
    target = arn(source, "approval")
    callers = {f"{stage}-{kind}": arn(stage, kind) for stage in STAGES for kind in names.ROLE_KINDS}
    admitted = sorted(name for name, caller in callers.items() if trust.role_may_assume(policy, target, caller))
    assert admitted == [f"{LENT[source]}-promotion"]


def test_no_github_token_assumes_a_lent_role(shipped: Shipped) -> None:
    rows = table(shipped)
    assert not [r for roles in rows.values() for r in roles if r.endswith(("-source", "-approval"))]
    assert "mlinfra-staging-source" in trust.role_arns(shipped[1]), "the lent roles were part of the evaluation"


def test_a_preview_role_never_gains_a_write_on_its_source_stage(shipped: Shipped) -> None:
    """prod's preview role reaches staging's source role, which cannot approve; the approval role is out of its reach
    on both sides (its own policy and the approval role's trust)."""
    from mlinfra_infra.policy import iam

    _, rendered = shipped
    package = "arn:aws:sagemaker:eu-west-1:222222222222:model-package/mlinfra-staging-churn/1"
    approving = {"aws:SecureTransport": True, "sagemaker:ModelApprovalStatus": "Approved"}
    update = iam.Request("sagemaker:UpdateModelPackage", package, approving)
    source = role_named(rendered, "mlinfra-staging-source")
    assert not iam.evaluate(update, [json.loads(source["policy"])], [], arn("staging", "source")).allowed
    describe = iam.Request("sagemaker:DescribeModelPackage", package, {"aws:SecureTransport": True})
    assert iam.evaluate(describe, [json.loads(source["policy"])], [], arn("staging", "source")).allowed
    approval = role_named(rendered, "mlinfra-staging-approval")
    assert iam.evaluate(update, [json.loads(approval["policy"])], [], arn("staging", "approval")).allowed
    # The preview role's own policy allows assuming the source role only; the approval role's trust refuses it too.
    preview = json.loads(role_named(rendered, "mlinfra-prod-preview")["policy"])
    assume = iam.Request("sts:AssumeRole", arn("staging", "approval"), {"aws:SecureTransport": True})
    assert not iam.evaluate(assume, [preview], [], arn("prod", "preview")).allowed
    assert not trust.role_may_assume(approval["trust"], arn("staging", "approval"), arn("prod", "preview"))
    read = iam.Request("sts:AssumeRole", arn("staging", "source"), {"aws:SecureTransport": True})
    assert iam.evaluate(read, [preview], [], arn("prod", "preview")).allowed
    # Nothing in the lent roles' policies writes, deletes or changes access.
    writes = ("Put", "Delete", "Create", "Update", "Tag", "Attach", "Pass")
    actions = [a for s in json.loads(source["policy"])["Statement"] for a in s["Action"]]
    assert not [a for a in actions if a.split(":")[1].startswith(writes)]


def test_the_deploy_roles_cannot_change_the_lent_roles(shipped: Shipped) -> None:
    """staging's deploy role (same account as staging's lent roles) is refused any change to them by its boundary."""
    from mlinfra_infra.policy import iam

    _, rendered = shipped
    boundary = json.loads(rendered.named("staging-ci-deploy-boundary").inputs["policy"])
    for kind in ("source", "approval"):
        for action in ("iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy", "iam:DeleteRole"):
            request = iam.Request(action, arn("staging", kind), {"aws:SecureTransport": True})
            allow_all = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            decision = iam.evaluate(request, [allow_all], [], arn("staging", "deploy"), boundary_policies=[boundary])
            assert not decision.allowed, (kind, action)
