"""The IAM documents of the bootstrap stack, as plain dicts: every ARN in them is known from config alone.

Trust policies admit one GitHub environment's OIDC subject with `aud` checked. The deploy role may touch only its
stage's resources (by the `stage` tag where the service supports it, else by the `<project>-<stage>-` names the
stage stack uses) and runs under a permissions boundary that refuses changes to the CI identities and any role
created without the stage's workload boundary, so it cannot grant itself (or a role it passes) more. Preview roles
read; promotion roles do what `mlinfra promote` does. The state backend's grants are per stage, down to the object
keys of that stage's state (S3 SSE-KMS encryption context).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mlinfra_infra import naming

from . import names

Policy = dict[str, Any]


def document(*statements: dict[str, Any]) -> Policy:
    """A policy document from statements."""
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(sid: str, actions: list[str], resources: list[str], condition: dict[str, Any] | None = None) -> Policy:
    """One Allow statement."""
    out: Policy = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        out["Condition"] = condition
    return out


def deny(sid: str, actions: list[str], resources: list[str], condition: dict[str, Any] | None = None) -> Policy:
    """One Deny statement."""
    out: Policy = {"Sid": sid, "Effect": "Deny", "Action": actions, "Resource": resources}
    if condition:
        out["Condition"] = condition
    return out


# IAM's size limits (characters, whitespace not counted): a managed policy 6,144; a role's inline policies 10,240.
MANAGED_POLICY_LIMIT = 6144


def size(policy: Policy) -> int:
    """A policy's size as IAM counts it (JSON without whitespace)."""
    return len(json.dumps(policy, separators=(",", ":")))


def split(policy: Policy, limit: int = MANAGED_POLICY_LIMIT) -> list[Policy]:
    """A policy as several documents of whole statements, each within `limit` (for managed policies)."""
    parts: list[list[Policy]] = [[]]
    for statement in policy["Statement"]:
        candidate = document(*parts[-1], statement)
        if parts[-1] and size(candidate) > limit:
            parts.append([statement])
        else:
            parts[-1].append(statement)
    out = [document(*part) for part in parts]
    too_big = [p for p in out if size(p) > limit]
    if too_big:
        raise ValueError(f"a statement of {too_big[0]['Statement'][0].get('Sid')} alone is over {limit} characters")
    return out


@dataclass(frozen=True)
class StageScope:
    """What the policies of one stage need to know: names, accounts and the backend."""

    project: str
    stage: str
    stages: tuple[str, ...]
    account: str
    region: str
    repository: str
    tooling_account: str
    registry_bucket: str
    source_stage: str | None  # the stage promotion copies from (None for the entry stage)
    source_account: str | None
    source_registry_bucket: str | None
    self_managed_state: bool
    partition: str = "aws"
    next_stage: str | None = None  # the stage promoted into from this one (None for the last)
    next_account: str | None = None

    @property
    def reads_source_by_role(self) -> bool:
        """Whether the source stage lives in another account: its reads go through its source role, not direct."""
        return self.source_account is not None and self.source_account != self.account

    @property
    def has_source_roles(self) -> bool:
        """Whether this stage gets a source and an approval role (the next stage is in another account)."""
        return self.next_account is not None and self.next_account != self.account

    @property
    def prefix(self) -> str:
        """The name prefix of the stage's fixed-name resources."""
        return f"{self.project}-{self.stage}-"

    @property
    def state_bucket(self) -> str:
        """The state bucket (tooling account)."""
        return names.state_bucket(self.project, self.tooling_account, self.region)

    def arn(self, service: str, resource: str, *, account: str | None = None, region: str | None = None) -> str:
        """An ARN of `service` in this stage's account and region (or those given)."""
        region = self.region if region is None else region
        account = self.account if account is None else account
        return f"arn:{self.partition}:{service}:{region}:{account}:{resource}"

    def role_arn(self, kind: names.RoleKind) -> str:
        """The ARN of one of this stage's CI roles."""
        return names.role_arn(self.account, names.role(self.project, self.stage, kind), self.partition)

    def boundary_arn(self, name: str) -> str:
        """The ARN of a managed policy of this stage's account."""
        return names.policy_arn(self.account, name, self.partition)


# --- trust ----------------------------------------------------------------------------------------------------


def github_trust(scope: StageScope, kind: names.RoleKind) -> Policy:
    """The trust policy of a CI role: GitHub's OIDC tokens of exactly one environment, audience sts.amazonaws.com.

    StringEquals (not StringLike) on `sub`: no wildcard can admit another branch, environment or repository.
    """
    env = names.environment(scope.stage, kind)
    return document(
        {
            "Sid": "GitHubEnvironment" + "".join(part.capitalize() for part in env.split("-")),
            "Effect": "Allow",
            "Principal": {"Federated": names.oidc_provider_arn(scope.account, scope.partition)},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    f"{names.GITHUB_ISSUER_HOST}:aud": names.STS_AUDIENCE,
                    f"{names.GITHUB_ISSUER_HOST}:sub": names.subject(scope.repository, env),
                }
            },
        }
    )


# --- state backend (as seen by the roles) -----------------------------------------------------------------------


def state_objects(scope: StageScope, purposes: tuple[str, ...]) -> list[str]:
    paths = names.state_paths(scope.project, scope.stage)
    return [f"arn:{scope.partition}:s3:::{scope.state_bucket}/{paths[p]}" for p in purposes]


READ_STATE = ("checkpoint", "history", "backups")
WRITE_STATE = ("checkpoint", "history", "backups", "journal", "locks")


def state_statements(scope: StageScope, *, write: bool) -> list[Policy]:
    """A role's side of the state backend: this stage's state objects, listing, and the state key through S3."""
    if not scope.self_managed_state:
        return []
    bucket = f"arn:{scope.partition}:s3:::{scope.state_bucket}"
    objects = state_objects(scope, WRITE_STATE if write else READ_STATE)
    actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"] if write else ["s3:GetObject"]
    key_actions = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"] if write else ["kms:Decrypt"]
    return [
        allow("StateOfThisStage", actions, objects),
        allow("StateBackendMeta", ["s3:GetObject"], [f"{bucket}/.pulumi/meta.yaml"]),
        allow("StateBackendList", ["s3:ListBucket"], [bucket], {"StringLike": {"s3:prefix": [".pulumi/*"]}}),
        allow(
            "StateKeyThroughS3ForThisStage",
            key_actions,
            [scope.arn("kms", "key/*", account=scope.tooling_account)],
            {
                "StringEquals": {"kms:ViaService": f"s3.{scope.region}.amazonaws.com"},
                "StringLike": {"kms:EncryptionContext:aws:s3:arn": objects},
            },
        ),
    ]


def secrets_key_statement(scope: StageScope, *, write: bool) -> Policy:
    """The stage's Pulumi secrets key (in the stage's account), found by its alias.

    A preview role needs kms:Decrypt here: `pulumi preview` decrypts the stack's data key to read the stack. That
    exposes the stage's secret config values to every job that can assume the preview role, which is why preview
    roles are per stage and protected stages' preview environments admit only the default branch (or a reviewer).
    """
    actions = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"] if write else ["kms:Decrypt"]
    return allow(
        "PulumiSecretsKeyOfThisStage",
        actions,
        [scope.arn("kms", "key/*")],
        {"ForAnyValue:StringEquals": {"kms:ResourceAliases": [names.secrets_key_alias(scope.project, scope.stage)]}},
    )


# --- read-only planning -----------------------------------------------------------------------------------------

# What the AWS provider reads to plan and refresh the stage stack: metadata, never data (no s3:GetObject, no
# kms:Decrypt of the registry key, no secret values). Reads that take a resource are kept to the stage's account
# and region; the rest (list and account-level describes) have no resource to name.
UNSCOPED_READS = [
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "cloudwatch:ListTagsForResource",
    "codeartifact:ListTagsForResource",
    "ec2:DescribeAccountAttributes",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceCreditSpecifications",
    "ec2:DescribeInstances",
    "ec2:DescribeNetworkAcls",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribePrefixLists",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroupRules",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeTags",
    "ec2:DescribeVolumes",
    "ec2:DescribeVpcEndpoints",
    "ec2:DescribeVpcs",
    "kms:ListAliases",
    "logs:DescribeLogGroups",
    "logs:ListTagsForResource",
    "sagemaker:ListEndpointConfigs",
    "sagemaker:ListEndpoints",
    "sagemaker:ListModels",
    "sagemaker:ListTags",
    # `mlinfra check` and `mlinfra up` compare the blue/green peak with the account's instance quotas.
    "servicequotas:ListAWSDefaultServiceQuotas",
    "servicequotas:ListServiceQuotas",
    "sns:GetSubscriptionAttributes",
    "sns:ListTagsForResource",
    "ssm:ListTagsForResource",
]


def scoped_reads(scope: StageScope) -> list[tuple[list[str], list[str]]]:
    """Reads that name a resource, each with the stage account's (or stage's) resources it may read."""
    p, account = scope.partition, scope.account
    return [
        (
            ["cloudwatch:DescribeAlarms", "cloudwatch:GetDashboard"],
            [scope.arn("cloudwatch", "alarm:*"), f"arn:{p}:cloudwatch::{account}:dashboard/*"],
        ),
        (
            [
                "codeartifact:DescribeDomain",
                "codeartifact:DescribeRepository",
                "codeartifact:GetDomainPermissionsPolicy",
                "codeartifact:GetRepositoryPermissionsPolicy",
            ],
            [scope.arn("codeartifact", "domain/*"), scope.arn("codeartifact", "repository/*")],
        ),
        (["ec2:DescribeInstanceAttribute", "ec2:DescribeVpcAttribute"], [scope.arn("ec2", "*")]),
        (
            [
                "iam:GetInstanceProfile",
                "iam:GetPolicy",
                "iam:GetPolicyVersion",
                "iam:GetRole",
                "iam:GetRolePolicy",
                "iam:ListAttachedRolePolicies",
                "iam:ListInstanceProfilesForRole",
                "iam:ListPolicyVersions",
                "iam:ListRolePolicies",
            ],
            [
                f"arn:{p}:iam::{account}:role/*",
                f"arn:{p}:iam::{account}:policy/*",
                f"arn:{p}:iam::{account}:instance-profile/*",
            ],
        ),
        (
            ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags"],
            [scope.arn("kms", "key/*")],
        ),
        (
            [
                "lambda:GetFunction",
                "lambda:GetFunctionCodeSigningConfig",
                "lambda:GetFunctionConfiguration",
                "lambda:GetFunctionEventInvokeConfig",
                "lambda:GetPolicy",
                "lambda:ListVersionsByFunction",
            ],
            [scope.arn("lambda", "function:*")],
        ),
        (["sqs:GetQueueAttributes", "sqs:ListQueueTags"], [scope.arn("sqs", "*")]),
        # A refresh reads back the drift job's code package (HeadObject): code, not model data.
        (["s3:GetObject"], [f"arn:{p}:s3:::{scope.registry_bucket}/code/*"]),
        (
            [
                "s3:GetAccelerateConfiguration",
                "s3:GetBucketAcl",
                "s3:GetBucketCORS",
                "s3:GetBucketLocation",
                "s3:GetBucketLogging",
                "s3:GetBucketObjectLockConfiguration",
                "s3:GetBucketOwnershipControls",
                "s3:GetBucketPolicy",
                "s3:GetBucketPublicAccessBlock",
                "s3:GetBucketRequestPayment",
                "s3:GetBucketTagging",
                "s3:GetBucketVersioning",
                "s3:GetBucketWebsite",
                "s3:GetEncryptionConfiguration",
                "s3:GetLifecycleConfiguration",
                "s3:GetReplicationConfiguration",
            ],
            stage_buckets(scope),
        ),
        (
            [
                "sagemaker:DescribeEndpoint",
                "sagemaker:DescribeEndpointConfig",
                "sagemaker:DescribeModel",
                "sagemaker:DescribeModelPackageGroup",
            ],
            [scope.arn("sagemaker", "*")],
        ),
        (["scheduler:GetSchedule"], [scope.arn("scheduler", "schedule/*")]),
        (["sns:GetTopicAttributes"], [scope.arn("sns", "*")]),
        (
            ["ssm:DescribeDocument", "ssm:DescribeDocumentPermission", "ssm:GetDocument"],
            [scope.arn("ssm", "document/*")],
        ),
    ]


def stage_buckets(scope: StageScope) -> list[str]:
    """The stage stack's buckets: the registry (fixed name) and its access-log bucket (named by S3 under a prefix)."""
    logs = naming.log_bucket_prefix(scope.project, scope.stage)
    return [f"arn:{scope.partition}:s3:::{scope.registry_bucket}", f"arn:{scope.partition}:s3:::{logs}*"]


def plan_statements(scope: StageScope) -> list[Policy]:
    """What planning the stage stack reads: the caller, the AMI parameter, zones, and resource metadata."""
    statements = [
        allow("WhoAmI", ["sts:GetCallerIdentity"], ["*"]),
        allow(
            "PublicAmiParameters",
            ["ssm:GetParameter"],
            [f"arn:{scope.partition}:ssm:{scope.region}::parameter/aws/service/*"],
        ),
        allow("ListAndDescribe", UNSCOPED_READS, ["*"]),
    ]
    for index, (actions, resources) in enumerate(scoped_reads(scope)):
        service = actions[0].split(":")[0].replace("-", " ").title().replace(" ", "")
        statements.append(allow(f"Read{service}Metadata{index}", actions, resources))
    return statements


def gate_record_statements(scope: StageScope) -> list[Policy]:
    """The registry's records a plan reads to re-check promotion gates: stage pointers, audit, version records.

    Never an artifact (`models/<model>/sha256/...`): the registry key's Decrypt is only usable through S3
    (kms:ViaService), so it opens no more than these reads.
    """
    registry = f"arn:{scope.partition}:s3:::{scope.registry_bucket}"
    return [
        allow(
            "GateRecords",
            ["s3:GetObject"],
            [f"{registry}/stages/*", f"{registry}/audit/*", f"{registry}/models/*/versions/*"],
        ),
        # With ListBucket, S3 answers a missing record 404 (not 403), which the gates read as "none yet".
        allow(
            "GateRecordsList",
            ["s3:ListBucket"],
            [registry],
            {"StringLike": {"s3:prefix": ["stages/*", "audit/*", "models/*/versions/*"]}},
        ),
        allow(
            "GateRecordsKeyThroughS3",
            ["kms:Decrypt"],
            [scope.arn("kms", "key/*")],
            {
                "StringEquals": {"kms:ViaService": f"s3.{scope.region}.amazonaws.com"},
                "ForAnyValue:StringEquals": {"kms:ResourceAliases": [naming.key_alias(scope.project, scope.stage)]},
            },
        ),
    ]


def source_gate_statements(scope: StageScope) -> list[Policy]:
    """What `mlinfra check` reads of the source stage to re-check a pin's gates (the access contract's calls).

    The source's stage pointers and version records (never an artifact), its key through S3 only, the version's
    model package and the source's alarm states, directly: for a source in the same account only. Across accounts
    the role assumes the source's source role instead (`assume_source_statements`, infra/bootstrap/source_roles.py):
    alarms and model packages have no resource policy that could admit another account.
    """
    if not (scope.source_stage and scope.source_registry_bucket and scope.source_account):
        return []
    source = f"arn:{scope.partition}:s3:::{scope.source_registry_bucket}"
    prefix = f"{scope.project}-{scope.source_stage}-"
    return [
        allow("SourceGateRecords", ["s3:GetObject"], [f"{source}/stages/*", f"{source}/models/*/versions/*"]),
        allow(
            "SourceGateRecordsList",
            ["s3:ListBucket"],
            [source],
            {"StringLike": {"s3:prefix": ["stages/*", "models/*/versions/*"]}},
        ),
        _source_key_through_s3(scope, "SourceGateRecordsKeyThroughS3"),
        allow(
            "SourceModelPackages",
            ["sagemaker:DescribeModelPackage"],
            [scope.arn("sagemaker", f"model-package/{prefix}*/*", account=scope.source_account)],
        ),
        allow(
            "SourceAlarmStates",
            ["cloudwatch:DescribeAlarms"],
            [scope.arn("cloudwatch", f"alarm:{prefix}*", account=scope.source_account)],
        ),
    ]


def _source_key_through_s3(scope: StageScope, sid: str) -> Policy:
    """Decrypt with the source registry's key (by its alias), only as S3 uses it for a read."""
    alias = naming.key_alias(scope.project, str(scope.source_stage))
    return allow(
        sid,
        ["kms:Decrypt"],
        [scope.arn("kms", "key/*", account=scope.source_account)],
        {
            "StringEquals": {"kms:ViaService": f"s3.{scope.region}.amazonaws.com"},
            "ForAnyValue:StringEquals": {"kms:ResourceAliases": [alias]},
        },
    )


def assume_source_statements(scope: StageScope, kind: names.RoleKind) -> list[Policy]:
    """Across accounts: assume the source stage's source role (and, for promotion, its approval role).

    Those roles (infra/bootstrap/source_roles.py) trust exactly this stage's preview and promotion roles.
    """
    source, account = str(scope.source_stage), str(scope.source_account)
    roles = [names.role_arn(account, names.source_role(scope.project, source), scope.partition)]
    if kind == "promotion":
        roles.append(names.role_arn(account, names.approval_role(scope.project, source), scope.partition))
    return [allow("AssumeSourceStageRoles", ["sts:AssumeRole"], roles)]


def preview_policy(scope: StageScope) -> Policy:
    """The preview role: plan the stage stack, read its state, its secrets and its gate records; change nothing."""
    return document(
        *plan_statements(scope),
        *state_statements(scope, write=False),
        secrets_key_statement(scope, write=False),
        *gate_record_statements(scope),
        *(assume_source_statements(scope, "preview") if scope.reads_source_by_role else []),
        *([] if scope.reads_source_by_role else source_gate_statements(scope)),
    )


# --- promotion --------------------------------------------------------------------------------------------------


def promotion_policy(scope: StageScope) -> Policy:
    """The promotion role: what `mlinfra promote` does in this stage, and read on the source stage's `models/`.

    The source registry's bucket and key policies must grant the same (its stack's `registry.readerRoleArns` lists
    this role): cross-account access needs both sides. Across accounts the rest of the source (pointer, audit,
    package, alarms, the approval) goes through the source stage's source and approval roles.
    """
    p, s = scope.partition, scope.stage
    own = f"arn:{p}:s3:::{scope.registry_bucket}"
    key_alias = naming.key_alias(scope.project, s)
    statements = [
        allow("OwnRegistryList", ["s3:ListBucket"], [own]),
        allow("OwnRegistryRead", ["s3:GetObject", "s3:GetObjectAttributes"], [f"{own}/*"]),
        allow("OwnRegistryCopyArtifactsAndVersionFiles", ["s3:PutObject"], [f"{own}/models/*"]),
        allow("OwnRegistryRetention", ["s3:PutObjectRetention"], [f"{own}/models/*", f"{own}/audit/*"]),
        allow(
            "OwnRegistryCreateAuditAndPointers",
            ["s3:PutObject"],
            [f"{own}/audit/*", f"{own}/stages/*"],
            {"Null": {"s3:if-none-match": "false"}},
        ),
        allow("OwnRegistrySwapPointer", ["s3:PutObject"], [f"{own}/stages/*"], {"Null": {"s3:if-match": "false"}}),
        allow(
            "OwnRegistryKey",
            ["kms:Decrypt", "kms:GenerateDataKey"],
            [scope.arn("kms", "key/*")],
            {"ForAnyValue:StringEquals": {"kms:ResourceAliases": [key_alias]}},
        ),
        allow(
            "ModelPackages",
            [
                "sagemaker:CreateModelPackage",
                "sagemaker:DescribeModelPackage",
                "sagemaker:UpdateModelPackage",
                "sagemaker:DescribeModelPackageGroup",
                "sagemaker:AddTags",
            ],
            [
                scope.arn("sagemaker", f"model-package-group/{scope.prefix}*"),
                scope.arn("sagemaker", f"model-package/{scope.prefix}*/*"),
            ],
        ),
        allow("ListModelPackages", ["sagemaker:ListModelPackages"], ["*"]),
        allow(
            "StatusAndGates",
            ["sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"],
            [
                scope.arn("sagemaker", f"endpoint/{scope.prefix}*"),
                scope.arn("sagemaker", "endpoint-config/*"),
                scope.arn("sagemaker", "model/*"),
            ],
        ),
        allow("AlarmStates", ["cloudwatch:DescribeAlarms"], [scope.arn("cloudwatch", f"alarm:{scope.prefix}*")]),
    ]
    if scope.reads_source_by_role:
        # Across accounts the source's records, packages and alarms are read through its source role, its
        # package approved through its approval role; this role itself reads only what S3's server-side copy of
        # an artifact and of a version's files reads (the source's bucket and key policies list it).
        statements += [
            *assume_source_statements(scope, "promotion"),
            allow(
                "SourceRegistryCopyModels",
                ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging"],
                [f"arn:{p}:s3:::{scope.source_registry_bucket}/models/*"],
            ),
            # With ListBucket there, a lost source artifact is a 404 (NoSuchKey), not a 403 mistaken for a denial.
            allow(
                "SourceRegistryListModels",
                ["s3:ListBucket"],
                [f"arn:{p}:s3:::{scope.source_registry_bucket}"],
                {"StringLike": {"s3:prefix": ["models/*"]}},
            ),
            _source_key_through_s3(scope, "SourceRegistryKeyThroughS3"),
        ]
    elif scope.source_stage and scope.source_registry_bucket and scope.source_account:
        source = f"arn:{p}:s3:::{scope.source_registry_bucket}"
        prefix = f"{scope.project}-{scope.source_stage}-"
        statements += [
            # The version's artifact and records, the source's pointer (what it runs) and audit (since when).
            allow(
                "SourceRegistryReadModels",
                ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes", "s3:GetObjectTagging"],
                [f"{source}/models/*", f"{source}/stages/*", f"{source}/audit/*"],
            ),
            allow(
                "SourceRegistryListModels",
                ["s3:ListBucket"],
                [source],
                {"StringLike": {"s3:prefix": ["models/*", "stages/*", "audit/*"]}},
            ),
            allow(
                "SourceStageAlarmStates",
                ["cloudwatch:DescribeAlarms"],
                [scope.arn("cloudwatch", f"alarm:{prefix}*", account=scope.source_account)],
            ),
            # The version's model package: its gates (describe) and an approval recorded on it (update).
            allow(
                "SourceModelPackages",
                ["sagemaker:DescribeModelPackage"],
                [scope.arn("sagemaker", f"model-package/{prefix}*/*", account=scope.source_account)],
            ),
            # An approval, and nothing else, on the source's package (what `mlinfra approve` records there).
            allow(
                "SourceModelPackageApprovals",
                ["sagemaker:UpdateModelPackage"],
                [scope.arn("sagemaker", f"model-package/{prefix}*/*", account=scope.source_account)],
                {"StringEquals": {"sagemaker:ModelApprovalStatus": "Approved"}},
            ),
            _source_key_through_s3(scope, "SourceRegistryKeyThroughS3"),
        ]
    return document(*statements)
