"""Rules for S3 buckets and KMS keys."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from .engine import Context, Index, Resource, as_list, document, get, resource_rule, stack_rule, statements
from .tokens import (
    BUCKET,
    BUCKET_POLICY,
    KEY,
    LIFECYCLE,
    LOGGING,
    OBJECT_LOCK,
    OWNERSHIP,
    PUBLIC_ACCESS,
    SSE,
    VERSIONING,
    _by_bucket,
    _log_targets,
    bucket_id,
)

# ---------------------------------------------------------------------------------------------------------------
# S3


@stack_rule(
    "s3-kms-encryption",
    "Every bucket has default encryption; data buckets use SSE-KMS with the stage's customer key (S3 server access "
    "log buckets must use SSE-S3, the only encryption log delivery supports).",
    ("CKV_AWS_145", "CKV_AWS_19"),
)
def s3_kms_encryption(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    index = Index(resources)
    sse = _by_bucket(index, SSE)
    targets = _log_targets(index)
    for bucket in index.of(BUCKET):
        config = sse.get(bucket_id(bucket))
        if config is None:
            yield bucket.name, "no default encryption configuration"
            continue
        default = get(config.inputs, "rules.0.applyServerSideEncryptionByDefault", {})
        if bucket_id(bucket) in targets:
            if default.get("sseAlgorithm") not in ("AES256", "aws:kms"):
                yield bucket.name, "access-log bucket without default encryption"
        elif default.get("sseAlgorithm") != "aws:kms" or not default.get("kmsMasterKeyId"):
            yield bucket.name, "default encryption is not SSE-KMS with a customer key (kmsMasterKeyId)"


@stack_rule(
    "s3-versioning",
    "Data buckets keep versions (an overwritten pointer or record can be recovered); log buckets are exempt.",
    ("CKV_AWS_21",),
)
def s3_versioning(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    index = Index(resources)
    versioning = _by_bucket(index, VERSIONING)
    targets = _log_targets(index)
    for bucket in index.of(BUCKET):
        if bucket_id(bucket) in targets:
            continue
        config = versioning.get(bucket_id(bucket))
        if config is None or get(config.inputs, "versioningConfiguration.status") != "Enabled":
            yield bucket.name, "versioning is not Enabled"


def _public_access(flag: str, rule_id: str, checkov: str) -> None:
    def check(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
        index = Index(resources)
        blocks = _by_bucket(index, PUBLIC_ACCESS)
        for bucket in index.of(BUCKET):
            block = blocks.get(bucket_id(bucket))
            if block is None:
                yield bucket.name, "no public access block"
            elif block.inputs.get(flag) is not True:
                yield bucket.name, f"public access block without {flag}"

    stack_rule(rule_id, f"Every bucket's public access block sets {flag}.", (checkov, "CKV2_AWS_6"))(check)


_public_access("blockPublicAcls", "s3-block-public-acls", "CKV_AWS_53")
_public_access("blockPublicPolicy", "s3-block-public-policy", "CKV_AWS_54")
_public_access("ignorePublicAcls", "s3-ignore-public-acls", "CKV_AWS_55")
_public_access("restrictPublicBuckets", "s3-restrict-public-buckets", "CKV_AWS_56")


@stack_rule(
    "s3-tls-only",
    # No Checkov id: CKV_AWS_379 ("secure data transport policy") inspects aws_s3_bucket_acl, not bucket policies,
    # and Checkov has no built-in check of a TLS-only bucket policy.
    "Every data bucket's policy denies requests without TLS (aws:SecureTransport false).",
)
def s3_tls_only(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    index = Index(resources)
    policies = _by_bucket(index, BUCKET_POLICY)
    targets = _log_targets(index)
    for bucket in index.of(BUCKET):
        if bucket_id(bucket) in targets:
            continue
        policy = policies.get(bucket_id(bucket))
        denies = [
            s
            for s in statements(document(policy.inputs.get("policy") if policy else None))
            if s.get("Effect") == "Deny" and str(get(s, "Condition.Bool.aws:SecureTransport", "")).lower() == "false"
        ]
        if not denies:
            yield bucket.name, "bucket policy does not deny aws:SecureTransport false"


@stack_rule(
    "s3-uploads-pinned-to-key",
    "Data buckets whose default encryption names a customer key refuse uploads naming another key (bucket policy "
    "deny on s3:x-amz-server-side-encryption-aws-kms-key-id).",
)
def s3_uploads_pinned(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    index = Index(resources)
    policies = _by_bucket(index, BUCKET_POLICY)
    sse = _by_bucket(index, SSE)
    for bucket in index.of(BUCKET):
        config = sse.get(bucket_id(bucket))
        key = get(config.inputs, "rules.0.applyServerSideEncryptionByDefault.kmsMasterKeyId") if config else None
        if not key:
            continue
        policy = policies.get(bucket_id(bucket))
        pinned = [
            s
            for s in statements(document(policy.inputs.get("policy") if policy else None))
            if s.get("Effect") == "Deny"
            and any(
                get(block, "s3:x-amz-server-side-encryption-aws-kms-key-id") == key
                for block in (s.get("Condition") or {}).values()
                if isinstance(block, dict)
            )
        ]
        if not pinned:
            yield bucket.name, f"bucket policy does not refuse uploads encrypted with a key other than {key}"


@stack_rule(
    "s3-ownership-enforced",
    "Every bucket disables ACLs (object ownership BucketOwnerEnforced).",
    ("CKV2_AWS_65",),
)
def s3_ownership(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    index = Index(resources)
    controls = _by_bucket(index, OWNERSHIP)
    for bucket in index.of(BUCKET):
        control = controls.get(bucket_id(bucket))
        if control is None or get(control.inputs, "rule.objectOwnership") != "BucketOwnerEnforced":
            yield bucket.name, "object ownership is not BucketOwnerEnforced (ACLs stay enabled)"


@stack_rule(
    "s3-lifecycle",
    "Every bucket has a lifecycle configuration; data buckets abort incomplete multipart uploads and expire "
    "captured requests after the configured registry.captureRetentionDays.",
    ("CKV2_AWS_61", "CKV_AWS_300"),
)
def s3_lifecycle(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    index = Index(resources)
    lifecycles = _by_bucket(index, LIFECYCLE)
    targets = _log_targets(index)
    for bucket in index.of(BUCKET):
        lifecycle = lifecycles.get(bucket_id(bucket))
        if lifecycle is None:
            yield bucket.name, "no lifecycle configuration"
            continue
        if bucket_id(bucket) in targets:
            continue
        rules = [r for r in as_list(lifecycle.inputs.get("rules")) if r.get("status") == "Enabled"]
        if not any(get(r, "abortIncompleteMultipartUpload.daysAfterInitiation") for r in rules):
            yield bucket.name, "no enabled rule aborts incomplete multipart uploads"
        capture = [r for r in rules if get(r, "filter.prefix") == "capture/" and get(r, "expiration.days")]
        limit = ctx.capture_retention_days
        if not capture:
            yield bucket.name, "no enabled rule expires captured requests (prefix capture/)"
        elif limit is not None and int(get(capture[0], "expiration.days")) > limit:
            yield (
                bucket.name,
                (
                    f"captured requests expire after {get(capture[0], 'expiration.days')} days, longer than "
                    f"registry.captureRetentionDays ({limit})"
                ),
            )


@stack_rule(
    "s3-access-logging",
    "Every data bucket sends S3 server access logs to a log bucket.",
    ("CKV_AWS_18",),
)
def s3_access_logging(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    index = Index(resources)
    logged = _by_bucket(index, LOGGING)
    targets = _log_targets(index)
    for bucket in index.of(BUCKET):
        if bucket_id(bucket) not in targets and bucket_id(bucket) not in logged:
            yield bucket.name, "no server access logging (aws:s3/bucketLogging)"


@resource_rule(
    "s3-object-lock-per-object",
    "No bucket-wide default Object Lock retention: it would lock captured requests past their expiry and make "
    "stage pointers undeletable; mlinfra sets retention per artifact and audit record.",
    (OBJECT_LOCK,),
)
def s3_object_lock_scope(resource: Resource, ctx: Context) -> Iterable[str]:
    if get(resource.inputs, "rule.defaultRetention"):
        yield "a default retention applies to every object (captures, pointers, uploads); lock per object instead"


# ---------------------------------------------------------------------------------------------------------------
# KMS


@resource_rule("kms-rotation", "Customer keys rotate yearly.", (KEY,), ("CKV_AWS_7",))
def kms_rotation(resource: Resource, ctx: Context) -> Iterable[str]:
    if resource.inputs.get("enableKeyRotation") is not True:
        yield "enableKeyRotation is not true"


@resource_rule(
    "kms-service-principals-scoped",
    "Key policy statements for AWS services carry a source condition (confused deputy), and kms:DescribeKey is "
    "not in a kms:GrantIsForAWSResource statement.",
    (KEY,),
)
def kms_service_scoped(resource: Resource, ctx: Context) -> Iterable[str]:
    for statement in statements(document(resource.inputs.get("policy"))):
        if statement.get("Effect") != "Allow":
            continue
        services = as_list(get(statement, "Principal.Service"))
        condition = statement.get("Condition") or {}
        flat = {key for block in condition.values() if isinstance(block, dict) for key in block}
        if services and not flat:
            yield f"statement {statement.get('Sid', '?')} lets {services} use the key without a source condition"
        if "kms:GrantIsForAWSResource" in flat and "kms:DescribeKey" in as_list(statement.get("Action")):
            yield f"statement {statement.get('Sid', '?')} puts kms:DescribeKey under kms:GrantIsForAWSResource"


@resource_rule(
    "kms-protected-key",
    "Where registry.protect is set (prod), the key policy refuses kms:ScheduleKeyDeletion.",
    (KEY,),
)
def kms_protected(resource: Resource, ctx: Context) -> Iterable[str]:
    if not ctx.protect:
        return
    denied = [
        s
        for s in statements(document(resource.inputs.get("policy")))
        if s.get("Effect") == "Deny" and "kms:ScheduleKeyDeletion" in as_list(s.get("Action"))
    ]
    if not denied:
        yield "registry.protect is set but the key policy does not deny kms:ScheduleKeyDeletion"
