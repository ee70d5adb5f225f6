"""ModelEndpoint: one pinned model version served by SageMaker, with its role, alarms, rollback and autoscaling."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from mlinfra_infra import naming, rollout
from mlinfra_infra.config import DeploymentSettings, ModelConfig, Pin
from mlinfra_infra.layout import CAPTURE_PREFIX, MODELS_PREFIX

from .common import TYPE_PREFIX, policy_document, service_trust_policy, statement, tags

# Kind suffixes of the auto-named Model and EndpointConfiguration. Pulumi names them "<logical name>-<7 hex>", and
# naming.check_model_names only guarantees that "<endpoint>" plus a 3-character suffix plus that random part fits
# SageMaker's 63 characters, so these must stay at most 3 characters long.
MODEL_SUFFIX = "-m"
CONFIG_SUFFIX = "-c"

# Nitro instance families whose hosts have local NVMe storage. That storage is encrypted by the instance's hardware
# and CreateEndpointConfig *fails* when KmsKeyId is given for such an instance type, so the key is left out for them.
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpointConfig.html#sagemaker-CreateEndpointConfig-request-KmsKeyId
INSTANCE_STORAGE_FAMILIES = frozenset(
    ["m5d", "m6gd", "m6id", "c5d", "c6gd", "c6id", "r5d", "r6gd", "r6id", "g4dn", "g5", "g6", "g6e", "p4d", "p4de",
     "p5", "trn1"]
)  # fmt: skip

# Where SageMaker publishes endpoint invocation metrics (ModelLatency is in microseconds there).
SAGEMAKER_METRICS_NAMESPACE = "AWS/SageMaker"
# Where an endpoint's containers publish metrics of their own; the execution role may write to no other namespace.
ENDPOINT_METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"

# Where SageMaker unpacks model.tar.gz in the container, and the log level the SageMaker Python SDK sets (INFO).
MODEL_ROOT = "/opt/ml/model"
CONTAINER_LOG_LEVEL = 20

_IMAGE_URI = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>[^:@]+)"
)
_TRAFFIC_ROUTING = {"all-at-once": "ALL_AT_ONCE", "canary": "CANARY", "linear": "LINEAR"}


def ecr_repository_arn(image: str) -> str:
    """Return the ARN of the ECR repository holding `image` (`<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>`).

    The account and region are the image's own (e.g. AWS's Deep Learning Containers account), not the stage's.
    """
    match = _IMAGE_URI.match(image)
    if match is None:
        raise ValueError(f"{image!r} is not an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>)")
    return f"arn:aws:ecr:{match['region']}:{match['account']}:repository/{match['repo']}"


def traffic_routing(
    deployment: DeploymentSettings, fleet: int | None
) -> aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationArgsDict:
    """Return the blue/green traffic routing block of a deployment strategy on a new fleet of `fleet` instances.

    Canary and linear steps are sized in whole instances (INSTANCE_COUNT): 10% of a two-instance fleet is a fifth of
    an instance, which SageMaker cannot serve, while one instance is a valid canary (at most 50% of the fleet, checked
    by config validation). Serverless variants (`fleet` None) keep the percentage.
    """
    routing: aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationArgsDict = {
        "type": _TRAFFIC_ROUTING[deployment.strategy],
        "wait_interval_in_seconds": deployment.wait_minutes * 60,
    }
    size: aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationCanarySizeArgsDict = (
        {"type": "CAPACITY_PERCENT", "value": deployment.traffic_percent}
        if fleet is None
        else {
            "type": "INSTANCE_COUNT",
            "value": rollout.step_instances(deployment.strategy, deployment.traffic_percent, fleet),
        }
    )
    if deployment.strategy == "canary":
        routing["canary_size"] = size
    elif deployment.strategy == "linear":
        routing["linear_step_size"] = size
    return routing


def container_environment(model: str, pin: Pin, region: str) -> dict[str, str]:
    """The model container's environment: mlinfra's identity of the version, and what the framework container needs.

    The prebuilt framework containers import the handler named by SAGEMAKER_PROGRAM from SAGEMAKER_SUBMIT_DIRECTORY
    (the scikit-learn and XGBoost ones find no model_fn otherwise and fail their health check); `register` recorded
    where the handler sits in the archive (`pin.handler`). A custom image (no handler recorded) gets mlinfra's
    variables only. Values are the SageMaker Python SDK's for a repacked model: /opt/ml/model/code, log level 20.
    """
    environment = {"MLINFRA_MODEL": model, "MLINFRA_VERSION": str(pin.version), "MLINFRA_DIGEST": pin.digest}
    if pin.handler is not None:
        environment.update(
            {
                "SAGEMAKER_PROGRAM": pin.handler.program,
                "SAGEMAKER_SUBMIT_DIRECTORY": f"{MODEL_ROOT}/{pin.handler.directory}",
                "SAGEMAKER_REGION": region,
                "SAGEMAKER_CONTAINER_LOG_LEVEL": str(CONTAINER_LOG_LEVEL),
                # The containers `pip install` the handler's directory at start-up; building it in an isolated
                # environment would download setuptools, which network isolation forbids: use the image's.
                "PIP_NO_BUILD_ISOLATION": "0",
            }
        )
    return environment


def uses_volume_key(settings: ModelConfig) -> bool:
    """Return whether the endpoint config can take a KMS key for its ML storage volume (real-time, no NVMe)."""
    family = settings.instance_type.removeprefix("ml.").partition(".")[0]
    return settings.mode == "realtime" and family not in INSTANCE_STORAGE_FAMILIES


@dataclass
class ModelEndpointArgs:
    """One model's pinned version in one stage, and the registry it reads from."""

    project: str
    stage: str
    owner: str
    region: str
    account_id: pulumi.Input[str]
    model: str
    settings: ModelConfig
    registry_bucket: pulumi.Input[str]
    registry_bucket_arn: pulumi.Input[str]
    registry_key_arn: pulumi.Input[str]


class ModelEndpoint(pulumi.ComponentResource):
    """A SageMaker endpoint serving one pinned model version, guarded by its own health alarms.

    Security: an execution role that reads only its model's `models/<model>/` prefix, writes only its
    `capture/<model>/` prefix (when capture is on), uses the registry key, pulls only its own image repository and
    writes only its own log groups; network isolation and a KMS-encrypted ML volume as the settings ask.
    Updates: the Model and EndpointConfiguration are auto-named and replaced on every change while the fixed-name
    Endpoint updates in place through a blue/green deployment that rolls back on the endpoint's 5XX and p99 latency
    alarms. Real-time endpoints may scale on invocations per instance.
    """

    endpoint_name: pulumi.Output[str]
    alarm_names: pulumi.Output[list[str]]
    role_arn: pulumi.Output[str]
    model_name: pulumi.Output[str]
    endpoint_config_name: pulumi.Output[str]
    variant_name: str

    def __init__(self, name: str, args: ModelEndpointArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:ModelEndpoint", name, None, opts)
        settings = args.settings
        pin = settings.pinned
        if pin is None:
            raise ValueError(f"model {args.model!r} has no version pinned in {args.stage}, so it gets no endpoint")
        self._tags = tags(args.stage, args.owner, args.model)
        self.variant_name = naming.VARIANT_NAME
        endpoint_name = naming.endpoint(args.project, args.stage, args.model)
        # Config validation refuses capture and autoscaling with serverless (SageMaker supports neither there); the
        # guards keep the component correct on its own.
        capture = settings.capture.enabled and settings.mode == "realtime"
        key_arn = pulumi.Output.from_input(args.registry_key_arn)

        role, role_policy = self._execution_role(name, args, endpoint_name, pin.image, capture=capture)

        # SageMaker models and endpoint configurations are immutable: any change replaces them. With a fixed name the
        # replacement could not be created beside the old one (name conflict), and deleting first would pull the
        # config from under the live endpoint. Auto-named, a new pin creates a new model and config, the fixed-name
        # endpoint switches to them in place, and only then are the old ones deleted.
        model = aws.sagemaker.Model(
            f"{endpoint_name}{MODEL_SUFFIX}",
            execution_role_arn=role.arn,
            primary_container={
                "image": pin.image,
                "model_data_url": pin.artifact,
                "environment": container_environment(args.model, pin, args.region),
            },
            enable_network_isolation=settings.network_isolation,
            tags=self._tags,
            # CreateModel checks the role can fetch the artifact and image, so its policy must be in place first.
            # Retained on delete: an endpoint that rolled back runs on the old model, which Pulumi would otherwise
            # delete; `mlinfra up` deletes those no endpoint references after a successful apply
            # (mlinfra.stacks.retained).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy], retain_on_delete=True),
        )

        variant: aws.sagemaker.EndpointConfigurationProductionVariantArgsDict = {
            "variant_name": self.variant_name,
            "model_name": model.name,
        }
        if settings.mode == "realtime":
            variant["instance_type"] = settings.instance_type
            # At the autoscaling maximum when autoscaled (ModelSettings.deploy_fleet says why).
            variant["initial_instance_count"] = settings.deploy_fleet or settings.instance_count
        else:
            # No kms_key_arn and no data capture for serverless: there is no ML storage volume for the key to encrypt
            # (SageMaker would use it only for its own copy of the image), and serverless endpoints cannot capture.
            variant["serverless_config"] = {
                "max_concurrency": settings.serverless_max_concurrency,
                "memory_size_in_mb": settings.serverless_memory_mb,
            }
        data_capture: aws.sagemaker.EndpointConfigurationDataCaptureConfigArgsDict | None = None
        if capture:
            data_capture = {
                "enable_capture": True,
                "initial_sampling_percentage": settings.capture.sampling_percent,
                "destination_s3_uri": pulumi.Output.concat(
                    "s3://", args.registry_bucket, f"/{CAPTURE_PREFIX}{args.model}"
                ),
                "kms_key_id": key_arn,
                "capture_options": [{"capture_mode": "Input"}, {"capture_mode": "Output"}],
                "capture_content_type_header": {
                    "json_content_types": ["application/json"],
                    "csv_content_types": ["text/csv"],
                },
            }
        config = aws.sagemaker.EndpointConfiguration(
            f"{endpoint_name}{CONFIG_SUFFIX}",
            production_variants=[variant],
            # Encrypts the ML storage volume attached to each instance.
            kms_key_arn=key_arn if uses_volume_key(settings) else None,
            data_capture_config=data_capture,
            tags=self._tags,
            # Retained on delete, like the model (a rolled-back endpoint still runs on the old config).
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )

        health_alarms = self._health_alarms(name, args, endpoint_name)

        deployment = settings.deployment
        # Blue/green with auto-rollback applies to serverless endpoints too: SageMaker excludes them only from rolling
        # deployments (and config validation keeps serverless on all-at-once). Rollback needs the old and new configs
        # to share the variant name, hence the fixed VARIANT_NAME.
        # https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-exclusions.html
        endpoint = aws.sagemaker.Endpoint(
            f"{name}-endpoint",
            # Fixed: the CLI and the alarms find the endpoint by this name without the engine or stack outputs.
            name=endpoint_name,
            endpoint_config_name=config.name,
            deployment_config={
                "blue_green_update_policy": {
                    "traffic_routing_configuration": traffic_routing(deployment, settings.deploy_fleet),
                    "termination_wait_in_seconds": deployment.termination_wait_minutes * 60,
                    "maximum_execution_timeout_in_seconds": deployment.timeout_minutes * 60,
                },
                "auto_rollback_configuration": {
                    "alarms": [{"alarm_name": alarm.name} for alarm in health_alarms],
                },
            },
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=health_alarms),
        )

        if settings.autoscaling.enabled and settings.mode == "realtime":
            self._autoscaling(name, endpoint, settings)

        self.endpoint_name = endpoint.name
        self.alarm_names = pulumi.Output.all(*(alarm.name for alarm in health_alarms))
        self.role_arn = role.arn
        self.model_name = model.name
        self.endpoint_config_name = config.name
        self.register_outputs(
            {
                "endpointName": self.endpoint_name,
                "alarmNames": self.alarm_names,
                "roleArn": self.role_arn,
                "modelName": self.model_name,
                "endpointConfigName": self.endpoint_config_name,
                "variantName": self.variant_name,
            }
        )

    def _execution_role(
        self, name: str, args: ModelEndpointArgs, endpoint_name: str, image: str, *, capture: bool
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        """Declare the role SageMaker assumes to run the model, and its least-privilege inline policy."""
        bucket_arn = pulumi.Output.from_input(args.registry_bucket_arn)
        statements = [
            statement(
                "ReadOwnModelArtifacts",
                ["s3:GetObject"],
                [pulumi.Output.concat(bucket_arn, f"/{MODELS_PREFIX}{args.model}/*")],
            ),
            # Artifacts and captures are SSE-KMS with the registry key: reading needs Decrypt, writing a data key.
            statement("UseRegistryKey", ["kms:Decrypt", "kms:GenerateDataKey"], [args.registry_key_arn]),
            statement(
                "PullOwnImage",
                ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                [ecr_repository_arn(image)],
            ),
            # GetAuthorizationToken is not tied to a repository: IAM only accepts "*" as its resource.
            statement("GetEcrAuthorizationToken", ["ecr:GetAuthorizationToken"], ["*"]),
            statement(
                "WriteOwnLogs",
                ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                [
                    pulumi.Output.concat(
                        f"arn:aws:logs:{args.region}:",
                        args.account_id,
                        f":log-group:/aws/sagemaker/Endpoints/{endpoint_name}*",
                    )
                ],
            ),
            # PutMetricData has no resource-level permissions ("*" only); the namespace condition is what scopes it.
            statement(
                "PublishEndpointMetrics",
                ["cloudwatch:PutMetricData"],
                ["*"],
                condition={"StringEquals": {"cloudwatch:namespace": ENDPOINT_METRICS_NAMESPACE}},
            ),
        ]
        if capture:
            statements.append(
                statement(
                    "WriteOwnDataCapture",
                    ["s3:PutObject"],
                    [pulumi.Output.concat(bucket_arn, f"/{CAPTURE_PREFIX}{args.model}/*")],
                )
            )
        role = aws.iam.Role(
            f"{name}-role",
            description=f"SageMaker execution role of {endpoint_name}",
            # Only SageMaker acting for this account's resources in this region may assume it (confused deputy).
            assume_role_policy=service_trust_policy(
                "sagemaker.amazonaws.com",
                args.account_id,
                pulumi.Output.concat(f"arn:aws:sagemaker:{args.region}:", args.account_id, ":*"),
            ),
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        role_policy = aws.iam.RolePolicy(
            f"{name}-role-policy",
            role=role.id,
            policy=policy_document(*statements),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return role, role_policy

    def _health_alarms(
        self, name: str, args: ModelEndpointArgs, endpoint_name: str
    ) -> list[aws.cloudwatch.MetricAlarm]:
        """Declare the 5XX and p99 latency alarms that drive auto-rollback.

        Fixed names: the endpoint's rollback configuration refers to them by name. They have no actions of their own:
        DriftMonitoring wraps them in a composite alarm that notifies, so one incident does not page twice.
        """
        alarms = args.settings.alarms
        shared: dict[str, Any] = {
            "namespace": SAGEMAKER_METRICS_NAMESPACE,
            "dimensions": {"EndpointName": endpoint_name, "VariantName": self.variant_name},
            # At or above the threshold: `errors5xx: 1` alarms on the first error, not the second.
            "comparison_operator": "GreaterThanOrEqualToThreshold",
            "period": alarms.period_seconds,
            "evaluation_periods": alarms.evaluation_periods,
            # M of N: fires within the bake times config validation checked (rollout.detection_seconds).
            "datapoints_to_alarm": alarms.datapoints_to_alarm,
            # No traffic is not an outage, and a new endpoint has no datapoints yet.
            "treat_missing_data": "notBreaching",
            "tags": self._tags,
            "opts": pulumi.ResourceOptions(parent=self),
        }
        errors = aws.cloudwatch.MetricAlarm(
            f"{name}-5xx",
            name=naming.alarm(args.project, args.stage, args.model, naming.ALARM_5XX),
            alarm_description=(
                f"{endpoint_name}: {alarms.errors_5xx} or more 5XX responses per {alarms.period_seconds} s in "
                f"{alarms.datapoints_to_alarm} of {alarms.evaluation_periods} periods"
            ),
            metric_name="Invocation5XXErrors",
            statistic="Sum",
            threshold=alarms.errors_5xx,
            **shared,
        )
        latency = aws.cloudwatch.MetricAlarm(
            f"{name}-latency-p99",
            name=naming.alarm(args.project, args.stage, args.model, naming.ALARM_LATENCY),
            alarm_description=f"{endpoint_name}: p99 model latency at or above {alarms.latency_p99_ms} ms",
            metric_name="ModelLatency",
            extended_statistic="p99",
            # ModelLatency is reported in microseconds.
            threshold=alarms.latency_p99_ms * 1000,
            **shared,
        )
        return [errors, latency]

    def _autoscaling(self, name: str, endpoint: aws.sagemaker.Endpoint, settings: ModelConfig) -> None:
        """Declare target tracking on invocations per instance for the endpoint's variant."""
        scaling = settings.autoscaling
        # The scalable target can only be registered once the endpoint exists, and must be deregistered before the
        # endpoint is deleted: building resource_id from the endpoint's name output and depending on it gives Pulumi
        # that order. Changing the instance type of an autoscaled variant fails, and Pulumi cannot deregister the
        # target before the endpoint update it depends on: rollout.update_hazards reports such a change, which takes
        # two applies (autoscaling off, then the new type with autoscaling on).
        # https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-update.html
        target = aws.appautoscaling.Target(
            f"{name}-scaling-target",
            service_namespace="sagemaker",
            resource_id=pulumi.Output.concat("endpoint/", endpoint.name, f"/variant/{self.variant_name}"),
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=scaling.min_capacity,
            max_capacity=scaling.max_capacity,
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[endpoint]),
        )
        aws.appautoscaling.Policy(
            f"{name}-scaling-policy",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension,
            target_tracking_scaling_policy_configuration={
                "predefined_metric_specification": {
                    "predefined_metric_type": "SageMakerVariantInvocationsPerInstance",
                },
                "target_value": scaling.target_invocations_per_instance,
                "scale_in_cooldown": scaling.scale_in_cooldown_seconds,
                "scale_out_cooldown": scaling.scale_out_cooldown_seconds,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
