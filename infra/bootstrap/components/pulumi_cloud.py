"""PulumiCloudAccess: GitHub as an OIDC issuer of the Pulumi Cloud organization, and a team per stage and job kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_pulumiservice as pulumiservice

from mlinfra_infra.components.common import TYPE_PREFIX

from .. import names

# Apply jobs may run 300 minutes; the Pulumi token they exchange must outlive the longest apply.
TOKEN_SECONDS = 6 * 3600


def pulumi_audience(organization: str) -> str:
    """The audience pulumi/auth-actions asks GitHub for when it exchanges a token with Pulumi Cloud."""
    return f"urn:pulumi:org:{organization}"


@dataclass
class PulumiCloudAccessArgs:
    """The organization, the stage stacks' project, the repository and its stages."""

    project: str
    organization: str
    repository: str
    stages: list[str]


class PulumiCloudAccess(pulumi.ComponentResource):
    """Per stage a preview team (read on that stack) and a deploy team (edit on that stack), and the OIDC trust.

    A job gets a team token only when its GitHub token's `sub` is its environment's (`preview-<stage>` for the
    preview team, `<stage>` for the deploy team) and its `aud` the organization's: an unreviewed sandbox apply holds
    no token that can write prod's state, and no pull request a token that writes any.
    """

    teams: dict[str, dict[str, str]]

    def __init__(self, name: str, args: PulumiCloudAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:PulumiCloudAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        policies: list[pulumiservice.AuthPolicyDefinitionArgs] = []
        teams: list[pulumi.Resource] = []
        self.teams = {}
        for stage in args.stages:
            self.teams[stage] = {}
            grants: tuple[tuple[Literal["preview", "deploy"], pulumiservice.TeamStackPermissionScope], ...] = (
                ("preview", pulumiservice.TeamStackPermissionScope.READ),
                ("deploy", pulumiservice.TeamStackPermissionScope.EDIT),
            )
            for kind, permission in grants:
                team_name = names.pulumi_team(args.project, stage, kind)
                team = pulumiservice.Team(
                    f"{name}-{stage}-{kind}",
                    organization_name=args.organization,
                    team_type="pulumi",
                    name=team_name,
                    display_name=team_name,
                    description=f"GitHub Actions, environment {names.environment(stage, kind)}: {kind} of {stage}",
                    opts=child,
                )
                teams.append(team)
                pulumiservice.TeamStackPermission(
                    f"{name}-{stage}-{kind}-stack",
                    organization=args.organization,
                    project=args.project,
                    stack=stage,
                    team=team.name,
                    permission=permission,
                    opts=child,
                )
                policies.append(
                    pulumiservice.AuthPolicyDefinitionArgs(
                        decision=pulumiservice.AuthPolicyDecision.ALLOW,
                        token_type=pulumiservice.AuthPolicyTokenType.TEAM,
                        team_name=team_name,
                        rules={
                            "aud": pulumi_audience(args.organization),
                            "sub": names.subject(args.repository, names.environment(stage, kind)),
                        },
                    )
                )
                self.teams[stage][kind] = team_name
        pulumiservice.OidcIssuer(
            f"{name}-github",
            organization=args.organization,
            name="github-actions",
            url=names.GITHUB_ISSUER,
            max_expiration_seconds=TOKEN_SECONDS,
            policies=policies,
            opts=pulumi.ResourceOptions(parent=self, depends_on=teams),
        )
        self.register_outputs({"teams": self.teams})
