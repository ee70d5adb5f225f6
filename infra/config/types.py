"""The config's building blocks: its error, the domain types, and the base every block derives from.

Patterns follow AWS's API references; regions and instance types are checked against botocore's own data.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints
from pydantic.alias_generators import to_camel

from .. import awsdata, naming

CONFIG_NAMESPACE = "mlinfra"


# Other namespaces a stack file may carry: the AWS provider's settings and Pulumi's own.
PASSTHROUGH_NAMESPACES = ("aws", "pulumi")


SECRET_PLACEHOLDER = "[secret]"  # noqa: S105 - a mask, not a password


class ConfigError(ValueError):
    """Raised when stack config is invalid; the message names the file, the key and what is allowed."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        super().__init__(f"{source}: {key}: {message}")


def check_pattern(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


StageName = Annotated[
    str, check_pattern(r"[a-z][a-z0-9]{0,11}", "a stage name (lowercase letters and digits, at most 12)")
]


ModelName = Annotated[
    str,
    check_pattern(
        r"[a-z0-9](?:-?[a-z0-9]){0,31}",
        "a model name (lowercase letters, digits and single hyphens, at most 32 characters)",
    ),
]


Digest = Annotated[str, check_pattern(r"sha256:[0-9a-f]{64}", "a digest of the form sha256:<64 lowercase hex>")]


ImageUri = Annotated[
    str,
    check_pattern(
        r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/[a-z0-9][a-z0-9._/-]*(?::[\w.-]{1,128}|@sha256:[0-9a-f]{64})",
        "an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>)",
    ),
]


S3Uri = Annotated[
    str,
    check_pattern(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S+", "an S3 URI (s3://<bucket>/<key>)"),
]


AccountId = Annotated[str, check_pattern(r"\d{12}", "a 12-digit AWS account id")]


RoleArn = Annotated[
    str,
    check_pattern(r"arn:aws(?:-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}", "an IAM role ARN"),
]


def _region(value: str) -> str:
    if value.endswith("-global"):  # botocore's pseudo-regions of global endpoints, not places to deploy
        raise ValueError(f"{value!r} is a global endpoint, not a region (e.g. eu-west-1)")
    awsdata.check_region(value)
    return value


# Regions come from botocore's partition data, so a typo fails here with a suggestion, not at the first API call.
Region = Annotated[str, AfterValidator(_region)]


BucketName = Annotated[str, AfterValidator(lambda v: naming.check_bucket_name(v) or v)]


Cron = Annotated[
    str,
    check_pattern(r"cron\(\S+ \S+ \S+ \S+ \S+ \S+\)", "a six-field AWS cron expression, e.g. cron(0 19 ? * MON-FRI *)"),
]


OwnerTag = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[\w .:/=+@-]+$")]


def _sagemaker_instance(value: str) -> str:
    awsdata.check_instance_type(value, awsdata.sagemaker_hosting_types(), "SageMaker hosting")
    return value


def _processing_instance(value: str) -> str:
    awsdata.check_instance_type(value, awsdata.sagemaker_processing_types(), "SageMaker processing")
    return value


# Instance types are checked against botocore's service-model enums (the values the APIs accept), not a hand list.
SageMakerInstanceType = Annotated[str, AfterValidator(_sagemaker_instance)]


ProcessingInstanceType = Annotated[str, AfterValidator(_processing_instance)]


# EC2's enum is large; it is checked only when the sandbox is enabled (SandboxSettings).
Ec2InstanceType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")]


class Settings(BaseModel):
    """Base of every config block: camelCase keys as Pulumi writes them, unknown keys refused, immutable."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, validate_default=True
    )
