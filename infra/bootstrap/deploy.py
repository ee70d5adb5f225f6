"""The deploy role's policy and the two permissions boundaries that keep it (and what it creates) in its stage.

Creation must carry the `stage` tag (aws:RequestTag) where the service supports tags on create; changes need the tag
on the resource (aws:ResourceTag); fixed-name resources are scoped by `<project>-<stage>-`. The deploy role's
boundary refuses any change to the CI identities and any role created without the stage's workload boundary, so
neither the role nor a role it creates and passes to a service can hold more than the stage needs.
"""

from __future__ import annotations

from typing import Any

from mlinfra_infra import naming

from . import names
from .policies import (
    Policy,
    StageScope,
    allow,
    document,
    plan_statements,
    secrets_key_statement,
    stage_buckets,
    state_statements,
)

# What the sandbox's network and VM are made of (EC2 resource types in ARNs).
EC2_KINDS = ("vpc", "subnet", "security-group", "route-table", "vpc-endpoint", "instance", "volume")


def _tag(kind: str, stage: str) -> dict[str, Any]:
    """The stage stack's own tags, on the request or on the resource: the stage, and managed by the stage stacks.

    The bootstrap's own resources (CI roles, secrets keys) say `managed-by: mlinfra-bootstrap`, so no tag
    condition here ever matches them.
    """
    return {"StringEquals": {f"aws:{kind}/stage": stage, f"aws:{kind}/managed-by": naming.MANAGED_BY}}


def deploy_policy(scope: StageScope) -> Policy:
    """The deploy role: `pulumi up` of the stage stack and `mlinfra record-deployment`, on this stage's resources.

    Creation must carry the `stage` tag (aws:RequestTag) where the service supports tags on create; changes need
    the tag on the resource (aws:ResourceTag); fixed-name resources are scoped by `<project>-<stage>-`. Roles it
    creates must carry the stage's workload boundary (iam:PermissionsBoundary), and may be passed only to the
    services that run the stage's workloads.
    """
    p, s = scope.partition, scope.stage
    prefix = scope.prefix
    req = _tag("RequestTag", s)
    res = _tag("ResourceTag", s)
    workload = scope.boundary_arn(names.workload_boundary(scope.project, s))
    registry = f"arn:{p}:s3:::{scope.registry_bucket}"
    path = naming.iam_path(scope.project, s)
    roles = f"arn:{p}:iam::{scope.account}:role{path}*"
    policies = f"arn:{p}:iam::{scope.account}:policy{path}*"
    profiles = f"arn:{p}:iam::{scope.account}:instance-profile{path}*"
    statements = [
        *plan_statements(scope),
        *state_statements(scope, write=True),
        secrets_key_statement(scope, write=True),
        # S3: the registry (fixed name) and the stage's log bucket ("<project>-<stage>-logs-*"), in this
        # account only.
        allow(
            "StageBuckets",
            [
                "s3:CreateBucket",
                "s3:DeleteBucket",
                "s3:PutBucketPolicy",
                "s3:PutBucketPublicAccessBlock",
                "s3:PutBucketOwnershipControls",
                "s3:PutBucketVersioning",
                "s3:PutBucketLogging",
                "s3:PutBucketTagging",
                "s3:DeleteBucketPolicy",
                "s3:PutEncryptionConfiguration",
                "s3:PutLifecycleConfiguration",
                "s3:PutAccelerateConfiguration",
                "s3:PutReplicationConfiguration",
                "s3:PutBucketObjectLockConfiguration",
                "s3:ListBucket",
                "s3:ListBucketVersions",
            ],
            stage_buckets(scope),
            {"StringEquals": {"aws:ResourceAccount": scope.account}},
        ),
        # The drift job's code package (code/) and what record-deployment writes (stages/, audit/) and reads.
        allow("RegistryCodePackages", ["s3:PutObject", "s3:GetObject"], [f"{registry}/code/*"]),
        allow(
            "RecordDeploymentReads",
            ["s3:GetObject", "s3:GetObjectAttributes"],
            [f"{registry}/models/*", f"{registry}/stages/*", f"{registry}/audit/*"],
        ),
        allow(
            "RecordDeploymentCreatesAudit",
            ["s3:PutObject"],
            [f"{registry}/audit/*", f"{registry}/stages/*"],
            {"Null": {"s3:if-none-match": "false"}},
        ),
        allow(
            "RecordDeploymentSwapsPointer",
            ["s3:PutObject"],
            [f"{registry}/stages/*"],
            {"Null": {"s3:if-match": "false"}},
        ),
        # KMS: keys created with the stage tag; managed and used only when they carry it; aliases by name.
        allow("CreateStageKeys", ["kms:CreateKey"], ["*"], req),
        allow("TagNewStageKeys", ["kms:TagResource"], [scope.arn("kms", "key/*")], req),
        allow(
            "ManageStageKeys",
            [
                "kms:EnableKeyRotation",
                "kms:PutKeyPolicy",
                "kms:ScheduleKeyDeletion",
                "kms:TagResource",
                "kms:UntagResource",
                "kms:UpdateKeyDescription",
                "kms:CreateGrant",
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:GenerateDataKey",
            ],
            [scope.arn("kms", "key/*")],
            res,
        ),
        allow(
            "StageKeyAliases",
            ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"],
            [scope.arn("kms", f"alias/{prefix}*")],
        ),
        # An alias operation is authorized on the key too: only the stage's own keys.
        allow(
            "AliasStageKeys",
            ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"],
            [scope.arn("kms", "key/*")],
            res,
        ),
        # SageMaker: models and endpoint configurations are auto-named, so tags scope them.
        allow(
            "CreateStageSageMaker",
            [
                "sagemaker:CreateModel",
                "sagemaker:CreateEndpointConfig",
                "sagemaker:CreateEndpoint",
                "sagemaker:CreateModelPackageGroup",
                "sagemaker:AddTags",
            ],
            [scope.arn("sagemaker", "*")],
            req,
        ),
        allow(
            "ManageStageSageMaker",
            [
                "sagemaker:UpdateEndpoint",
                "sagemaker:UpdateEndpointWeightsAndCapacities",
                "sagemaker:DeleteEndpoint",
                "sagemaker:DeleteEndpointConfig",
                "sagemaker:DeleteModel",
                "sagemaker:DeleteModelPackageGroup",
                "sagemaker:AddTags",
                "sagemaker:DeleteTags",
            ],
            [scope.arn("sagemaker", "*")],
            res,
        ),
        # IAM: the stage's workload roles, only under its path (naming.iam_path) and with its workload boundary;
        # passed only to the stage's services. Nothing outside the path: a tag the role can set reaches no other role.
        allow(
            "CreateBoundedWorkloadRoles",
            [
                "iam:CreateRole",
                "iam:PutRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:AttachRolePolicy",
                "iam:DetachRolePolicy",
                "iam:PutRolePermissionsBoundary",
            ],
            [roles],
            {"StringEquals": {"iam:PermissionsBoundary": workload}},
        ),
        allow(
            "ManageStageRoles",
            [
                "iam:DeleteRole",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:UpdateRole",
                "iam:UpdateRoleDescription",
                "iam:UpdateAssumeRolePolicy",
            ],
            [roles],
            res,
        ),
        # CreateRole with tags is also a TagRole of the new role, which has no tags yet.
        allow("TagNewRoles", ["iam:TagRole"], [roles], req),
        # Application Auto Scaling creates its SageMaker service-linked role on the first scalable target.
        allow(
            "AutoscalingServiceLinkedRole",
            ["iam:CreateServiceLinkedRole"],
            [f"arn:{p}:iam::{scope.account}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/*"],
            {"StringEquals": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
        ),
        allow(
            "PassStageRolesToStageServices",
            ["iam:PassRole"],
            [roles],
            {
                "StringEquals": {
                    "aws:ResourceTag/stage": s,
                    "aws:ResourceTag/managed-by": naming.MANAGED_BY,
                    "iam:PassedToService": [
                        "sagemaker.amazonaws.com",
                        "lambda.amazonaws.com",
                        "scheduler.amazonaws.com",
                        "ec2.amazonaws.com",
                    ],
                },
            },
        ),
        # Managed policies and instance profiles under the stage's path: created tagged; the calls that change or
        # delete them carry no tags (a tag condition there would never match), so the path alone scopes those.
        allow(
            "CreateStagePoliciesAndProfiles",
            ["iam:CreatePolicy", "iam:TagPolicy", "iam:CreateInstanceProfile", "iam:TagInstanceProfile"],
            [policies, profiles],
            req,
        ),
        allow(
            "ManageStagePoliciesAndProfiles",
            [
                "iam:CreatePolicyVersion",
                "iam:DeletePolicy",
                "iam:DeletePolicyVersion",
                "iam:DeleteInstanceProfile",
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
            ],
            [policies, profiles],
        ),
        # Fixed names: alarms, dashboard, topic, drift job, log groups, Session Manager document, CodeArtifact.
        allow(
            "StageAlarmsAndDashboard",
            [
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:PutCompositeAlarm",
                "cloudwatch:DeleteAlarms",
                "cloudwatch:TagResource",
                "cloudwatch:UntagResource",
                "cloudwatch:PutDashboard",
                "cloudwatch:DeleteDashboards",
            ],
            [
                scope.arn("cloudwatch", f"alarm:{prefix}*"),
                f"arn:{p}:cloudwatch::{scope.account}:dashboard/{scope.project}-{s}",
            ],
        ),
        allow(
            "StageTopic",
            [
                "sns:CreateTopic",
                "sns:DeleteTopic",
                "sns:SetTopicAttributes",
                "sns:Subscribe",
                "sns:TagResource",
                "sns:UntagResource",
            ],
            [scope.arn("sns", f"{prefix}*")],
        ),
        # Unsubscribe names a subscription, not a topic.
        allow(
            "StageTopicSubscriptions",
            ["sns:Unsubscribe"],
            ["*"],
            {"StringEquals": {"aws:ResourceAccount": scope.account}},
        ),
        allow(
            "StageDriftJob",
            [
                "lambda:CreateFunction",
                "lambda:DeleteFunction",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:AddPermission",
                "lambda:RemovePermission",
                "lambda:TagResource",
                "lambda:UntagResource",
                "lambda:PutFunctionEventInvokeConfig",
                "lambda:UpdateFunctionEventInvokeConfig",
                "lambda:DeleteFunctionEventInvokeConfig",
                "lambda:GetFunctionEventInvokeConfig",
                # The drift job's first run at deployment (a Lambda invocation in the stack).
                "lambda:InvokeFunction",
            ],
            [scope.arn("lambda", f"function:{prefix}*")],
        ),
        # The drift job's dead-letter queue (`<project>-<stage>-drift-job-dead-letters`).
        allow(
            "StageDeadLetterQueue",
            [
                "sqs:CreateQueue",
                "sqs:DeleteQueue",
                "sqs:GetQueueAttributes",
                "sqs:SetQueueAttributes",
                "sqs:ListQueueTags",
                "sqs:TagQueue",
                "sqs:UntagQueue",
            ],
            [scope.arn("sqs", f"{prefix}*")],
        ),
        allow(
            "StageSchedules",
            ["scheduler:CreateSchedule", "scheduler:UpdateSchedule", "scheduler:DeleteSchedule"],
            [scope.arn("scheduler", f"schedule/default/{prefix}*")],
        ),
        allow(
            "StageLogGroups",
            [
                "logs:CreateLogGroup",
                "logs:DeleteLogGroup",
                "logs:PutRetentionPolicy",
                "logs:AssociateKmsKey",
                "logs:TagResource",
                "logs:UntagResource",
            ],
            [
                scope.arn("logs", f"log-group:/aws/lambda/{prefix}*"),
                scope.arn("logs", f"log-group:/mlinfra/{scope.project}-{s}/*"),
            ],
        ),
        allow(
            "StageSessionDocument",
            [
                "ssm:CreateDocument",
                "ssm:UpdateDocument",
                "ssm:UpdateDocumentDefaultVersion",
                "ssm:DeleteDocument",
                "ssm:AddTagsToResource",
                "ssm:RemoveTagsFromResource",
            ],
            [scope.arn("ssm", f"document/{prefix}*")],
        ),
        allow(
            "StageCodeArtifact",
            [
                "codeartifact:CreateDomain",
                "codeartifact:DeleteDomain",
                "codeartifact:CreateRepository",
                "codeartifact:DeleteRepository",
                "codeartifact:UpdateRepository",
                "codeartifact:AssociateExternalConnection",
                "codeartifact:DisassociateExternalConnection",
                "codeartifact:PutDomainPermissionsPolicy",
                "codeartifact:PutRepositoryPermissionsPolicy",
                "codeartifact:TagResource",
                "codeartifact:UntagResource",
            ],
            [
                scope.arn("codeartifact", f"domain/{naming.codeartifact_domain(scope.project, s)}"),
                scope.arn("codeartifact", f"repository/{naming.codeartifact_domain(scope.project, s)}/*"),
            ],
        ),
        allow(
            "StageAutoscaling",
            [
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:DeregisterScalableTarget",
                "application-autoscaling:PutScalingPolicy",
                "application-autoscaling:DeleteScalingPolicy",
                "application-autoscaling:TagResource",
            ],
            [scope.arn("application-autoscaling", "scalable-target/*")],
            {"StringEquals": {"aws:ResourceAccount": scope.account}},
        ),
        # EC2 (the sandbox's network and VM): created tagged, changed only when tagged.
        allow(
            "CreateStageNetworkAndVm",
            [
                "ec2:CreateVpc",
                "ec2:CreateSubnet",
                "ec2:CreateSecurityGroup",
                "ec2:CreateRouteTable",
                "ec2:CreateVpcEndpoint",
                "ec2:RunInstances",
                "ec2:CreateTags",
            ],
            [scope.arn("ec2", f"{kind}/*") for kind in EC2_KINDS],
            req,
        ),
        allow(
            "ManageStageNetworkAndVm",
            [
                "ec2:DeleteVpc",
                "ec2:DeleteSubnet",
                "ec2:DeleteSecurityGroup",
                "ec2:DeleteRouteTable",
                "ec2:DeleteVpcEndpoints",
                "ec2:ModifyVpcAttribute",
                "ec2:ModifyVpcEndpoint",
                "ec2:ModifySubnetAttribute",
                "ec2:AssociateRouteTable",
                "ec2:DisassociateRouteTable",
                "ec2:AuthorizeSecurityGroupEgress",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupEgress",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:ModifyInstanceAttribute",
                "ec2:ModifyInstanceMetadataOptions",
                "ec2:StopInstances",
                "ec2:StartInstances",
                "ec2:TerminateInstances",
                "ec2:CreateTags",
                "ec2:DeleteTags",
                "ec2:RunInstances",
                "ec2:CreateVpcEndpoint",
            ],
            [scope.arn("ec2", f"{kind}/*") for kind in EC2_KINDS],
            res,
        ),
        # RunInstances also names the (public) image and the interface it creates.
        allow(
            "LaunchFromPublicImages",
            ["ec2:RunInstances"],
            [f"arn:{p}:ec2:{scope.region}::image/*", scope.arn("ec2", "network-interface/*")],
        ),
    ]
    return document(*statements)
