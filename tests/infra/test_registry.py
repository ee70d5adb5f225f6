"""ModelRegistry under Pulumi's mock runtime: every security property of the registry bucket and its key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mlinfra.stacks.render import RenderedStack
from mlinfra_infra import outputs
from tests.conftest import policy

Render = Callable[..., RenderedStack]
READER = "arn:aws:iam::210987654321:role/mlinfra-prod-promoter"


@pytest.fixture
def stack(render_stack: Render) -> RenderedStack:
    return render_stack({"mlinfra:models": {"churn": {}, "fraud": {}}}, stage="dev")


def test_bucket_name_is_derived_from_project_stage_account_region(stack: RenderedStack) -> None:
    bucket = stack.named("registry-bucket")
    assert bucket.inputs["bucket"] == "mlinfra-dev-123456789012-eu-west-1"
    assert stack.outputs[outputs.REGISTRY_BUCKET] == bucket.inputs["bucket"]
    # Never set: force-new on a fixed-name bucket, and a refresh reads `true` back once the lock is on.
    assert "objectLockEnabled" not in bucket.inputs


def test_configured_bucket_name_wins(render_stack: Render) -> None:
    stack = render_stack({"mlinfra:registry": {"bucketName": "acme-models-dev"}})
    assert stack.named("registry-bucket").inputs["bucket"] == "acme-models-dev"


def test_customer_managed_key_with_rotation_and_bucket_key(stack: RenderedStack) -> None:
    key = stack.one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True, "registry-key: rotation must be on"
    sse = stack.named("registry-encryption")
    rule = sse.inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] == stack.outputs[outputs.REGISTRY_KEY_ARN]
    assert rule["bucketKeyEnabled"] is True


def test_all_public_access_blocked_and_acls_disabled(stack: RenderedStack) -> None:
    for prefix in ("registry", "registry-access-logs"):
        block = stack.named(f"{prefix}-public-access").inputs
        for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
            assert block[flag] is True, f"{prefix}-public-access: {flag} must be true"
        ownership = stack.named(f"{prefix}-ownership").inputs
        assert ownership["rule"]["objectOwnership"] == "BucketOwnerEnforced", prefix


def test_versioning_enabled(stack: RenderedStack) -> None:
    versioning = stack.named("registry-versioning").inputs
    assert versioning["versioningConfiguration"]["status"] == "Enabled"


def test_policy_denies_non_tls_access(stack: RenderedStack) -> None:
    doc = policy(stack.named("registry-policy").inputs)
    deny = [s for s in doc["Statement"] if s["Effect"] == "Deny" and "aws:SecureTransport" in str(s.get("Condition"))]
    assert len(deny) == 1, "registry-policy: one TLS-only deny statement"
    assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny[0]["Action"] == ["s3:*"]
    assert not [s for s in doc["Statement"] if s["Effect"] == "Allow"], "no grants without readers configured"


def test_lifecycle_rules(stack: RenderedStack) -> None:
    rules = {r["id"]: r for r in stack.named("registry-lifecycle").inputs["rules"]}
    assert rules["abort-incomplete-uploads"]["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] == 90
    assert rules["expire-data-capture"]["filter"] == {"prefix": "capture/"}
    assert rules["expire-data-capture"]["expiration"]["days"] == 30
    assert rules["expire-monitoring-reports"]["filter"] == {"prefix": "monitoring/"}
    assert rules["expire-abandoned-uploads"]["filter"] == {"prefix": "uploads/"}
    assert rules["expire-abandoned-uploads"]["expiration"]["days"] == 7


def test_one_package_group_per_declared_model(stack: RenderedStack) -> None:
    groups = sorted(
        r.inputs["modelPackageGroupName"] for r in stack.of_type("aws:sagemaker/modelPackageGroup:ModelPackageGroup")
    )
    assert groups == ["mlinfra-dev-churn", "mlinfra-dev-fraud"]
    assert stack.outputs[outputs.PACKAGE_GROUPS] == {"churn": "mlinfra-dev-churn", "fraud": "mlinfra-dev-fraud"}
    assert not stack.of_type("aws:sagemaker/endpoint:Endpoint"), "unpinned models get no endpoint"


def test_object_lock_only_when_configured_and_without_a_default_retention(
    render_stack: Render, stack: RenderedStack
) -> None:
    assert not stack.of_type("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    locked = render_stack({"mlinfra:registry": {"objectLock": {"mode": "COMPLIANCE", "days": 30}}}, stage="prod")
    # The bucket's own flag never changes (it forces replacement of a fixed-name bucket); the lock configuration
    # switches Object Lock on, with no default rule: captures, pointers and uploads stay unlocked, and the CLI sets
    # COMPLIANCE/30 days on each artifact and audit record it writes.
    assert "objectLockEnabled" not in locked.named("registry-bucket").inputs
    config = locked.one("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration").inputs
    assert config["objectLockEnabled"] == "Enabled"
    assert "rule" not in config
    assert locked.named("registry-bucket").inputs["bucket"] == stack.named("registry-bucket").inputs["bucket"].replace(
        "-dev-", "-prod-"
    )
    capture = {r["id"]: r for r in locked.named("registry-lifecycle").inputs["rules"]}["expire-data-capture"]
    assert capture["expiration"]["days"] == 30


def test_next_stage_readers_get_read_on_models_prefix_only(render_stack: Render) -> None:
    stack = render_stack({"mlinfra:registry": {"readerRoleArns": [READER]}}, stage="staging")
    bucket_arn = "arn:aws:s3:::mlinfra-staging-123456789012-eu-west-1"
    doc = policy(stack.named("registry-policy").inputs)
    grants = [s for s in doc["Statement"] if s["Effect"] == "Allow"]
    read = next(s for s in grants if "s3:GetObject" in s["Action"])
    assert read["Principal"] == {"AWS": [READER]}
    assert read["Resource"] == [f"{bucket_arn}/models/*"]
    assert not any(a.startswith(("s3:Put", "s3:Delete")) for s in grants for a in s["Action"])
    listing = next(s for s in grants if s["Action"] == ["s3:ListBucket"])
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["models/*"]}}
    key_doc: dict[str, Any] = policy(stack.one("aws:kms/key:Key").inputs)
    decrypt = next(s for s in key_doc["Statement"] if s["Sid"] == "NextStagePromotionRolesDecryptThroughS3")
    assert decrypt["Principal"] == {"AWS": [READER]}
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}


def test_every_registry_resource_is_tagged(stack: RenderedStack) -> None:
    taggable = [r for r in stack.children("registry") if "tags" in r.inputs]
    assert {r.type for r in taggable} >= {"aws:s3/bucket:Bucket", "aws:kms/key:Key"}
    for resource in taggable:
        assert resource.inputs["tags"]["managed-by"] == "mlinfra", resource.name
        assert resource.inputs["tags"]["stage"] == "dev", resource.name
        assert resource.inputs["tags"]["owner"] == "ml-platform", resource.name


def test_uploads_are_pinned_to_the_registry_key(stack: RenderedStack) -> None:
    doc = policy(stack.named("registry-policy").inputs)
    deny = next(s for s in doc["Statement"] if s["Sid"] == "DenyOtherKmsKeys")
    assert deny["Effect"] == "Deny" and deny["Action"] == ["s3:PutObject"]
    # Only when the header is sent (Null false): without it the bucket default, this key, applies.
    assert deny["Condition"] == {
        "StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": stack.outputs["registryKeyArn"]},
        "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"},
    }


def test_audit_is_create_only_and_pointers_compare_and_swap(stack: RenderedStack) -> None:
    bucket = "arn:aws:s3:::mlinfra-dev-123456789012-eu-west-1"
    statements = {s["Sid"]: s for s in policy(stack.named("registry-policy").inputs)["Statement"]}
    audit = statements["AuditRecordsAreCreateOnly"]
    assert (audit["Effect"], audit["Principal"], audit["Resource"]) == ("Deny", {"AWS": "*"}, [f"{bucket}/audit/*"])
    assert audit["Condition"] == {"Null": {"s3:if-none-match": "true"}}
    pointers = statements["StagePointersAreCompareAndSwap"]
    assert pointers["Resource"] == [f"{bucket}/stages/*"]
    # Both headers absent (an unconditional overwrite) is refused; either one present is allowed.
    assert pointers["Condition"] == {"Null": {"s3:if-none-match": "true", "s3:if-match": "true"}}


def test_cloudwatch_may_use_the_key_only_for_this_stages_alarms(stack: RenderedStack) -> None:
    key_doc = policy(stack.named("registry-key").inputs)
    grant = next(s for s in key_doc["Statement"] if s["Sid"] == "CloudWatchAlarmsPublishToEncryptedTopic")
    assert grant["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:mlinfra-dev-*"},
    }


def test_protected_registry_refuses_key_deletion(render_stack: Render, stack: RenderedStack) -> None:
    assert not [s for s in policy(stack.named("registry-key").inputs)["Statement"] if s["Effect"] == "Deny"]
    protected = render_stack({"mlinfra:registry": {"protect": True}}, stage="prod")
    deny = next(s for s in policy(protected.named("registry-key").inputs)["Statement"] if s["Effect"] == "Deny")
    assert (deny["Action"], deny["Principal"]) == (["kms:ScheduleKeyDeletion"], {"AWS": "*"})


def test_access_logs_of_the_registry_go_to_a_private_log_bucket(stack: RenderedStack) -> None:
    logs = stack.named("registry-access-logs")
    assert "bucket" not in logs.inputs, "auto-named: the registry keeps the only fixed bucket name"
    # Named by S3 under the stage's prefix (a deploy role scoped by `mlinfra-dev-` reaches no other stage's), and
    # left in the account when replaced or destroyed: Pulumi never tries to delete a bucket of logs.
    assert logs.inputs["bucketPrefix"] == "mlinfra-dev-logs-"
    assert logs.retain_on_delete
    logging = stack.one("aws:s3/bucketLogging:BucketLogging").inputs
    assert logging["bucket"] == "mlinfra-dev-123456789012-eu-west-1"
    assert logging["targetBucket"] != logging["bucket"]
    # S3's logging service writes with SSE-S3 only.
    rule = stack.named("registry-access-logs-encryption").inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    statements = {s["Sid"]: s for s in policy(stack.named("registry-access-logs-policy").inputs)["Statement"]}
    grant = statements["S3ServerAccessLogsOfTheRegistry"]
    assert grant["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert grant["Condition"] == {
        "ArnLike": {"aws:SourceArn": "arn:aws:s3:::mlinfra-dev-123456789012-eu-west-1"},
        "StringEquals": {"aws:SourceAccount": "123456789012"},
    }
    expiry = stack.named("registry-access-logs-lifecycle").inputs["rules"][0]["expiration"]["days"]
    assert expiry == 365


def _denied(doc: dict[str, Any], principal: str, action: str, resource: str) -> bool:
    """Whether a Deny statement of the bucket policy applies (wildcards, ArnLike/ArnNotLike on aws:PrincipalArn)."""
    import fnmatch

    def listed(value: Any) -> list[Any]:
        return value if isinstance(value, list) else [value]

    for s in doc["Statement"]:
        if s["Effect"] != "Deny" or not any(fnmatch.fnmatchcase(action, a) for a in listed(s["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in listed(s["Resource"])):
            continue
        condition = s.get("Condition", {})
        if set(condition) - {"ArnNotLike", "ArnLike"}:
            continue  # other conditions (TLS, headers) do not hold for this request
        not_like = listed(condition.get("ArnNotLike", {}).get("aws:PrincipalArn", []))
        if any(fnmatch.fnmatchcase(principal, arn) for arn in not_like):
            continue
        return True
    return False


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_audit_records_and_pointers_cannot_be_deleted_but_by_break_glass(render_stack: Render, stage: str) -> None:
    stack = render_stack({"mlinfra:models": {"churn": {}}}, stage=stage)
    doc = policy(stack.named("registry-policy").inputs)
    bucket = stack.named("registry-bucket").inputs["bucket"]
    account = bucket.split("-")[2]
    promoter = f"arn:aws:iam::{account}:role/mlinfra-{stage}-promotion"
    admin = f"arn:aws:iam::{account}:root"
    glass = f"arn:aws:iam::{account}:role/mlinfra-{stage}-break-glass"
    for key in ("audit/churn/20261127T020000-1.json", "stages/churn.json"):
        for action in ("s3:DeleteObject", "s3:DeleteObjectVersion"):
            for who in (promoter, admin):
                assert _denied(doc, who, action, f"arn:aws:s3:::{bucket}/{key}"), (who, action, key)
            assert not _denied(doc, glass, action, f"arn:aws:s3:::{bucket}/{key}"), (action, key)
    # Uploads are still discarded by whoever registers.
    assert not _denied(doc, promoter, "s3:DeleteObject", f"arn:aws:s3:::{bucket}/uploads/churn/x.tar.gz")
