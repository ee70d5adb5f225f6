"""ModelRegistry: a stage's model registry bucket, its customer-managed key and one package group per model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from mlinfra_infra import naming
from mlinfra_infra.config import RegistrySettings
from mlinfra_infra.layout import CAPTURE_PREFIX, MODELS_PREFIX, MONITORING_PREFIX, UPLOADS_PREFIX

from .common import TYPE_PREFIX, policy_document, statement, tags


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

    Security: SSE-KMS with a rotating customer-managed key and bucket key, all four public-access blocks, ACLs
    disabled, TLS-only bucket policy, optional Object Lock. Next-stage promotion roles (`settings.readerRoleArns`)
    may read `models/` only, so promotion across accounts is a server-side copy.
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
            # CloudWatch publishes alarm notifications to the stage's topic, which this key encrypts.
            statement(
                "CloudWatchAlarmsPublishToEncryptedTopic",
                ["kms:Decrypt", "kms:GenerateDataKey*"],
                ["*"],
                principal={"Service": "cloudwatch.amazonaws.com"},
            ),
        ]
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
            opts=child,
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
            # Object Lock can only be switched on when the bucket is created.
            object_lock_enabled=lock is not None,
            force_destroy=False,
            tags=base_tags,
            opts=pulumi.ResourceOptions(parent=self, protect=lock is not None),
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
                # Model Monitor's reports are derived from the capture and kept as long as it is.
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
            aws.s3.BucketObjectLockConfiguration(
                f"{name}-object-lock",
                bucket=bucket_id,
                rule={"default_retention": {"mode": lock.mode, "days": lock.days}},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
            )

        bucket_arn = self.bucket.arn
        objects = pulumi.Output.concat(bucket_arn, "/*")
        policy_statements = [
            statement(
                "DenyInsecureTransport",
                ["s3:*"],
                [bucket_arn, objects],
                effect="Deny",
                principal={"AWS": "*"},
                condition={"Bool": {"aws:SecureTransport": "false"}},
            ),
            statement(
                "DenyNonKmsEncryption",
                ["s3:PutObject"],
                [objects],
                effect="Deny",
                principal={"AWS": "*"},
                condition={"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}},
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
                "packageGroups": self.package_groups,
            }
        )
