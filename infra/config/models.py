"""Per-model settings.

Stage-wide defaults live under `mlinfra:modelDefaults`; each model may override any of them beside its `pinned`
block under `mlinfra:models.<model>`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .. import rollout
from .types import Digest, ImageUri, S3Uri, SageMakerInstanceType, Settings, StageName, check_pattern


class HandlerLayout(Settings):
    """Where a version's inference handler sits in its model.tar.gz, as `mlinfra register` checked and recorded it.

    ModelEndpoint turns it into the framework container's SAGEMAKER_PROGRAM and SAGEMAKER_SUBMIT_DIRECTORY.
    """

    framework: Literal["sklearn", "xgboost", "pytorch"]
    program: Annotated[str, check_pattern(r"[A-Za-z_][A-Za-z0-9_]*\.py", "a Python file name, e.g. inference.py")]
    directory: Annotated[
        str, check_pattern(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*", "a relative directory in the archive, e.g. code")
    ]

    @model_validator(mode="after")
    def _inside_archive(self) -> HandlerLayout:
        if ".." in self.directory.split("/"):
            raise ValueError(f"directory {self.directory!r} leaves the archive")
        return self


class Pin(Settings):
    """The immutable model version a stage runs: written by `mlinfra promote`, read by the program."""

    version: Annotated[int, Field(ge=1)]
    digest: Digest
    image: ImageUri
    artifact: S3Uri
    # Absent in pins written before handlers were recorded, and for custom images (`register --image` alone).
    handler: HandlerLayout | None = None


class CaptureSettings(Settings):
    """SageMaker data capture of requests and responses into the registry's `capture/<model>/` prefix."""

    enabled: bool = False
    sampling_percent: Annotated[int, Field(ge=1, le=100)] = 100


class AutoscalingSettings(Settings):
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


class DeploymentSettings(Settings):
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


class AlarmSettings(Settings):
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
    # Fewer scored rows than this are too few to judge: `mlinfra drift` says so, exits 0 and publishes nothing.
    drift_min_rows: Annotated[int, Field(ge=1, le=10_000_000)] = 100
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


class MetricThreshold(Settings):
    """A bound a registered metric must meet to pass a promotion gate."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> MetricThreshold:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        return self


class GateSettings(Settings):
    """What a version must satisfy to be promoted into this stage (evaluated by `mlinfra promote`)."""

    from_stage: StageName | None = None
    require_approval: bool = False
    min_soak_hours: Annotated[float, Field(ge=0, le=24 * 90)] = 0
    block_on_source_alarm: bool = True
    metrics: dict[str, MetricThreshold] = Field(default_factory=dict, max_length=50)


class ModelSettings(Settings):
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
