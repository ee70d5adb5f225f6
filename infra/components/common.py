"""What every component shares: tags, IAM policy documents and the type-token prefix."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from mlinfra_infra import naming

TYPE_PREFIX = "mlinfra:aws"


def tags(stage: str, owner: str, model: str | None = None) -> dict[str, str]:
    """The tags every resource carries: stage, owner, managed-by, and the model where one applies."""
    out = {"stage": stage, "owner": owner, "managed-by": naming.MANAGED_BY}
    if model is not None:
        out["model"] = model
    return out


def statement(
    sid: str,
    actions: Sequence[str],
    resources: Sequence[Any],
    *,
    effect: str = "Allow",
    principal: Mapping[str, Any] | None = None,
    condition: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One IAM policy statement; resources may be Outputs (resolved by `policy_document`)."""
    out: dict[str, Any] = {"Sid": sid, "Effect": effect, "Action": list(actions), "Resource": list(resources)}
    if principal is not None:
        out["Principal"] = dict(principal)
    if condition is not None:
        out["Condition"] = dict(condition)
    return out


def deny_everyone(
    sid: str, actions: Sequence[str], resources: Sequence[Any], condition: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A resource-policy statement denying `actions` to every principal (when `condition` holds, if given)."""
    return statement(sid, actions, resources, effect="Deny", principal={"AWS": "*"}, condition=condition)


def policy_document(*statements: Mapping[str, Any]) -> pulumi.Output[str]:
    """A JSON IAM policy document from statements whose values may contain Outputs."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def service_trust_policy(
    service: str, account_id: pulumi.Input[str], source_arn: pulumi.Input[str]
) -> pulumi.Output[str]:
    """A trust policy letting one AWS service assume the role only on behalf of this account's resources.

    aws:SourceAccount and aws:SourceArn (an ARN pattern of the service's resources in this account and region) keep
    another account's resources from borrowing the role through the service (the confused deputy).
    https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html
    """
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                    "Condition": {
                        "StringEquals": {"aws:SourceAccount": account_id},
                        "ArnLike": {"aws:SourceArn": source_arn},
                    },
                }
            ],
        }
    )


def assume_role_policy(service: str) -> str:
    """A trust policy letting one AWS service assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"},
            ],
        }
    )


def access_log_bucket_rules(prefix: str, bucket: pulumi.Input[str], days: int, opts: pulumi.ResourceOptions) -> None:
    """SSE-S3 encryption and expiry for a bucket that receives S3 server access logs (`<prefix>-encryption`, ...).

    S3 server access logging writes with SSE-S3 only: an SSE-KMS target bucket is not supported.
    """
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{prefix}-encryption",
        bucket=bucket,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
        opts=opts,
    )
    aws.s3.BucketLifecycleConfiguration(
        f"{prefix}-lifecycle",
        bucket=bucket,
        rules=[{"id": "expire-access-logs", "status": "Enabled", "filter": {}, "expiration": {"days": days}}],
        opts=opts,
    )
