"""StateBackend: the self-managed Pulumi state bucket of the stage stacks, its key and its access logs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mlinfra_infra.components.common import TYPE_PREFIX, access_log_bucket_rules

from .. import backend_policies, names
from ..policies import StageScope
from .common import child, tags, to_json


@dataclass
class StateBackendArgs:
    """Where the backend lives (the tooling account) and the stages whose roles use it."""

    project: str
    account: str
    region: str
    owner: str
    scopes: list[StageScope]
    log_retention_days: int
    noncurrent_version_days: int
    protect: bool
    roles: list[pulumi.Resource]  # the stage roles the policies name (IAM and KMS refuse unknown principals)
    provider: pulumi.ProviderResource | None = None


class StateBackend(pulumi.ComponentResource):
    """A versioned, SSE-KMS encrypted, TLS-only, access-logged bucket for `pulumi login s3://...`.

    Security: all four public-access blocks; ACLs disabled; a customer-managed key with rotation, no S3 bucket key
    (so the encryption context names each object and the key policy can grant each stage its own state only);
    TLS 1.2 or later; server access logs to a separate bucket; old state versions kept `noncurrentVersionDays`
    (a bad apply can be rolled back from them); with `protect`, Pulumi refuses to delete the bucket or the key.
    """

    url: str
    bucket_name: str

    def __init__(self, name: str, args: StateBackendArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:StateBackend", name, None, opts)
        provider, base_tags = args.provider, tags(args.owner)
        self.bucket_name = names.state_bucket(args.project, args.account, args.region)
        log_name = names.state_log_bucket(args.project, args.account, args.region)

        # S3 server access logging writes with SSE-S3 only (SSE-KMS targets are not supported).
        logs = aws.s3.Bucket(f"{name}-logs", bucket=log_name, tags=base_tags, opts=child(self, provider))
        self._private(f"{name}-logs", logs, provider)
        access_log_bucket_rules(f"{name}-logs", logs.id, args.log_retention_days, child(self, provider))
        aws.s3.BucketPolicy(
            f"{name}-logs-policy",
            bucket=logs.id,
            policy=to_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "S3ServerAccessLogsOfTheStateBucket",
                            "Effect": "Allow",
                            "Principal": {"Service": "logging.s3.amazonaws.com"},
                            "Action": "s3:PutObject",
                            "Resource": f"arn:aws:s3:::{log_name}/state/*",
                            "Condition": {
                                "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{self.bucket_name}"},
                                "StringEquals": {"aws:SourceAccount": args.account},
                            },
                        },
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": {"AWS": "*"},
                            "Action": "s3:*",
                            "Resource": [f"arn:aws:s3:::{log_name}", f"arn:aws:s3:::{log_name}/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        },
                    ],
                }
            ),
            opts=child(self, provider),
        )

        key = aws.kms.Key(
            f"{name}-key",
            description=f"{args.project} Pulumi state",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=to_json(backend_policies.state_key_policy(args.scopes, args.account, args.region)),
            tags=base_tags,
            opts=child(self, provider, protect=args.protect, depends_on=args.roles),
        )
        aws.kms.Alias(
            f"{name}-key-alias",
            name=names.state_key_alias(args.project),
            target_key_id=key.key_id,
            opts=child(self, provider),
        )

        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=self.bucket_name,
            tags=base_tags,
            opts=child(self, provider, protect=args.protect),
        )
        public = self._private(f"{name}-bucket", bucket, provider)
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child(self, provider),
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": key.arn,
                    },
                    # Off on purpose: with a bucket key the encryption context is the bucket, not the object, and
                    # the key policy could no longer keep each stage to its own state.
                    "bucket_key_enabled": False,
                }
            ],
            opts=child(self, provider),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "old-state-versions",
                    "status": "Enabled",
                    "filter": {},
                    "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_version_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                }
            ],
            opts=child(self, provider),
        )
        aws.s3.BucketLogging(
            f"{name}-access-logging",
            bucket=bucket.id,
            target_bucket=logs.id,
            target_prefix="state/",
            opts=child(self, provider),
        )
        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=bucket.id,
            policy=to_json(backend_policies.state_bucket_policy(args.scopes, self.bucket_name)),
            opts=child(self, provider, depends_on=[public, *args.roles]),
        )
        self.url = f"s3://{self.bucket_name}?region={args.region}"
        self.register_outputs({"url": self.url, "bucketName": self.bucket_name, "keyArn": key.arn})

    def _private(self, name: str, bucket: aws.s3.Bucket, provider: pulumi.ProviderResource | None) -> pulumi.Resource:
        """All four public-access blocks and ACLs disabled; returns the block (policies wait for it)."""
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child(self, provider),
        )
        return aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child(self, provider),
        )
