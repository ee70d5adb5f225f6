"""The roles a stage lends the next stage when that stage lives in another account: read as a source, approve.

A promotion into stage T reads its source stage S (S's pointer, version records, audit, the version's model
package and S's alarm states; never an artifact: T's promotion role checks and copies that with its own
credentials) and `mlinfra approve` marks the version's model package in S Approved. CloudWatch alarms and SageMaker
model packages have no resource policy that could admit another account, so across accounts those calls need a
role in S's account:

- `<project>-<S>-source`: read only; trusted by T's preview and promotion roles (the gate re-check of `mlinfra
  check` runs with the preview role, `mlinfra promote` with the promotion role).
- `<project>-<S>-approval`: `sagemaker:UpdateModelPackage` setting `Approved` on S's packages only; trusted by
  T's promotion role only, so a preview role never gains a write on S.

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


# What the next stage reads of this one as its source: records only (never an artifact; promote checks and copies
# the artifact with its own promotion role, which the registry's bucket and key policies admit by readerRoleArns).
SOURCE_RECORDS = ("models/*/versions/*", "stages/*", "audit/*")


def source_read_policy(scope: StageScope) -> Policy:
    """What the next stage reads of this stage as its source: records, the version's package, alarm states.

    Exactly the access contract's calls on the source: its pointers, version records (and the files stored with a
    version), audit records, the key only through S3, DescribeModelPackage and DescribeAlarms. No artifact: a
    preview session of the next stage (any same-repository pull request of an unprotected stage) assumes this role.
    """
    registry = f"arn:{scope.partition}:s3:::{scope.registry_bucket}"
    return document(
        allow("RegistryRecords", ["s3:GetObject"], [f"{registry}/{prefix}" for prefix in SOURCE_RECORDS]),
        # With ListBucket, S3 answers a missing record 404 (not 403), which promote and the gates read as "none".
        allow(
            "RegistryRecordsList", ["s3:ListBucket"], [registry], {"StringLike": {"s3:prefix": list(SOURCE_RECORDS)}}
        ),
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
            ["sagemaker:DescribeModelPackage"],
            [scope.arn("sagemaker", f"model-package/{scope.prefix}*/*")],
        ),
        allow("AlarmStates", ["cloudwatch:DescribeAlarms"], [scope.arn("cloudwatch", f"alarm:{scope.prefix}*")]),
    )


def approval_policy(scope: StageScope) -> Policy:
    """`mlinfra approve`'s one write on its source stage: a version's model package becomes Approved.

    Only that: `sagemaker:ModelApprovalStatus` (a condition key of UpdateModelPackage in the service authorization
    reference: the status the request sets) must be Approved, so the role can neither reject nor reset a package,
    nor change its metadata without approving it.
    """
    return document(
        allow(
            "ApproveModelPackages",
            ["sagemaker:UpdateModelPackage"],
            [scope.arn("sagemaker", f"model-package/{scope.prefix}*/*")],
            {"StringEquals": {"sagemaker:ModelApprovalStatus": "Approved"}},
        )
    )
