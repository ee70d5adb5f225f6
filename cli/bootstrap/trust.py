"""Who may assume which CI role: each role's rendered trust policy evaluated against sample GitHub OIDC tokens.

A scenario is a job GitHub could run: its event, branch, repository and environment. GitHub decides whether the
job gets a token at all (fork pull requests get none; an environment admits only its deployment branches and,
with required reviewers, only after a review); IAM then decides, from the token's `sub` and `aud`, which roles
it may assume. The IAM side is evaluated by the project's policy evaluator (mlinfra_infra.policy.iam) on the
trust policies exactly as rendered; the GitHub side follows the protection rules `mlinfra bootstrap github` sets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlinfra.stacks.render import RenderedStack
    from mlinfra_infra.bootstrap.config import BootstrapConfig

FORK_OWNER = "someone-else"


@dataclass(frozen=True)
class Scenario:
    """A job GitHub could run, and the token it would get (None: GitHub issues none)."""

    name: str
    subject: str | None
    audience: str = "sts.amazonaws.com"
    review: bool = False  # the token comes only after a required reviewer approves the job
    refusal: str = ""  # why GitHub issues no token, when it issues none


@dataclass(frozen=True)
class TrustRow:
    """One scenario and the roles its token can assume."""

    scenario: str
    subject: str | None
    assumes: list[str]
    refusal: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON shape `mlinfra bootstrap preview --json` prints under "trust"."""
        return {
            "scenario": self.scenario,
            "subject": self.subject,
            "noToken": self.refusal or None,
            "assumes": self.assumes,
        }


def scenarios(config: BootstrapConfig) -> list[Scenario]:
    """Pushes to main and to a branch, same-repository and fork pull requests, each environment, another repo."""
    from mlinfra_infra.bootstrap import names

    repo = config.github.repository
    main = config.github.default_branch
    fork = f"{FORK_OWNER}/{repo.split('/')[1]}"
    out = [
        Scenario(f"push to {main}, no environment", f"repo:{repo}:ref:refs/heads/{main}"),
        Scenario("push to a branch, no environment", f"repo:{repo}:ref:refs/heads/feature"),
        Scenario("pull request from this repository, no environment", f"repo:{repo}:pull_request"),
        # GitHub gives workflows run for a fork's pull request no OIDC token (no id-token: write), whatever the
        # workflow file asks for.
        Scenario("pull request from a fork", None, refusal="GitHub issues fork pull requests no OIDC token"),
        Scenario(f"a fork's own workflow, environment prod on {main}", f"repo:{fork}:environment:prod"),
        Scenario(
            f"push to {main}, environment {config.stage_names()[-1]}, audience not sts.amazonaws.com",
            names.subject(repo, config.stage_names()[-1]),
            audience=f"https://github.com/{repo.split('/')[0]}",
        ),
    ]
    for stage in config.stage_names():
        protected = config.is_protected(stage)
        preview = config.preview_on_pull_requests(stage)
        for kind in names.ROLE_KINDS:
            env = names.environment(stage, kind)
            subject = names.subject(repo, env)
            reviewed = protected if kind != "preview" else preview == "reviewed"
            out.append(Scenario(f"push to {main}, environment {env}", subject, review=reviewed))
            # Deployment branches: deploy and promote environments admit only the default branch; preview
            # environments admit pull requests unless the stage keeps them to the default branch ("never").
            admits_branches = kind == "preview" and preview != "never"
            out.append(
                Scenario(
                    f"pull request from this repository, environment {env}",
                    subject if admits_branches else None,
                    review=reviewed,
                    refusal="" if admits_branches else f"{env} admits {main} only",
                )
            )
    return out


def trust_policies(rendered: RenderedStack) -> dict[str, str]:
    """Role name -> its rendered trust policy (JSON text)."""
    return {str(r.inputs["name"]): str(r.inputs["assumeRolePolicy"]) for r in rendered.of_type("aws:iam/role:Role")}


def assumable(config: BootstrapConfig, rendered: RenderedStack) -> list[TrustRow]:
    """For each scenario, the roles whose trust policy admits its token (marked "after review" where needed)."""
    from mlinfra_infra.bootstrap import names

    roles = role_arns(rendered)
    policies = trust_policies(rendered)
    rows = []
    for scenario in scenarios(config):
        granted: list[str] = []
        if scenario.subject is not None:
            for role, policy in sorted(policies.items()):
                account = roles[role].split(":")[4]
                provider = names.oidc_provider_arn(account)
                if admits(policy, roles[role], provider, scenario.subject, scenario.audience):
                    granted.append(role + (" (after review)" if scenario.review else ""))
        rows.append(TrustRow(scenario.name, scenario.subject, granted, scenario.refusal))
    return rows


def role_arns(rendered: RenderedStack) -> dict[str, str]:
    """Role name -> ARN, from the stack's outputs."""
    return {
        arn.rsplit("/", 1)[1]: arn
        for output in ("roles", "sourceRoles")
        for stage_roles in (rendered.outputs.get(output) or {}).values()
        for arn in stage_roles.values()
    }


def role_may_assume(policy: str, role_arn: str, caller_arn: str) -> bool:
    """Whether a trust policy lets the role `caller_arn` (its session, as AWS sees it) assume the role.

    Trust is a resource policy that must itself allow the caller; the caller's own identity policy must allow
    sts:AssumeRole of the role too (evaluated by `mlinfra check --access`).
    """
    from mlinfra_infra.policy import iam

    request = iam.Request("sts:AssumeRole", role_arn, {"aws:SecureTransport": True})
    return iam.evaluate(request, [], [json.loads(policy)], caller_arn, resource_policy_required=True).allowed


def admits(policy: str, role_arn: str, provider_arn: str, subject: str, audience: str) -> bool:
    """Whether a trust policy lets a token of `provider_arn` with claims `sub` and `aud` assume the role.

    Decided by the project's IAM evaluator (AWS's evaluation logic: a trust policy must itself allow the caller).
    """
    from mlinfra_infra.policy import iam

    claims = {"sub": subject, "aud": audience}
    return iam.assume_role_with_web_identity(json.loads(policy), role_arn, provider_arn, claims).allowed
