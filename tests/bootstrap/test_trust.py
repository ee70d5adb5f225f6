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
