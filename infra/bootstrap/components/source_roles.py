"""SourceStageRoles: the read and approval roles a stage lends the next stage when that one is in another account."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from mlinfra_infra.components.common import TYPE_PREFIX

from .. import names, source_roles
from ..policies import StageScope
from .common import child, tags, to_json

SESSION_SECONDS = 3600  # a chained session (CI role -> this role) lasts at most an hour anyway


@dataclass
class SourceStageRolesArgs:
    """The source stage's scope (with its next stage), the owner and the next stage's CI roles (trusted by ARN)."""

    scope: StageScope
    owner: str
    next_stage_roles: list[pulumi.Resource] = field(default_factory=list)
    provider: pulumi.ProviderResource | None = None


class SourceStageRoles(pulumi.ComponentResource):
    """A source stage's roles in its account, for a next stage in another account.

    `<project>-<stage>-source` reads (trusted by the next stage's preview and promotion roles);
    `<project>-<stage>-approval` approves model packages (trusted by its promotion role only).
    """

    role_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: SourceStageRolesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:SourceStageRoles", name, None, opts)
        scope, provider = args.scope, args.provider
        project, stage, following = scope.project, scope.stage, str(scope.next_stage)
        roles = {
            "source": (
                names.source_role(project, stage),
                source_roles.source_trust(scope),
                source_roles.source_read_policy(scope),
                f"{following}'s preview and promotion roles read {stage} as their source",
            ),
            "approval": (
                names.approval_role(project, stage),
                source_roles.approval_trust(scope),
                source_roles.approval_policy(scope),
                f"{following}'s promotion role approves versions' model packages in {stage}",
            ),
        }
        self.role_arns = {}
        for kind, (role_name, trust, policy, description) in roles.items():
            role = aws.iam.Role(
                f"{name}-{kind}",
                name=role_name,
                description=description,
                assume_role_policy=to_json(trust),
                max_session_duration=SESSION_SECONDS,
                tags=tags(args.owner, stage),
                # IAM refuses a trust policy naming a role that does not exist yet.
                opts=child(self, provider, depends_on=args.next_stage_roles),
            )
            aws.iam.RolePolicy(
                f"{name}-{kind}-policy", role=role.id, policy=to_json(policy), opts=child(self, provider)
            )
            self.role_arns[kind] = role.name.apply(lambda n: names.role_arn(scope.account, n, scope.partition))
        self.register_outputs({"roleArns": self.role_arns})
