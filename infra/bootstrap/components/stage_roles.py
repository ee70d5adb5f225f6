"""StageCiRoles: one stage's preview, deploy and promotion roles, their boundaries and the stage's secrets key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from mlinfra_infra.components.common import TYPE_PREFIX

from .. import backend_policies, boundaries, deploy, names, policies
from ..policies import StageScope
from .common import child, tags, to_json

# Apply jobs may run 300 minutes (a blue/green deployment's longest timeout plus endpoint creation); the deploy
# role's sessions may last that long when the workflow asks for it (role-duration-seconds).
DEPLOY_SESSION_SECONDS = 6 * 3600
SESSION_SECONDS = 3600


@dataclass
class StageCiRolesArgs:
    """What one stage's CI roles need: its scope, the account's CI identities (never to be touched) and the owner."""

    scope: StageScope
    owner: str
    oidc_provider: pulumi.Resource
    account_ci_roles: list[str] = field(default_factory=list)
    account_boundaries: list[str] = field(default_factory=list)
    provider: pulumi.ProviderResource | None = None


class StageCiRoles(pulumi.ComponentResource):
    """The roles GitHub Actions assumes for one stage, each trusted on exactly one environment's OIDC subject.

    - preview (`preview-<stage>`): plans and reads the stage's state; decrypts its Pulumi secrets (documented).
    - deploy (`<stage>`, main only): applies the stage stack under a permissions boundary; every role it creates
      must carry the stage's workload boundary.
    - promotion (`promote-<stage>`): what `mlinfra promote` does in the stage, and read on the source stage.
    The stage's Pulumi secrets key (one per stage, so no role decrypts another stage's secrets) lives here too.
    """

    role_arns: dict[str, pulumi.Output[str]]
    secrets_provider: str

    def __init__(self, name: str, args: StageCiRolesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:StageCiRoles", name, None, opts)
        scope, provider = args.scope, args.provider
        stage_tags = tags(args.owner, scope.stage)
        project, stage = scope.project, scope.stage

        key = aws.kms.Key(
            f"{name}-secrets-key",
            description=f"Pulumi secrets of the {project} {stage} stack",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=to_json(backend_policies.secrets_key_policy(scope.account, scope.partition)),
            tags=stage_tags,
            opts=child(self, provider, protect=True),
        )
        aws.kms.Alias(
            f"{name}-secrets-key-alias",
            name=names.secrets_key_alias(project, stage),
            target_key_id=key.key_id,
            opts=child(self, provider),
        )
        self.secrets_provider = f"awskms://{names.secrets_key_alias(project, stage)}?region={scope.region}"

        workload = aws.iam.Policy(
            f"{name}-workload-boundary",
            name=names.workload_boundary(project, stage),
            description=f"The most any role of the {project} {stage} stack may do",
            policy=to_json(boundaries.workload_boundary(scope)),
            tags=stage_tags,
            opts=child(self, provider),
        )
        boundary = aws.iam.Policy(
            f"{name}-deploy-boundary",
            name=names.deploy_boundary(project, stage),
            description=f"The most the {project} {stage} deploy role may do",
            policy=to_json(boundaries.deploy_boundary(scope, args.account_ci_roles, args.account_boundaries)),
            tags=stage_tags,
            opts=child(self, provider),
        )

        # ARNs from the account and the name (exact offline too); deriving them from the resources keeps the order.
        boundary_arn = boundary.name.apply(lambda n: names.policy_arn(scope.account, n, scope.partition))
        documents = {
            "preview": policies.preview_policy(scope),
            "deploy": deploy.deploy_policy(scope),
            "promotion": policies.promotion_policy(scope),
        }
        self.role_arns = {}
        for kind in names.ROLE_KINDS:
            role_name = names.role(project, stage, kind)
            role = aws.iam.Role(
                f"{name}-{kind}",
                name=role_name,
                description=f"GitHub Actions, environment {names.environment(stage, kind)}: {kind} of {stage}",
                assume_role_policy=to_json(policies.github_trust(scope, kind)),
                max_session_duration=DEPLOY_SESSION_SECONDS if kind == "deploy" else SESSION_SECONDS,
                permissions_boundary=boundary_arn if kind == "deploy" else None,
                tags=stage_tags,
                # IAM refuses a trust policy naming a provider that does not exist yet.
                opts=child(self, provider, depends_on=[workload, args.oidc_provider]),
            )
            # The deploy role's policy is larger than a role's inline policies may be (10,240 characters): it is
            # attached as managed policies of at most 6,144 each.
            parts = policies.split(documents[kind]) if kind == "deploy" else [documents[kind]]
            for index, part in enumerate(parts, start=1):
                if kind != "deploy":
                    aws.iam.RolePolicy(
                        f"{name}-{kind}-policy", role=role.id, policy=to_json(part), opts=child(self, provider)
                    )
                    continue
                managed = aws.iam.Policy(
                    f"{name}-{kind}-policy-{index}",
                    name=f"{role_name}-{index}",
                    description=f"{kind} of {stage}, part {index} of {len(parts)}",
                    policy=to_json(part),
                    tags=stage_tags,
                    opts=child(self, provider),
                )
                aws.iam.RolePolicyAttachment(
                    f"{name}-{kind}-policy-{index}-attachment",
                    role=role.name,
                    policy_arn=managed.name.apply(lambda n: names.policy_arn(scope.account, n, scope.partition)),
                    opts=child(self, provider),
                )
            self.role_arns[kind] = role.name.apply(lambda n: names.role_arn(scope.account, n, scope.partition))
        self.register_outputs({"roleArns": self.role_arns, "secretsProvider": self.secrets_provider})
