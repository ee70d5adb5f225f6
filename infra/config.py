"""Typed stack configuration: every stage's settings, validated before any resource is declared.

The same model validates a stack file read by the CLI (offline, no Pulumi engine) and the config the Pulumi engine
hands the program, so a mistake found by `mlinfra preview` is exactly the mistake `pulumi up` would hit. Limits
checked here are AWS's documented ones (name lengths and patterns, instance families, valid combinations), so the
first real deployment does not fail on something a test could have caught.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from . import awsdata, layout, naming, rollout

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


# ---------------------------------------------------------------------------------------------------------------
# Domain types. Patterns follow AWS's API references; each names what it accepts in its error.


def _check_pattern(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


StageName = Annotated[
    str, _check_pattern(r"[a-z][a-z0-9]{0,11}", "a stage name (lowercase letters and digits, at most 12)")
]
ModelName = Annotated[
    str,
    _check_pattern(
        r"[a-z0-9](?:-?[a-z0-9]){0,31}",
        "a model name (lowercase letters, digits and single hyphens, at most 32 characters)",
    ),
]
Digest = Annotated[str, _check_pattern(r"sha256:[0-9a-f]{64}", "a digest of the form sha256:<64 lowercase hex>")]
ImageUri = Annotated[
    str,
    _check_pattern(
        r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/[a-z0-9][a-z0-9._/-]*(?::[\w.-]{1,128}|@sha256:[0-9a-f]{64})",
        "an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>)",
    ),
]
S3Uri = Annotated[
    str,
    _check_pattern(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S+", "an S3 URI (s3://<bucket>/<key>)"),
]
AccountId = Annotated[str, _check_pattern(r"\d{12}", "a 12-digit AWS account id")]
RoleArn = Annotated[
    str,
    _check_pattern(r"arn:aws(?:-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}", "an IAM role ARN"),
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
    _check_pattern(
        r"cron\(\S+ \S+ \S+ \S+ \S+ \S+\)", "a six-field AWS cron expression, e.g. cron(0 19 ? * MON-FRI *)"
    ),
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


class _Settings(BaseModel):
    """Base of every config block: camelCase keys as Pulumi writes them, unknown keys refused, immutable."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, validate_default=True
    )


# ---------------------------------------------------------------------------------------------------------------
# Per-model settings. Stage-wide defaults live under `mlinfra:modelDefaults`; each model may override any of them
# beside its `pinned` block under `mlinfra:models.<model>`.


class HandlerLayout(_Settings):
    """Where a version's inference handler sits in its model.tar.gz, as `mlinfra register` checked and recorded it.

    ModelEndpoint turns it into the framework container's SAGEMAKER_PROGRAM and SAGEMAKER_SUBMIT_DIRECTORY.
    """

    framework: Literal["sklearn", "xgboost", "pytorch"]
    program: Annotated[str, _check_pattern(r"[A-Za-z_][A-Za-z0-9_]*\.py", "a Python file name, e.g. inference.py")]
    directory: Annotated[
        str, _check_pattern(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*", "a relative directory in the archive, e.g. code")
    ]

    @model_validator(mode="after")
    def _inside_archive(self) -> HandlerLayout:
        if ".." in self.directory.split("/"):
            raise ValueError(f"directory {self.directory!r} leaves the archive")
        return self


class Pin(_Settings):
    """The immutable model version a stage runs: written by `mlinfra promote`, read by the program."""

    version: Annotated[int, Field(ge=1)]
    digest: Digest
    image: ImageUri
    artifact: S3Uri
    # Absent in pins written before handlers were recorded, and for custom images (`register --image` alone).
    handler: HandlerLayout | None = None


class CaptureSettings(_Settings):
    """SageMaker data capture of requests and responses into the registry's `capture/<model>/` prefix."""

    enabled: bool = False
    sampling_percent: Annotated[int, Field(ge=1, le=100)] = 100


class AutoscalingSettings(_Settings):
    """Application Auto Scaling target tracking on invocations per instance (real-time endpoints only)."""

    enabled: bool = False
    min_capacity: Annotated[int, Field(ge=1, le=100)] = 1
    max_capacity: Annotated[int, Field(ge=1, le=100)] = 2
    target_invocations_per_instance: Annotated[int, Field(ge=1, le=100_000)] = 100
    scale_in_cooldown_seconds: Annotated[int, Field(ge=0, le=3600)] = 300
    scale_out_cooldown_seconds: Annotated[int, Field(ge=0, le=3600)] = 60

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSettings:
        if self.min_capacity > self.max_capacity:
            raise ValueError(f"minCapacity ({self.min_capacity}) is above maxCapacity ({self.max_capacity})")
        return self


class DeploymentSettings(_Settings):
    """Blue/green update policy: all-at-once, canary or linear traffic shifting, rolled back on the endpoint's alarms.

    `trafficPercent` is the canary (or linear step) as a share of the new fleet; the endpoint sizes it in whole
    instances (SageMaker allows a canary of at most 50% and linear steps of 10-50% of the fleet). `waitMinutes` is
    the bake after each traffic shift, `terminationWaitMinutes` the final bake after the last one; the endpoint's
    alarms must be able to fire inside both (checked with the alarm settings in ModelSettings).
    """

    strategy: Literal["all-at-once", "canary", "linear"] = "all-at-once"
    traffic_percent: Annotated[int, Field(ge=1, le=50)] = 10
    wait_minutes: Annotated[int, Field(ge=0, le=60)] = 5
    termination_wait_minutes: Annotated[int, Field(ge=0, le=60)] = 5
    timeout_minutes: Annotated[int, Field(ge=10, le=240)] = rollout.MAX_DEPLOYMENT_TIMEOUT_MINUTES

    def bake_minutes(self, fleet: int | None = None) -> int:
        """Total baking time of one deployment on `fleet` instances: one wait per shift, plus the final bake."""
        steps = rollout.bake_steps(self.strategy, self.traffic_percent, fleet)
        return steps * self.wait_minutes + self.termination_wait_minutes

    @model_validator(mode="after")
    def _linear_step_and_timeout(self) -> DeploymentSettings:
        if self.strategy == "linear" and self.traffic_percent < rollout.MIN_LINEAR_PERCENT:
            raise ValueError("a linear step (trafficPercent) must be 10-50% of the new fleet")
        # pulumi-aws waits 60 minutes for UpdateEndpoint to settle; SageMaker must finish (or roll back) first.
        if self.timeout_minutes > rollout.MAX_DEPLOYMENT_TIMEOUT_MINUTES:
            raise ValueError(
                f"timeoutMinutes ({self.timeout_minutes}) is longer than `pulumi up` can wait: pulumi-aws waits "
                f"{rollout.PROVIDER_WAIT_MINUTES} minutes for an endpoint update, so at most "
                f"{rollout.MAX_DEPLOYMENT_TIMEOUT_MINUTES}; shorten the bakes instead"
            )
        return self


class AlarmSettings(_Settings):
    """Thresholds of the endpoint's health alarms (which also drive auto-rollback) and its drift alarm.

    `errors5xx` is the number of 5XX responses in one period that counts as breaching (the alarm compares with
    GreaterThanOrEqualToThreshold, so `errors5xx: 1` means any error). The alarm fires once `datapointsToAlarm` of
    the last `evaluationPeriods` periods breach.
    """

    errors_5xx: Annotated[int, Field(ge=1, alias="errors5xx")] = 5
    latency_p99_ms: Annotated[int, Field(ge=1, le=600_000)] = 1000
    drift_psi: Annotated[float, Field(gt=0, le=10)] = 0.2
    # Optional extra drift verdicts of `mlinfra drift` and the drift job (the alarm watches MaxPSI only).
    drift_js: Annotated[float, Field(gt=0, le=1)] | None = None
    drift_ks_pvalue: Annotated[float, Field(gt=0, lt=1)] | None = None
    evaluation_periods: Annotated[int, Field(ge=1, le=100)] = 3
    datapoints_to_alarm: Annotated[int, Field(ge=1, le=100)] = 2
    period_seconds: Literal[60, 300, 900, 3600] = 60

    @property
    def detection_seconds(self) -> int:
        """Worst-case time from the start of a breach until the alarm is in ALARM."""
        return rollout.detection_seconds(self.period_seconds, self.datapoints_to_alarm)

    @model_validator(mode="after")
    def _datapoints(self) -> AlarmSettings:
        if self.datapoints_to_alarm > self.evaluation_periods:
            raise ValueError(
                f"datapointsToAlarm ({self.datapoints_to_alarm}) is more than evaluationPeriods "
                f"({self.evaluation_periods}); CloudWatch needs M <= N"
            )
        return self


class MetricThreshold(_Settings):
    """A bound a registered metric must meet to pass a promotion gate."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> MetricThreshold:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        return self


class GateSettings(_Settings):
    """What a version must satisfy to be promoted into this stage (evaluated by `mlinfra promote`)."""

    from_stage: StageName | None = None
    require_approval: bool = False
    min_soak_hours: Annotated[float, Field(ge=0, le=24 * 90)] = 0
    block_on_source_alarm: bool = True
    metrics: dict[str, MetricThreshold] = Field(default_factory=dict)


class ModelSettings(_Settings):
    """How one model is served and guarded in one stage."""

    mode: Literal["serverless", "realtime"] = "realtime"
    instance_type: SageMakerInstanceType = "ml.m5.large"
    instance_count: Annotated[int, Field(ge=1, le=100)] = 1
    serverless_memory_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] = 2048
    serverless_max_concurrency: Annotated[int, Field(ge=1, le=200)] = 5
    network_isolation: bool = True
    capture: CaptureSettings = CaptureSettings()
    autoscaling: AutoscalingSettings = AutoscalingSettings()
    deployment: DeploymentSettings = DeploymentSettings()
    alarms: AlarmSettings = AlarmSettings()
    gates: GateSettings = GateSettings()

    @model_validator(mode="after")
    def _valid_combination(self) -> ModelSettings:
        # Serverless endpoints support none of these (SageMaker Serverless Inference "feature exclusions").
        if self.mode == "serverless":
            for enabled, what in (
                (self.capture.enabled, "capture.enabled"),
                (self.network_isolation, "networkIsolation"),
                (self.autoscaling.enabled, "autoscaling.enabled"),
                (self.deployment.strategy != "all-at-once", "deployment.strategy canary/linear"),
            ):
                if enabled:
                    raise ValueError(f"serverless endpoints do not support {what}; set mode: realtime or turn it off")
        if self.autoscaling.enabled and not (
            self.autoscaling.min_capacity <= self.instance_count <= self.autoscaling.max_capacity
        ):
            raise ValueError(
                f"instanceCount {self.instance_count} is outside autoscaling "
                f"{self.autoscaling.min_capacity}-{self.autoscaling.max_capacity}"
            )
        self._check_rollout()
        return self

    @property
    def deploy_fleet(self) -> int | None:
        """Instances the endpoint configuration starts a (new) fleet with; None for serverless.

        An autoscaled variant deploys at its maximum: pulumi-aws cannot ask UpdateEndpoint to keep the live instance
        count (RetainAllVariantProperties), so a smaller initial count would shrink a scaled-out endpoint in the
        middle of traffic, and Application Auto Scaling is suspended while the update runs. The autoscaler scales the
        new fleet in after the deployment.
        """
        if self.mode == "serverless":
            return None
        return self.autoscaling.max_capacity if self.autoscaling.enabled else self.instance_count

    def _check_rollout(self) -> None:
        """Refuse canary sizes SageMaker rejects, bakes the alarms cannot fire in, and timeouts that cannot hold."""
        deployment, alarms = self.deployment, self.alarms
        fleet = self.deploy_fleet
        if fleet is not None:
            problem = rollout.check_step(deployment.strategy, deployment.traffic_percent, fleet)
            if problem is not None:
                raise ValueError(problem)
        detect = alarms.detection_seconds
        for minutes, key in (
            (deployment.wait_minutes, "deployment.waitMinutes"),
            (deployment.termination_wait_minutes, "deployment.terminationWaitMinutes (the final bake)"),
        ):
            if minutes * 60 < detect:
                raise ValueError(
                    f"{key} is {minutes} min but the rollback alarms need up to {detect // 60} min {detect % 60} s to "
                    f"fire ({alarms.datapoints_to_alarm} x {alarms.period_seconds} s datapoints, one period of "
                    f"alignment, {rollout.DETECTION_DELAY_SECONDS} s metric delay): lengthen the bake to at least "
                    f"{-(-detect // 60)} min, or shorten alarms.periodSeconds / alarms.datapointsToAlarm"
                )
        # SageMaker rejects a deployment whose maximum execution time does not exceed its total baking time, and one
        # with no room to launch the new fleet first rolls back healthy updates.
        needed = deployment.bake_minutes(fleet) + rollout.PROVISIONING_MINUTES
        if deployment.timeout_minutes < needed:
            raise ValueError(
                f"deployment.timeoutMinutes ({deployment.timeout_minutes}) must cover the {deployment.strategy} "
                f"deployment's bakes ({deployment.bake_minutes(fleet)} min) plus {rollout.PROVISIONING_MINUTES} min "
                f"to launch the new fleet ({needed} min); at most {rollout.MAX_DEPLOYMENT_TIMEOUT_MINUTES} min fit in "
                "the provider's wait, so shorten waitMinutes or use fewer steps"
            )


class ModelConfig(ModelSettings):
    """A model declared in a stage: its settings and, once promoted there, the version it runs."""

    pinned: Pin | None = None


# ---------------------------------------------------------------------------------------------------------------
# Stage-wide blocks.


class ObjectLockSettings(_Settings):
    """S3 Object Lock for the registry (prod): the retention mlinfra sets on each artifact and audit record it writes.

    There is no bucket-wide default retention: it would also lock captured requests (kept only
    `captureRetentionDays`), stage pointers and in-flight uploads. The bucket has Object Lock switched on, and
    `mlinfra register`/`promote` write artifacts and audit records with this mode and retention period.
    """

    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    days: Annotated[int, Field(ge=1, le=36_500)] = 365


class RegistrySettings(_Settings):
    """The stage's model registry bucket and its key."""

    bucket_name: BucketName | None = None
    noncurrent_version_days: Annotated[int, Field(ge=1, le=3650)] = 90
    capture_retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    abort_incomplete_upload_days: Annotated[int, Field(ge=1, le=30)] = 7
    kms_deletion_window_days: Annotated[int, Field(ge=7, le=30)] = 30
    object_lock: ObjectLockSettings | None = None
    reader_role_arns: list[RoleArn] = Field(default_factory=list)
    # Pulumi `protect` on the bucket and key, and a key policy refusing ScheduleKeyDeletion (prod).
    protect: bool = False
    # S3 server access logs of the registry, kept this long in the stage's log bucket.
    access_log_days: Annotated[int, Field(ge=1, le=3650)] = 365


class Notification(_Settings):
    """An SNS subscription to the stage's alert topic; the endpoint may be a `secure:` value."""

    protocol: Literal["email", "https", "sqs", "lambda"]
    endpoint: Annotated[str, StringConstraints(min_length=1)]


class MonitoringSettings(_Settings):
    """Alert topic, drift alarms, the scheduled drift job (AWS Lambda) and the stage dashboard."""

    enabled: bool = False
    drift: bool = False
    schedule: Literal["hourly", "daily"] = "hourly"
    # The drift job's Lambda memory (CPU grows with it; 1,769 MB is one vCPU) and its log retention (CloudWatch Logs'
    # accepted values).
    job_memory_mb: Annotated[int, Field(ge=512, le=10_240)] = 1024
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827] = 30
    notifications: list[Notification] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _no_model_monitor(cls, data: Any) -> Any:
        # Stack files written for the SageMaker Model Monitor job carry its instance type; say why it is gone.
        if isinstance(data, Mapping) and ("instanceType" in data or "instance_type" in data):
            raise ValueError(
                "instanceType sized the SageMaker Model Monitor job, which mlinfra no longer deploys (AWS closed Model "
                "Monitor to new customers on 2026-07-30); the drift job runs on AWS Lambda: remove the key "
                "(jobMemoryMb sizes the job)"
            )
        return data


class NetworkSettings(_Settings):
    """Where the sandbox VM lives: an existing private subnet, or a minimal private VPC created for it."""

    vpc_id: Annotated[str, StringConstraints(pattern=r"^vpc-[0-9a-f]{8,17}$")] | None = None
    subnet_id: Annotated[str, StringConstraints(pattern=r"^subnet-[0-9a-f]{8,17}$")] | None = None
    cidr: Annotated[str, StringConstraints(pattern=r"^10\.\d{1,3}\.0\.0/16$")] = "10.42.0.0/16"

    @model_validator(mode="after")
    def _both_or_neither(self) -> NetworkSettings:
        if (self.vpc_id is None) != (self.subnet_id is None):
            raise ValueError("give both vpcId and subnetId to use an existing network, or neither to create one")
        return self


class SandboxSettings(_Settings):
    """The analyst VM: private, SSM-only, stopped every evening (and optionally started every morning)."""

    enabled: bool = False
    instance_type: Ec2InstanceType = "t3.large"
    root_volume_gb: Annotated[int, Field(ge=20, le=1024)] = 50
    stop_schedule: Cron = "cron(0 19 ? * MON-FRI *)"
    # None: analysts start the VM themselves (`aws ec2 start-instances`); a cron starts it on a schedule.
    start_schedule: Cron | None = None
    # Session Manager shell sessions are logged to a CloudWatch log group kept this long.
    session_log_days: Literal[
        30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653
    ] = 365
    # The mlinfra CLI installed on the VM from the stage's CodeArtifact repository (a pip requirement specifier).
    mlinfra_requirement: Annotated[
        str, StringConstraints(pattern=r"^mlinfra(?:\[[a-z,]+\])?(?:[=<>~!]=?[\w.*]+)?$")
    ] = "mlinfra"
    timezone: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]+(?:/[A-Za-z_+-]+)*$")] = "UTC"
    ami_parameter: Annotated[str, StringConstraints(pattern=r"^/aws/service/\S+$")] = (
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    )
    network: NetworkSettings = NetworkSettings()

    @model_validator(mode="after")
    def _ec2_type(self) -> SandboxSettings:
        # EC2's enum has 1,400 values: read only for stacks that declare the VM.
        if self.enabled:
            awsdata.check_instance_type(self.instance_type, awsdata.ec2_instance_types(), "EC2")
        return self


def _known_instance_type(value: str) -> str:
    known = awsdata.sagemaker_hosting_types() if value.startswith("ml.") else awsdata.ec2_instance_types()
    awsdata.check_instance_type(value, known, "SageMaker hosting" if value.startswith("ml.") else "EC2")
    return value


class CostAssumptions(_Settings):
    """Load the cost estimate of `mlinfra check` assumes where the price depends on use, not on what is declared.

    Every estimated line names the assumption it used; change these per stage to match the traffic you expect.
    """

    serverless_requests_per_month: Annotated[int, Field(ge=0, le=10**10)] = 100_000
    serverless_seconds_per_request: Annotated[float, Field(gt=0, le=60)] = 0.2
    capture_gb_per_day: Annotated[float, Field(ge=0, le=100_000)] = 0.5
    registry_gb: Annotated[float, Field(ge=0, le=1_000_000)] = 10
    drift_job_seconds: Annotated[float, Field(gt=0, le=900)] = 60
    # Hours the sandbox VM runs on a weekday when no sandbox.startSchedule says when it starts.
    sandbox_hours_per_weekday: Annotated[float, Field(ge=0, le=24)] = 10


class PolicySettings(_Settings):
    """How the stage's policy pack treats violations, and which instance types the stage may run (config only).

    The pack itself (`infra/policy/`, `mlinfra check`) reads these; an empty allow-list allows every type AWS
    offers.
    """

    enforcement: Literal["advisory", "mandatory"] = "advisory"
    allowed_instance_types: list[Annotated[str, AfterValidator(_known_instance_type)]] = Field(default_factory=list)
    cost_assumptions: CostAssumptions = CostAssumptions()


class AccessSettings(_Settings):
    """How mlinfra reaches this stage's account: a role to assume (stages in separate accounts), or the caller's."""

    role_arn: RoleArn | None = None
    external_id: Annotated[str, StringConstraints(min_length=2, max_length=1224)] | None = None
    session_seconds: Annotated[int, Field(ge=900, le=43_200)] = 3600


# How a promotion reaches a stage: `direct` moves the stage pointer at once; `pullRequest` puts the pin on a branch
# and opens a pull request, and the pointer moves when CI's apply of the merged commit is recorded.
Delivery = Literal["direct", "pullRequest"]
PULL_REQUEST_STAGES = frozenset({"staging", "prod"})  # stages delivered by pull request unless their file says


class StackConfig(_Settings):
    """Everything one stage's stack declares. Built by `load_stack_config`, never by hand."""

    project: str
    stage: StageName
    region: Region
    owner: OwnerTag
    stages: list[StageName]
    account_id: AccountId | None = None
    access: AccessSettings = AccessSettings()
    registry: RegistrySettings = RegistrySettings()
    model_defaults: ModelSettings = ModelSettings()
    models: dict[ModelName, ModelConfig] = Field(default_factory=dict)
    monitoring: MonitoringSettings = MonitoringSettings()
    sandbox: SandboxSettings = SandboxSettings()
    policy: PolicySettings = PolicySettings()
    # The stage's monthly budget in US dollars, for the cost estimate of the policy pack; None: no budget.
    budget_monthly_usd: Annotated[float, Field(gt=0)] | None = None
    delivery: Delivery | None = None

    @model_validator(mode="after")
    def _unique_stages(self) -> StackConfig:
        if len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages lists a stage twice: {self.stages}")
        return self

    @property
    def entry_stage(self) -> str:
        """The stage versions are registered into (the first of `stages`); its package versions number them."""
        return self.stages[0]

    def previous_stage(self, stage: str | None = None) -> str | None:
        """The stage before `stage` (default: this one) in promotion order, or None for the entry stage."""
        stage = stage or self.stage
        if stage not in self.stages:
            return None
        index = self.stages.index(stage)
        return self.stages[index - 1] if index > 0 else None

    @property
    def delivery_mode(self) -> Delivery:
        """`mlinfra:delivery`, else `pullRequest` for staging and prod and `direct` for every other stage."""
        if self.delivery is not None:
            return self.delivery
        return "pullRequest" if self.stage in PULL_REQUEST_STAGES else "direct"

    @property
    def pinned_models(self) -> dict[str, ModelConfig]:
        """The models that run a version in this stage, in a stable order."""
        return {name: cfg for name, cfg in sorted(self.models.items()) if cfg.pinned is not None}


# Top-level keys under the `mlinfra:` namespace and where they go. `stage` and `project` come from Pulumi itself.
TOP_LEVEL_KEYS = (
    "owner",
    "stages",
    "accountId",
    "access",
    "registry",
    "modelDefaults",
    "models",
    "monitoring",
    "sandbox",
    "policy",
    "budgetMonthlyUsd",
    "delivery",
)


# ---------------------------------------------------------------------------------------------------------------
# Loading.


def _all_aliases(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    """Every camelCase key any block accepts, for "did you mean" suggestions."""
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(field.alias or name)
        for arg in _field_models(field.annotation):
            names |= _all_aliases(arg, seen)
    return names


def _field_models(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found.append(annotation)
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_field_models(arg))
    return found


_VOCABULARY = sorted(_all_aliases(StackConfig) | set(TOP_LEVEL_KEYS))


def suggest(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """A ' (did you mean X?)' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _strip_secrets(value: Any) -> tuple[Any, bool]:
    """Replace Pulumi `secure:` values by a placeholder; offline nobody can (or should) decrypt them."""
    if isinstance(value, Mapping):
        if set(value) == {"secure"}:
            return SECRET_PLACEHOLDER, True
        out: dict[str, Any] = {}
        any_secret = False
        for k, v in value.items():
            out[k], secret = _strip_secrets(v)
            any_secret |= secret
        return out, any_secret
    if isinstance(value, list):
        items = [_strip_secrets(v) for v in value]
        return [v for v, _ in items], any(s for _, s in items)
    return value, False


def split_config(raw: Mapping[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any], set[str]]:
    """Split flat Pulumi config (`ns:key` → value) into mlinfra keys, provider keys and the secret key names."""
    ours: dict[str, Any] = {}
    others: dict[str, Any] = {}
    secrets: set[str] = set()
    for full_key, value in raw.items():
        namespace, sep, key = str(full_key).partition(":")
        if not sep:
            raise ConfigError(
                source, str(full_key), f"config keys need a namespace, e.g. {CONFIG_NAMESPACE}:{full_key}"
            )
        clean, secret = _strip_secrets(value)
        if secret:
            secrets.add(full_key)
        if namespace == CONFIG_NAMESPACE:
            if key not in TOP_LEVEL_KEYS:
                raise ConfigError(source, full_key, "unknown key" + suggest(key, TOP_LEVEL_KEYS))
            ours[key] = clean
        elif namespace in PASSTHROUGH_NAMESPACES:
            others[full_key] = clean
        else:
            raise ConfigError(
                source,
                full_key,
                f"unknown namespace {namespace!r}" + suggest(namespace, (CONFIG_NAMESPACE, *PASSTHROUGH_NAMESPACES)),
            )
    return ours, others, secrets


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two config blocks; the override wins key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p != "[key]"]
    if not parts:
        return f"{CONFIG_NAMESPACE}:"
    head = parts[0]
    prefix = f"aws:{head}" if head == "region" else f"{CONFIG_NAMESPACE}:{head}"
    return ".".join([prefix, *parts[1:]])


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        return "unknown key" + suggest(str(loc[-1]), _VOCABULARY)
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    given = error.get("input")
    if kind.startswith(("literal_", "int_", "float_", "bool_", "string_", "greater", "less", "list_", "dict_")):
        return f"{message} (got {given!r})"
    return message


def load_stack_config(
    raw: Mapping[str, Any],
    *,
    project: str,
    stage: str,
    source: str,
) -> StackConfig:
    """Validate flat Pulumi config (`mlinfra:models` → {...}, `aws:region` → ...) into a StackConfig.

    `raw` is project-level config overlaid by the stack's; `source` names the file in errors. Model entries inherit
    `mlinfra:modelDefaults` key by key. Raises ConfigError naming the first wrong key.
    """
    ours, others, _ = split_config(raw, source)
    defaults = ours.get("modelDefaults") or {}
    models = ours.get("models") or {}
    if not isinstance(models, Mapping):
        raise ConfigError(source, f"{CONFIG_NAMESPACE}:models", "must be a mapping of model name to settings")
    if not isinstance(defaults, Mapping):
        raise ConfigError(source, f"{CONFIG_NAMESPACE}:modelDefaults", "must be a mapping of settings")
    data = dict(ours)
    if "aws:region" in others:
        data["region"] = others["aws:region"]
    data["project"] = project
    data["stage"] = stage
    # Validate the defaults alone first, so an error in them is reported under modelDefaults, not under a model.
    try:
        ModelSettings.model_validate(defaults)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(source, _key_path(("modelDefaults", *err["loc"])), _describe(err)) from None
    data["models"] = {
        name: _merge(defaults, spec if isinstance(spec, Mapping) else {}) for name, spec in models.items()
    }
    try:
        config = StackConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        if loc == ("region",) and err["type"] == "missing":
            raise ConfigError(source, "aws:region", "required key is missing (e.g. aws:region: eu-west-1)") from None
        if loc == ("stage",):
            raise ConfigError(source, "stack name", _describe(err)) from None
        raise ConfigError(source, _key_path(loc), _describe(err)) from None
    # Names derived from project, stage and model must fit AWS's limits (checked once all three are known).
    try:
        naming.check_stage_names(
            config.project, config.stage, config.region, config.account_id, config.registry.bucket_name
        )
    except ValueError as exc:
        raise ConfigError(source, f"{CONFIG_NAMESPACE}:registry.bucketName", str(exc)) from None
    for model, model_cfg in config.models.items():
        gate_from = model_cfg.gates.from_stage
        if gate_from is not None and gate_from not in config.stages:
            raise ConfigError(
                source,
                f"{CONFIG_NAMESPACE}:models.{model}.gates.fromStage",
                f"{gate_from!r} is not a stage{suggest(gate_from, config.stages)} (stages: {', '.join(config.stages)})",
            )
        try:
            naming.check_model_names(config.project, config.stage, model)
        except ValueError as exc:
            raise ConfigError(source, f"{CONFIG_NAMESPACE}:models.{model}", str(exc)) from None
        if model_cfg.pinned is not None:
            _check_pin_location(config, model, model_cfg.pinned, source)
    return config


def _check_pin_location(config: StackConfig, model: str, pin: Pin, source: str) -> None:
    """A pinned artifact must be this stage's registry copy of exactly that digest, or the endpoint cannot read it."""
    key = layout.artifact_key(model, pin.digest)
    bucket, _, found_key = pin.artifact.removeprefix("s3://").partition("/")
    if config.registry.bucket_name is not None or config.account_id is not None:
        expected_bucket = config.registry.bucket_name or naming.registry_bucket(
            config.project, config.stage, config.region, config.account_id or ""
        )
        bucket_ok = bucket == expected_bucket
    else:
        expected_bucket = naming.registry_bucket(config.project, config.stage, config.region, "<account>")
        bucket_ok = (
            re.fullmatch(re.escape(expected_bucket).replace(re.escape("<account>"), r"\d{12}"), bucket) is not None
        )
    if not bucket_ok or found_key != key:
        raise ConfigError(
            source,
            f"{CONFIG_NAMESPACE}:models.{model}.pinned.artifact",
            f"{pin.artifact!r} is not this stage's copy of {pin.digest[:19]}...; expected s3://{expected_bucket}/{key} "
            "(promote with `mlinfra promote`, which copies it there)",
        )
