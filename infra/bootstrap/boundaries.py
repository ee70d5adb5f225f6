"""The permissions boundaries of a stage: the deploy role's, and the one every role of the stage's stack carries.

The deploy boundary is what the deploy role can never do, whatever its policy says; the workload boundary is what
the stage's workloads (endpoint, drift job, scheduler, sandbox VM) can ever do.
"""

from __future__ import annotations

from . import names
from .policies import Policy, StageScope, allow, deny, document


def deploy_boundary(scope: StageScope, ci_role_names: list[str], boundary_names: list[str]) -> Policy:
    """The deploy role's permissions boundary: its identity policy, capped; nothing that widens its own access.

    It may not change any CI role, boundary or OIDC provider, may not create users or keys, may not create or
    change a role unless that role carries the stage's workload boundary, and may not remove a boundary.
    """
    p, account = scope.partition, scope.account
    workload = scope.boundary_arn(names.workload_boundary(scope.project, scope.stage))
    ci_roles = [names.role_arn(account, name, p) for name in ci_role_names]
    boundaries = [scope.boundary_arn(name) for name in boundary_names]
    return document(
        allow(
            "AtMostTheStageServices",
            [
                "application-autoscaling:*",
                "cloudwatch:*",
                "codeartifact:*",
                "ec2:*",
                "iam:*",
                "kms:*",
                "lambda:*",
                "logs:*",
                "s3:*",
                "sagemaker:*",
                "scheduler:*",
                "sns:*",
                "sqs:*",
                "ssm:*",
                "servicequotas:ListAWSDefaultServiceQuotas",
                "servicequotas:ListServiceQuotas",
                "sts:GetCallerIdentity",
            ],
            ["*"],
        ),
        deny("NeverTheCiIdentities", ["iam:*"], [*ci_roles, *boundaries, f"arn:{p}:iam::{account}:oidc-provider/*"]),
        deny(
            "NoUsersOrKeys",
            [
                "iam:CreateUser",
                "iam:CreateAccessKey",
                "iam:CreateLoginProfile",
                "iam:UpdateLoginProfile",
                "iam:CreateServiceSpecificCredential",
                "iam:CreateOpenIDConnectProvider",
                "iam:CreateSAMLProvider",
            ],
            ["*"],
        ),
        deny(
            "RolesOnlyWithTheWorkloadBoundary",
            [
                "iam:CreateRole",
                "iam:PutRolePolicy",
                "iam:AttachRolePolicy",
                "iam:PutRolePermissionsBoundary",
            ],
            [f"arn:{p}:iam::{account}:role/*"],
            {"StringNotEquals": {"iam:PermissionsBoundary": workload}},
        ),
        deny("BoundariesStay", ["iam:DeleteRolePermissionsBoundary"], ["*"]),
        # A tag condition of its identity policy must not be satisfiable by re-tagging: never a tag change on a
        # resource another stage's stack or the bootstrap stack already tagged as theirs.
        deny(
            "NeverRetagAnotherStagesResources",
            RETAG_ACTIONS,
            ["*"],
            {"Null": {"aws:ResourceTag/stage": "false"}, "StringNotEquals": {"aws:ResourceTag/stage": scope.stage}},
        ),
        deny(
            "NeverRetagTheBootstrapsResources",
            RETAG_ACTIONS,
            ["*"],
            {"StringEquals": {"aws:ResourceTag/managed-by": names.MANAGED_BY}},
        ),
    )


# Every action that adds or removes a tag on a resource of the services the deploy role manages.
RETAG_ACTIONS = [
    "application-autoscaling:TagResource",
    "application-autoscaling:UntagResource",
    "cloudwatch:TagResource",
    "cloudwatch:UntagResource",
    "codeartifact:TagResource",
    "codeartifact:UntagResource",
    "ec2:CreateTags",
    "ec2:DeleteTags",
    "iam:TagInstanceProfile",
    "iam:UntagInstanceProfile",
    "iam:TagPolicy",
    "iam:UntagPolicy",
    "iam:TagRole",
    "iam:UntagRole",
    "kms:TagResource",
    "kms:UntagResource",
    "lambda:TagResource",
    "lambda:UntagResource",
    "logs:TagResource",
    "logs:UntagResource",
    "s3:PutBucketTagging",
    "sagemaker:AddTags",
    "sagemaker:DeleteTags",
    "scheduler:TagResource",
    "scheduler:UntagResource",
    "sns:TagResource",
    "sns:UntagResource",
    "sqs:TagQueue",
    "sqs:UntagQueue",
    "ssm:AddTagsToResource",
    "ssm:RemoveTagsFromResource",
]


# The services the stage's own roles (endpoint, drift job, scheduler, sandbox VM) use.
WORKLOAD_SERVICES = [
    "cloudwatch:*",
    "codeartifact:GetAuthorizationToken",
    "codeartifact:GetRepositoryEndpoint",
    "codeartifact:ReadFromRepository",
    "ec2:StartInstances",
    "ec2:StopInstances",
    "ec2:Describe*",
    "ec2messages:*",
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetAuthorizationToken",
    "ecr:GetDownloadUrlForLayer",
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "lambda:InvokeFunction",
    "logs:*",
    "s3:*",
    "sagemaker:*",
    "sns:Publish",
    "sqs:SendMessage",
    "ssm:*",
    "ssmmessages:*",
    "sts:GetCallerIdentity",
    "sts:GetServiceBearerToken",
]


def workload_boundary(scope: StageScope) -> Policy:
    """The boundary of every role the stage's stack creates: its services, never IAM, never another stage's data."""
    others = [stage for stage in scope.stages if stage != scope.stage]
    statements = [
        allow("AtMostTheWorkloadServices", WORKLOAD_SERVICES, ["*"]),
        deny("NeverIam", ["iam:*", "organizations:*", "account:*"], ["*"]),
    ]
    if others:
        statements.append(
            deny(
                "NeverAnotherStagesData",
                ["s3:*"],
                [f"arn:{scope.partition}:s3:::{scope.project}-{other}-*" for other in others],
            )
        )
    # Never Pulumi's state (every stage's checkpoints and their log) nor a stack's secrets: a workload has no use for
    # them, and a role the deploy role creates must not reach another stage's state through them.
    state = names.state_bucket(scope.project, scope.tooling_account, scope.region)
    state_logs = names.state_log_bucket(scope.project, scope.tooling_account, scope.region)
    statements += [
        deny(
            "NeverThePulumiState",
            ["s3:*"],
            [f"arn:{scope.partition}:s3:::{bucket}{part}" for bucket in (state, state_logs) for part in ("", "/*")],
        ),
        deny(
            "NeverThePulumiKeys",
            ["kms:*"],
            ["*"],
            {
                "ForAnyValue:StringEquals": {
                    "kms:ResourceAliases": [
                        names.state_key_alias(scope.project),
                        *(names.secrets_key_alias(scope.project, stage) for stage in scope.stages),
                    ]
                }
            },
        ),
    ]
    return document(*statements)
