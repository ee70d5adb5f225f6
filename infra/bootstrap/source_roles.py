"""The roles a stage lends the next stage when that stage lives in another account: read as a source, approve.

A promotion into stage T reads its source stage S (S's pointer, version records, audit, an artifact's metadata, the
version's model package and S's alarm states) and `mlinfra approve` marks the version's model package in S
Approved. CloudWatch alarms and SageMaker model packages have no resource policy that could admit another account,
so across accounts those calls need a role in S's account:

- `<project>-<S>-source`: read only; trusted by T's preview and promotion roles (the gate re-check of `mlinfra
  check` runs with the preview role, `mlinfra promote` with the promotion role).
- `<project>-<S>-approval`: `sagemaker:UpdateModelPackage` on S's packages only; trusted by T's promotion role
  only, so a preview role never gains a write on S.

Both trust exact role ARNs (no wildcard, no account root) with plain sts:AssumeRole: mlinfra sets no session tags
and no source identity, so neither is allowed.
"""

from __future__ import annotations

from mlinfra_infra import naming

from . import names
from .policies import Policy, StageScope, allow, document


def trusted_by(scope: StageScope, kinds: tuple[names.RoleKind, ...]) -> list[str]:
    """The ARNs of the next stage's CI roles of `kinds` (the only principals the roles trust)."""
    following, account = str(scope.next_stage), str(scope.next_account)
    return [names.role_arn(account, names.role(scope.project, following, kind), scope.partition) for kind in kinds]


def trust(scope: StageScope, kinds: tuple[names.RoleKind, ...]) -> Policy:
    """A trust policy admitting exactly the next stage's roles of `kinds`."""
    following = str(scope.next_stage)
    sid = "NextStage" + "".join(k.capitalize() for k in kinds) + "Of" + following.capitalize().replace("-", "")
    return document(
        {
            "Sid": sid,
            "Effect": "Allow",
            "Principal": {"AWS": trusted_by(scope, kinds)},
            "Action": "sts:AssumeRole",
        }
    )


def source_trust(scope: StageScope) -> Policy:
    """The source role's trust: the next stage's preview and promotion roles."""
    return trust(scope, ("preview", "promotion"))


def approval_trust(scope: StageScope) -> Policy:
    """The approval role's trust: the next stage's promotion role only."""
    return trust(scope, ("promotion",))


def source_read_policy(scope: StageScope) -> Policy:
    """What the next stage reads of this stage as its source: records, artifacts, packages, alarm states."""
    p = scope.partition
    registry = f"arn:{p}:s3:::{scope.registry_bucket}"
    prefixes = ["models/*", "stages/*", "audit/*"]
    return document(
        allow(
            "RegistryRecordsAndArtifacts",
            ["s3:GetObject", "s3:GetObjectAttributes"],
            [f"{registry}/{prefix}" for prefix in prefixes],
        ),
        # With ListBucket, S3 answers a missing record 404 (not 403), which promote and the gates read as "none".
        allow("RegistryList", ["s3:ListBucket"], [registry], {"StringLike": {"s3:prefix": prefixes}}),
        allow(
            "RegistryKeyThroughS3",
            ["kms:Decrypt"],
            [scope.arn("kms", "key/*")],
            {
                "StringEquals": {"kms:ViaService": f"s3.{scope.region}.amazonaws.com"},
                "ForAnyValue:StringEquals": {"kms:ResourceAliases": [naming.key_alias(scope.project, scope.stage)]},
            },
        ),
        allow(
            "ModelPackages",
            ["sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup"],
            [
                scope.arn("sagemaker", f"model-package-group/{scope.prefix}*"),
                scope.arn("sagemaker", f"model-package/{scope.prefix}*/*"),
            ],
        ),
        allow("AlarmStates", ["cloudwatch:DescribeAlarms"], [scope.arn("cloudwatch", f"alarm:{scope.prefix}*")]),
    )


def approval_policy(scope: StageScope) -> Policy:
    """`mlinfra approve`'s one write on its source stage: a version's model package becomes Approved."""
    return document(
        allow(
            "ApproveModelPackages",
            ["sagemaker:UpdateModelPackage"],
            [scope.arn("sagemaker", f"model-package/{scope.prefix}*/*")],
        )
    )
