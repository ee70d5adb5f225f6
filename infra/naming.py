"""Names of everything a stage creates, derived deterministically from project, stage and model.

The CLI finds registries, package groups and endpoints by these names without the Pulumi engine or stack outputs,
so both sides import them from here. Each check enforces AWS's documented limit for that kind of name.
"""

from __future__ import annotations

import re

# SageMaker resource names: at most 63 characters of [a-zA-Z0-9-], no leading/trailing or double hyphen issue
# (API pattern ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}).
SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](?:-*[a-zA-Z0-9]){0,62}")
SAGEMAKER_NAME_MAX = 63
# Pulumi auto-naming appends "-" and 7 random hex characters to a logical name.
AUTONAME_SUFFIX = 8
# S3 bucket names: 3-63 characters, lowercase letters, digits, hyphens (dots are legal but break TLS to
# virtual-hosted endpoints, so mlinfra refuses them), starting and ending with a letter or digit.
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")

MANAGED_BY = "mlinfra"
# Kinds of per-model alarms: the endpoint's own health alarms (which roll deployments back), the drift alarm, and the
# composite that notifies. `mlinfra promote` reads their states by these names to gate on the source stage.
ALARM_5XX = "5xx"
ALARM_LATENCY = "latency-p99"
ALARM_DRIFT = "drift"
ALARM_DRIFT_SILENT = "drift-silent"  # the drift job has not scored this model for two schedule periods
ALARM_HEALTH = "health"
ALARM_KINDS = (ALARM_5XX, ALARM_LATENCY, ALARM_DRIFT, ALARM_DRIFT_SILENT, ALARM_HEALTH)
# Lambda function names: at most 64 characters of [a-zA-Z0-9-_].
LAMBDA_NAME_MAX = 64
VARIANT_NAME = "primary"  # stable: autoscaling targets and alarms address the variant by name


def check_bucket_name(name: str) -> None:
    """Raise ValueError unless `name` follows S3's bucket naming rules (no dots, no IP-like names)."""
    if (
        not BUCKET_NAME.fullmatch(name)
        or "--" in name
        or name.startswith(("xn--", "sthree-"))
        or name.endswith(("-s3alias", "--ol-s3"))
    ):
        raise ValueError(
            f"{name!r} is not a valid bucket name (3-63 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit)"
        )


def registry_bucket(project: str, stage: str, region: str, account_id: str) -> str:
    """The registry bucket a stage uses when its config does not name one: globally unique by account and region."""
    return f"{project}-{stage}-{account_id}-{region}".lower()


def package_group(project: str, stage: str, model: str) -> str:
    """The SageMaker Model Package Group of a model in a stage (stages may share an account)."""
    return f"{project}-{stage}-{model}"


def endpoint(project: str, stage: str, model: str) -> str:
    """The fixed SageMaker endpoint name of a model in a stage; configs and models behind it are auto-named."""
    return f"{project}-{stage}-{model}"


def alarm(project: str, stage: str, model: str, what: str) -> str:
    """A CloudWatch alarm name (unique per account and region)."""
    return f"{project}-{stage}-{model}-{what}"


def drift_job(project: str, stage: str) -> str:
    """The stage's scheduled drift job: its Lambda function, schedule and IAM roles share this name."""
    return f"{project}-{stage}-drift-job"


def drift_job_errors_alarm(project: str, stage: str) -> str:
    """The alarm on the drift job's own failures (Lambda Errors), one per stage."""
    return f"{drift_job(project, stage)}-errors"


def key_alias(project: str, stage: str) -> str:
    """The KMS alias of a stage's registry key."""
    return f"alias/{project}-{stage}-registry"


def topic(project: str, stage: str) -> str:
    """The SNS alert topic of a stage."""
    return f"{project}-{stage}-alerts"


def dashboard(project: str, stage: str) -> str:
    """The CloudWatch dashboard of a stage."""
    return f"{project}-{stage}"


def _check_sagemaker(name: str, what: str, reserve: int = 0) -> None:
    limit = SAGEMAKER_NAME_MAX - reserve
    if len(name) > limit or not SAGEMAKER_NAME.fullmatch(name):
        raise ValueError(
            f"{what} name {name!r} is {len(name)} characters; SageMaker allows {limit} of [a-zA-Z0-9-] here "
            "(shorten the project, stage or model name)"
        )


def check_model_names(project: str, stage: str, model: str) -> None:
    """Raise ValueError if any name derived for `model` in `stage` breaks SageMaker's limits."""
    _check_sagemaker(endpoint(project, stage, model), "endpoint")
    _check_sagemaker(package_group(project, stage, model), "model package group")


def check_stage_names(project: str, stage: str, region: str, account_id: str | None, bucket: str | None) -> None:
    """Raise ValueError if the registry bucket name of a stage (given or derived) breaks S3's rules."""
    check_bucket_name(bucket or registry_bucket(project, stage, region, account_id or "0" * 12))
    job = drift_job(project, stage)
    if len(job) > LAMBDA_NAME_MAX:
        raise ValueError(f"drift job name {job!r} is {len(job)} characters; Lambda allows {LAMBDA_NAME_MAX}")
    domain = codeartifact_domain(project, stage)
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,48}[a-z0-9]", domain):
        raise ValueError(
            f"CodeArtifact domain {domain!r} must be 2-50 lowercase letters, digits and hyphens, starting with a "
            "letter (shorten the project or stage name)"
        )


def codeartifact_domain(project: str, stage: str) -> str:
    """The CodeArtifact domain holding a stage's package repositories (2-50 of [a-z0-9-], per account)."""
    return f"{project}-{stage}".lower()


def session_log_group(project: str, stage: str) -> str:
    """The CloudWatch log group Session Manager streams a stage's analyst shells to."""
    return f"/mlinfra/{project}-{stage}/sessions"


def session_document(project: str, stage: str) -> str:
    """The Session Manager document of a stage's logged analyst shell."""
    return f"{project}-{stage}-analyst-shell"


def log_bucket_prefix(project: str, stage: str) -> str:
    """The name prefix of a stage's registry access-log bucket (S3 appends a unique suffix; at most 37 characters).

    Under `<project>-<stage>-` like every bucket of the stage, so a deploy role scoped by that prefix reaches no
    other stage's log bucket in a shared account.
    """
    return f"{project}-{stage}-logs-"[:37]


def vm_schedule(project: str, stage: str, what: str) -> str:
    """The EventBridge Scheduler schedule that stops or starts a stage's analyst VM (`what`: stop, start)."""
    return f"{project}-{stage}-vm-{what}"


def iam_path(project: str, stage: str) -> str:
    """The IAM path of the roles, managed policies and instance profiles of a stage's stack (workload boundary on).

    The bootstrap's deploy role may change only identities under it, so no tag it can set reaches another identity.
    """
    return f"/{project}/{stage}/"


def workload_boundary(project: str, stage: str) -> str:
    """The permissions boundary every IAM role of a stage's stack carries (created by the bootstrap stack)."""
    return f"{project}-{stage}-workload-boundary"
