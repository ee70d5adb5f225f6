"""ModelRegistry: a stage's model registry bucket, its customer-managed key and one package group per model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from mlinfra_infra import naming
from mlinfra_infra.config import RegistrySettings
from mlinfra_infra.layout import (
    AUDIT_PREFIX,
    CAPTURE_PREFIX,
    MODELS_PREFIX,
    MONITORING_PREFIX,
    STAGES_PREFIX,
    UPLOADS_PREFIX,
)

from .common import TYPE_PREFIX, access_log_bucket_rules, deny_everyone, policy_document, statement, tags


@dataclass
class ModelRegistryArgs:
    """What a stage's registry needs: names, the models it holds and its settings."""

    project: str
    stage: str
    owner: str
    region: str
    account_id: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    models: Sequence[str]
    settings: RegistrySettings = field(default_factory=RegistrySettings)


class ModelRegistry(pulumi.ComponentResource):
    """Versioned, KMS-encrypted, private S3 bucket plus SageMaker Model Package Groups.

    Security: SSE-KMS with a rotating customer-managed key and bucket key, uploads pinned to that key, all four
    public-access blocks, ACLs disabled, TLS-only bucket policy, audit records create-only and stage pointers
    compare-and-swap only (S3's conditional-write condition keys), server access logs to a log bucket, optional
    Object Lock (per object, set by the CLI on artifacts and audit records). Next-stage promotion roles
    (`settings.readerRoleArns`) may read `models/` only, so promotion across accounts is a server-side copy.
    The key's CloudWatch grant is limited to this account's alarms of this stage (confused deputy); with
    `protect` the key and bucket are Pulumi-protected and the key policy refuses ScheduleKeyDeletion.
    """

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    key_arn: pulumi.Output[str]
    package_groups: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: ModelRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:ModelRegistry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings = args.settings
        base_tags = tags(args.stage, args.owner)
        account = pulumi.Output.from_input(args.account_id)
        readers = list(settings.reader_role_arns)

        key_statements = [
            statement(
                "AccountAdministersKey",
                ["kms:*"],
                ["*"],
                principal={"AWS": pulumi.Output.concat("arn:aws:iam::", account, ":root")},
            ),
            # CloudWatch publishes alarm notifications to the stage's topic, which this key encrypts. Only for this
            # account's alarms of this stage: the source conditions stop other accounts' alarms using the key.
            statement(
                "CloudWatchAlarmsPublishToEncryptedTopic",
                ["kms:Decrypt", "kms:GenerateDataKey*"],
                ["*"],
                principal={"Service": "cloudwatch.amazonaws.com"},
                condition={
                    "StringEquals": {"aws:SourceAccount": account},
                    "ArnLike": {
                        "aws:SourceArn": pulumi.Output.concat(
                            f"arn:aws:cloudwatch:{args.region}:", account, f":alarm:{args.project}-{args.stage}-*"
                        )
                    },
                },
            ),
        ]
        # CloudWatch Logs encrypts the stage's own log groups (the sandbox's session logs) with this key, and only
        # those: the encryption context names the log group.
        key_statements.append(
            statement(
                "CloudWatchLogsEncryptsThisStagesLogGroups",
                ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
                ["*"],
                principal={"Service": f"logs.{args.region}.amazonaws.com"},
                condition={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": pulumi.Output.concat(
                            f"arn:aws:logs:{args.region}:",
                            account,
                            f":log-group:/mlinfra/{args.project}-{args.stage}/*",
                        )
                    }
                },
            )
        )
        # No kms:Describe* above: DescribeKey carries no encryption context, so under that condition it was never
        # allowed, and CloudWatch Logs encrypts with the grants above alone.
        if settings.protect:
            # Deleting the key destroys every artifact it encrypts. Even the account's administrators must first
            # change the key policy, a deliberate and logged step, before scheduling its deletion.
            key_statements.append(
                deny_everyone(
                    "NobodySchedulesKeyDeletion",
                    ["kms:ScheduleKeyDeletion"],
                    ["*"],
                )
            )
        if readers:
            key_statements.append(
                statement(
                    "NextStagePromotionRolesDecryptThroughS3",
                    ["kms:Decrypt", "kms:DescribeKey"],
                    ["*"],
                    principal={"AWS": readers},
                    condition={"StringEquals": {"kms:ViaService": f"s3.{args.region}.amazonaws.com"}},
                )
            )
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"mlinfra {args.stage} model registry",
            enable_key_rotation=True,
            deletion_window_in_days=settings.kms_deletion_window_days,
            policy=policy_document(*key_statements),
            tags=base_tags,
            opts=pulumi.ResourceOptions(parent=self, protect=settings.protect),
        )
        aws.kms.Alias(
            f"{name}-key-alias",
            name=naming.key_alias(args.project, args.stage),
            target_key_id=self.key.key_id,
            opts=child,
        )

        lock = settings.object_lock
        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=args.bucket_name,
            # `objectLockEnabled` is left unset (Optional+Computed in the provider): it is force-new on a fixed-name,
            # protected bucket, and after BucketObjectLockConfiguration below switches the lock on (S3 accepts it on
            # an existing versioned bucket) a refresh reads back `true`; an explicit `false` would then plan a
            # replacement (tests/infra/test_refresh.py).
            force_destroy=False,
            tags=base_tags,
            opts=pulumi.ResourceOptions(parent=self, protect=settings.protect or lock is not None),
        )
        bucket_id = self.bucket.id
        self.bucket_arn = self.bucket.arn

        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket_id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket_id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": self.key.arn,
                    },
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket_id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket_id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket_id,
            rules=[
                {
                    "id": "abort-incomplete-uploads",
                    "status": "Enabled",
                    "filter": {},
                    "abort_incomplete_multipart_upload": {
                        "days_after_initiation": settings.abort_incomplete_upload_days
                    },
                },
                {
                    "id": "expire-noncurrent-versions",
                    "status": "Enabled",
                    "filter": {},
                    "noncurrent_version_expiration": {"noncurrent_days": settings.noncurrent_version_days},
                },
                {
                    "id": "expire-data-capture",
                    "status": "Enabled",
                    "filter": {"prefix": CAPTURE_PREFIX},
                    "expiration": {"days": settings.capture_retention_days},
                },
                # A registration that died between upload and its move to the content address leaves a temp object.
                {
                    "id": "expire-abandoned-uploads",
                    "status": "Enabled",
                    "filter": {"prefix": UPLOADS_PREFIX},
                    "expiration": {"days": settings.abort_incomplete_upload_days},
                },
                # The drift job's reports are derived from the capture and kept as long as it is (its checkpoints are
                # rewritten every run, so they never reach this age while the job runs).
                {
                    "id": "expire-monitoring-reports",
                    "status": "Enabled",
                    "filter": {"prefix": MONITORING_PREFIX},
                    "expiration": {"days": settings.capture_retention_days},
                },
            ],
            # Lifecycle rules on a versioned bucket need versioning in place first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        if lock is not None:
            # No default retention: it would lock captured requests past their expiry, stage pointers and
            # uploads. The CLI sets `lock.mode` and `lock.days` on each artifact and audit record it writes.
            aws.s3.BucketObjectLockConfiguration(
                f"{name}-object-lock",
                bucket=bucket_id,
                object_lock_enabled="Enabled",
                opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
            )
        self._access_logs(name, args, base_tags)

        bucket_arn = self.bucket.arn
        objects = pulumi.Output.concat(bucket_arn, "/*")
        policy_statements = [
            deny_everyone(
                "DenyInsecureTransport",
                ["s3:*"],
                [bucket_arn, objects],
                {"Bool": {"aws:SecureTransport": "false"}},
            ),
            # An upload naming an encryption must name SSE-KMS, and one naming a key must name this one; without the
            # headers the bucket default (this key) applies. `Null: false` makes each deny apply only when the header
            # is sent: a negated operator (with or without IfExists) holds for an absent key, so
            # StringNotEqualsIfExists alone would refuse every upload that relies on the default.
            deny_everyone(
                "DenyNonKmsEncryption",
                ["s3:PutObject"],
                [objects],
                {
                    "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
                    "Null": {"s3:x-amz-server-side-encryption": "false"},
                },
            ),
            deny_everyone(
                "DenyOtherKmsKeys",
                ["s3:PutObject"],
                [objects],
                {
                    "StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": self.key.arn},
                    "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"},
                },
            ),
            # Audit records are written once (If-None-Match), by everyone: an overwrite is refused by S3 itself.
            # https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes-enforce.html
            deny_everyone(
                "AuditRecordsAreCreateOnly",
                ["s3:PutObject"],
                [pulumi.Output.concat(bucket_arn, f"/{AUDIT_PREFIX}*")],
                {"Null": {"s3:if-none-match": "true"}},
            ),
            # Stage pointers move only by compare-and-swap (If-Match) or are created (If-None-Match).
            deny_everyone(
                "StagePointersAreCompareAndSwap",
                ["s3:PutObject"],
                [pulumi.Output.concat(bucket_arn, f"/{STAGES_PREFIX}*")],
                {"Null": {"s3:if-none-match": "true", "s3:if-match": "true"}},
            ),
            # Audit records and stage pointers never vanish: no delete marker, no permanent delete, except by the
            # stage's break-glass role (which need not exist). `mlinfra repair pointer` rebuilds a lost pointer.
            deny_everyone(
                "AuditRecordsAndStagePointersAreNotDeleted",
                ["s3:DeleteObject", "s3:DeleteObjectVersion"],
                [
                    pulumi.Output.concat(bucket_arn, f"/{AUDIT_PREFIX}*"),
                    pulumi.Output.concat(bucket_arn, f"/{STAGES_PREFIX}*"),
                ],
                {
                    "ArnNotLike": {
                        "aws:PrincipalArn": pulumi.Output.concat(
                            "arn:aws:iam::", account, f":role/{args.project}-{args.stage}-break-glass"
                        )
                    }
                },
            ),
        ]
        if readers:
            policy_statements += [
                statement(
                    "NextStagePromotionRolesReadModels",
                    ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes", "s3:GetObjectTagging"],
                    [pulumi.Output.concat(bucket_arn, f"/{MODELS_PREFIX}*")],
                    principal={"AWS": readers},
                ),
                statement(
                    "NextStagePromotionRolesListModels",
                    ["s3:ListBucket"],
                    [bucket_arn],
                    principal={"AWS": readers},
                    condition={"StringLike": {"s3:prefix": [f"{MODELS_PREFIX}*"]}},
                ),
            ]
        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=bucket_id,
            policy=policy_document(*policy_statements),
            # S3 rejects a policy put while the public-access block is still being applied.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )

        self.package_groups = {}
        for model in args.models:
            group = aws.sagemaker.ModelPackageGroup(
                f"{name}-{model}-packages",
                model_package_group_name=naming.package_group(args.project, args.stage, model),
                model_package_group_description=f"{model} versions registered in {args.stage}",
                tags=tags(args.stage, args.owner, model),
                opts=child,
            )
            self.package_groups[model] = group.model_package_group_name

        self.bucket_name = self.bucket.bucket
        self.key_arn = self.key.arn
        self.register_outputs(
            {
                "bucketName": self.bucket_name,
                "bucketArn": self.bucket_arn,
                "keyArn": self.key_arn,
                "logBucketName": self.log_bucket.bucket,
                "packageGroups": self.package_groups,
            }
        )

    def _access_logs(self, name: str, args: ModelRegistryArgs, base_tags: dict[str, str]) -> None:
        """S3 server access logs of the registry: who read or wrote which artifact, record and pointer.

        A separate bucket (logs of a bucket must not land in itself), named by S3 under the stage's prefix
        (naming.log_bucket_prefix) so the registry name stays the only fixed one. S3's logging service writes with
        SSE-S3 only (SSE-KMS targets are not supported) and is authorised by the bucket policy, limited to this
        registry and account (confused deputy).
        https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html
        """
        child = pulumi.ResourceOptions(parent=self)
        logs = aws.s3.Bucket(
            f"{name}-access-logs",
            bucket_prefix=naming.log_bucket_prefix(args.project, args.stage),
            force_destroy=False,
            tags=base_tags,
            # Logs outlive the stack: a replaced or destroyed log bucket is left in the account, never emptied.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        self.log_bucket = logs
        aws.s3.BucketPublicAccessBlock(
            f"{name}-access-logs-public-access",
            bucket=logs.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-access-logs-ownership",
            bucket=logs.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        access_log_bucket_rules(f"{name}-access-logs", logs.id, args.settings.access_log_days, child)
        log_objects = pulumi.Output.concat(logs.arn, "/*")
        policy = aws.s3.BucketPolicy(
            f"{name}-access-logs-policy",
            bucket=logs.id,
            policy=policy_document(
                statement(
                    "S3ServerAccessLogsOfTheRegistry",
                    ["s3:PutObject"],
                    [log_objects],
                    principal={"Service": "logging.s3.amazonaws.com"},
                    condition={
                        "ArnLike": {"aws:SourceArn": self.bucket.arn},
                        "StringEquals": {"aws:SourceAccount": args.account_id},
                    },
                ),
                deny_everyone(
                    "DenyInsecureTransport",
                    ["s3:*"],
                    [logs.arn, log_objects],
                    {"Bool": {"aws:SecureTransport": "false"}},
                ),
            ),
            opts=child,
        )
        aws.s3.BucketLogging(
            f"{name}-access-logging",
            bucket=self.bucket.id,
            target_bucket=logs.id,
            target_prefix="registry/",
            # Logging starts once S3's logging service may write there.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
