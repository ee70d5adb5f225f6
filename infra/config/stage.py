"""Stage-wide blocks (registry, monitoring, network, sandbox, policy, access, delivery) and the whole StackConfig."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from .. import awsdata
from .models import ModelConfig, ModelSettings
from .types import (
    AccountId,
    BucketName,
    Cron,
    Ec2InstanceType,
    ModelName,
    OwnerTag,
    Region,
    RoleArn,
    Settings,
    StageName,
)


class ObjectLockSettings(Settings):
    """S3 Object Lock for the registry (prod): the retention mlinfra sets on each artifact and audit record it writes.

    There is no bucket-wide default retention: it would also lock captured requests (kept only
    `captureRetentionDays`), stage pointers and in-flight uploads. The bucket has Object Lock switched on, and
    `mlinfra register`/`promote` write artifacts and audit records with this mode and retention period.
    """

    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    days: Annotated[int, Field(ge=1, le=36_500)] = 365


class RegistrySettings(Settings):
    """The stage's model registry bucket and its key."""

    bucket_name: BucketName | None = None
    noncurrent_version_days: Annotated[int, Field(ge=1, le=3650)] = 90
    capture_retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    abort_incomplete_upload_days: Annotated[int, Field(ge=1, le=30)] = 7
    kms_deletion_window_days: Annotated[int, Field(ge=7, le=30)] = 30
    object_lock: ObjectLockSettings | None = None
    reader_role_arns: list[RoleArn] = Field(default_factory=list, max_length=20)
    # Pulumi `protect` on the bucket and key, and a key policy refusing ScheduleKeyDeletion (prod).
    protect: bool = False
    # S3 server access logs of the registry, kept this long in the stage's log bucket.
    access_log_days: Annotated[int, Field(ge=1, le=3650)] = 365


class Notification(Settings):
    """An SNS subscription to the stage's alert topic; the endpoint may be a `secure:` value."""

    protocol: Literal["email", "https", "sqs", "lambda"]
    endpoint: Annotated[str, StringConstraints(min_length=1)]


class MonitoringSettings(Settings):
    """Alert topic, drift alarms, the scheduled drift job (AWS Lambda) and the stage dashboard."""

    enabled: bool = False
    drift: bool = False
    schedule: Literal["hourly", "daily"] = "hourly"
    # The drift job's Lambda memory (CPU grows with it; 1,769 MB is one vCPU) and its log retention (CloudWatch Logs'
    # accepted values).
    job_memory_mb: Annotated[int, Field(ge=512, le=10_240)] = 1024
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827] = 30
    notifications: list[Notification] = Field(default_factory=list, max_length=100)

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


class NetworkSettings(Settings):
    """Where the sandbox VM lives: an existing private subnet, or a minimal private VPC created for it."""

    vpc_id: Annotated[str, StringConstraints(pattern=r"^vpc-[0-9a-f]{8,17}$")] | None = None
    subnet_id: Annotated[str, StringConstraints(pattern=r"^subnet-[0-9a-f]{8,17}$")] | None = None
    cidr: Annotated[str, StringConstraints(pattern=r"^10\.\d{1,3}\.0\.0/16$")] = "10.42.0.0/16"

    @model_validator(mode="after")
    def _both_or_neither(self) -> NetworkSettings:
        if (self.vpc_id is None) != (self.subnet_id is None):
            raise ValueError("give both vpcId and subnetId to use an existing network, or neither to create one")
        return self


class MlinfraWheel(Settings):
    """The mlinfra wheel the platform team published to the sandbox registry, pinned by its SHA-256.

    The VM installs it from that file with `pip --no-index` after checking the hash: never by name from an index
    (public PyPI already has an unrelated `mlinfra`, and CodeArtifact's upstream would serve it).
    """

    key: Annotated[str, StringConstraints(pattern=r"^code/wheels/mlinfra-[A-Za-z0-9_.+!-]+-py3-none-any\.whl$")]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

    @property
    def file_name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


class SandboxSettings(Settings):
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
    # The mlinfra wheel the team published (`code/wheels/` in the sandbox registry, and its SHA-256); None: the VM
    # gets JupyterLab without mlinfra. Never installed by name from an index.
    mlinfra_wheel: MlinfraWheel | None = None
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


class CostAssumptions(Settings):
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


class PolicySettings(Settings):
    """How the stage's policy pack treats violations, and which instance types the stage may run (config only).

    The pack itself (`infra/policy/`, `mlinfra check`) reads these; an empty allow-list allows every type AWS
    offers.
    """

    enforcement: Literal["advisory", "mandatory"] = "advisory"
    allowed_instance_types: list[Annotated[str, AfterValidator(_known_instance_type)]] = Field(
        default_factory=list, max_length=200
    )
    cost_assumptions: CostAssumptions = CostAssumptions()


class AccessSettings(Settings):
    """How mlinfra reaches this stage's account: a role to assume (stages in separate accounts), or the caller's."""

    role_arn: RoleArn | None = None
    external_id: Annotated[str, StringConstraints(min_length=2, max_length=1224)] | None = None
    session_seconds: Annotated[int, Field(ge=900, le=43_200)] = 3600
    # When the next stage lives in another account: the role in THIS stage's account that the next stage's jobs
    # assume to read this stage as their source (promote's and the gates' reads), and the one its promotion job
    # assumes to approve a version's model package here (`mlinfra approve`). The bootstrap stack creates both
    # (`<project>-<stage>-source`, `<project>-<stage>-approval`); this stage's own jobs never use them. Unset (the
    # next stage shares this account), the next stage's jobs read and approve here with their own identity, never
    # through `role_arn` (it trusts this stage's own jobs only).
    source_role_arn: RoleArn | None = None
    approval_role_arn: RoleArn | None = None

    @model_validator(mode="after")
    def _source_roles(self) -> AccessSettings:
        pair = (self.source_role_arn, self.approval_role_arn)
        if (pair[0] is None) != (pair[1] is None):
            raise ValueError(
                "sourceRoleArn and approvalRoleArn go together: set both (`mlinfra bootstrap preview --json | jq "
                ".outputs.sourceRoles`) or neither"
            )
        if pair[0] is not None and pair[1] is not None and pair[0].split(":")[4] != pair[1].split(":")[4]:
            raise ValueError(f"sourceRoleArn {pair[0]} and approvalRoleArn {pair[1]} must be in the same account")
        return self


# How a promotion reaches a stage: `direct` moves the stage pointer at once; `pullRequest` puts the pin on a branch
# and opens a pull request, and the pointer moves when CI's apply of the merged commit is recorded.
Delivery = Literal["direct", "pullRequest"]


PULL_REQUEST_STAGES = frozenset({"staging", "prod"})  # stages delivered by pull request unless their file says


class StackConfig(Settings):
    """Everything one stage's stack declares. Built by `load_stack_config`, never by hand."""

    project: str
    stage: StageName
    region: Region
    owner: OwnerTag
    stages: Annotated[list[StageName], Field(max_length=10)]
    account_id: AccountId | None = None
    access: AccessSettings = AccessSettings()
    registry: RegistrySettings = RegistrySettings()
    model_defaults: ModelSettings = ModelSettings()
    models: dict[ModelName, ModelConfig] = Field(default_factory=dict, max_length=100)
    monitoring: MonitoringSettings = MonitoringSettings()
    sandbox: SandboxSettings = SandboxSettings()
    policy: PolicySettings = PolicySettings()
    # The stage's monthly budget in US dollars, for the cost estimate of the policy pack; None: no budget.
    budget_monthly_usd: Annotated[float, Field(gt=0)] | None = None
    delivery: Delivery | None = None
    # Every IAM role the stack creates carries the stage's workload boundary (`<project>-<stage>-workload-boundary`,
    # created by the bootstrap stack); the bootstrap's deploy role may create no role without it.
    workload_boundary: bool = False

    @model_validator(mode="after")
    def _unique_stages(self) -> StackConfig:
        if len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages lists a stage twice: {self.stages}")
        return self

    @model_validator(mode="after")
    def _source_roles_here(self) -> StackConfig:
        role = self.access.source_role_arn
        if role is not None and self.account_id is not None and role.split(":")[4] != self.account_id:
            raise ValueError(
                f"access.sourceRoleArn {role} is not in this stage's account {self.account_id}: it is the role in "
                "this stage's account that the next stage's jobs assume"
            )
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
    "workloadBoundary",
)
