"""Rules for SageMaker endpoints and the sandbox's EC2 network and instance."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .. import rollout
from .engine import Context, Index, Resource, as_list, document, get, resource_rule, stack_rule, statements
from .tokens import (
    CAPTURE_STAGES,
    DEFAULT_SG,
    ENDPOINT,
    ENDPOINT_CONFIG,
    FRAMEWORK_REPOSITORIES,
    HANDLER_VARIABLES,
    INSTANCE,
    METRIC_ALARM,
    MODEL,
    OPEN_CIDRS,
    SCALING_TARGET,
    SECURITY_GROUP,
    SG_RULE,
    SUBNET,
    VPC_ENDPOINT,
)

# ---------------------------------------------------------------------------------------------------------------
# SageMaker


@resource_rule(
    "sagemaker-volume-kms",
    "Endpoint configurations encrypt the instances' storage volumes with the stage's key (kmsKeyArn); serverless "
    "variants have no volume.",
    (ENDPOINT_CONFIG,),
    ("CKV_AWS_98",),
)
def sagemaker_volume_kms(resource: Resource, ctx: Context) -> Iterable[str]:
    realtime = any("instanceType" in v for v in as_list(resource.inputs.get("productionVariants")))
    if realtime and not resource.inputs.get("kmsKeyArn"):
        yield "no kmsKeyArn: instance storage volumes use an AWS-managed key"


@resource_rule(
    "sagemaker-capture-kms",
    "Captured requests are written with the stage's key (dataCaptureConfig.kmsKeyId).",
    (ENDPOINT_CONFIG,),
)
def sagemaker_capture_kms(resource: Resource, ctx: Context) -> Iterable[str]:
    capture = resource.inputs.get("dataCaptureConfig")
    if capture and capture.get("enableCapture", True) and not capture.get("kmsKeyId"):
        yield "data capture without kmsKeyId"


@resource_rule(
    "sagemaker-capture-enabled",
    "Real-time endpoints in staging and prod capture a sample of requests (drift needs them).",
    (ENDPOINT_CONFIG,),
)
def sagemaker_capture_enabled(resource: Resource, ctx: Context) -> Iterable[str]:
    if ctx.stage not in CAPTURE_STAGES:
        return
    realtime = any("instanceType" in v for v in as_list(resource.inputs.get("productionVariants")))
    if realtime and get(resource.inputs, "dataCaptureConfig.enableCapture") is not True:
        yield f"no data capture on a real-time endpoint in {ctx.stage}"


@stack_rule(
    "sagemaker-network-isolation",
    "Models served by real-time variants run with network isolation (no outbound calls from the container); "
    "serverless variants do not support it.",
    ("CKV_AWS_370",),
)
def sagemaker_network_isolation(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    index = Index(resources)
    realtime_models = [
        str(v.get("modelName", ""))
        for c in index.of(ENDPOINT_CONFIG)
        for v in as_list(c.inputs.get("productionVariants"))
        if "instanceType" in v
    ]
    for model in index.of(MODEL):
        name = str(model.inputs.get("name") or model.name)
        served_realtime = any(m == name or m.startswith(name + "-") for m in realtime_models)
        if served_realtime and model.inputs.get("enableNetworkIsolation") is not True:
            yield model.name, "enableNetworkIsolation is not true on a model served by a real-time variant"


def image_repository(image: str) -> str:
    """`<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>` (or `@sha256:...`) -> `<repository>`."""
    return image.partition("/")[2].partition("@")[0].partition(":")[0]


@resource_rule(
    "sagemaker-framework-handler",
    "Models on a prebuilt framework image (scikit-learn, XGBoost, PyTorch) name their handler with "
    "SAGEMAKER_PROGRAM and SAGEMAKER_SUBMIT_DIRECTORY, from the handler layout the pin carries: without them the "
    "container finds no model_fn and the endpoint never becomes InService. Mandatory in every stage.",
    (MODEL,),
    level="mandatory",  # a Model without its handler never starts: blocks in every stage
)
def sagemaker_framework_handler(resource: Resource, ctx: Context) -> Iterable[str]:
    container = resource.inputs.get("primaryContainer")
    if not isinstance(container, dict):
        return
    image = str(container.get("image") or "")
    framework = FRAMEWORK_REPOSITORIES.get(image_repository(image))
    if framework is None:
        return
    environment = container.get("environment") or {}
    missing = [name for name in HANDLER_VARIABLES if not environment.get(name)]
    if missing:
        yield (
            f"{framework} image without {' and '.join(missing)}: the container finds no handler and the endpoint "
            "never becomes InService; pin the version with `mlinfra promote` (it writes the handler layout) or add "
            "handler: {framework, program, directory} to the pin"
        )


@resource_rule(
    "sagemaker-instance-allowed",
    "Endpoint instance types come from the stage's policy.allowedInstanceTypes (empty: any).",
    (ENDPOINT_CONFIG,),
)
def sagemaker_instance_allowed(resource: Resource, ctx: Context) -> Iterable[str]:
    if not ctx.allowed_instance_types:
        return
    for variant in as_list(resource.inputs.get("productionVariants")):
        kind = variant.get("instanceType")
        if kind and kind not in ctx.allowed_instance_types:
            yield f"{kind} is not in policy.allowedInstanceTypes {list(ctx.allowed_instance_types)}"


def _alarms_by_name(index: Index) -> dict[str, Resource]:
    return {str(a.inputs.get("name")): a for a in index.of(METRIC_ALARM)}


def _waits(endpoint: Resource) -> list[tuple[str, int]]:
    policy = get(endpoint.inputs, "deploymentConfig.blueGreenUpdatePolicy", {}) or {}
    waits = []
    if "terminationWaitInSeconds" in policy:
        waits.append(("final bake (terminationWaitInSeconds)", int(policy["terminationWaitInSeconds"])))
    routing = policy.get("trafficRoutingConfiguration") or {}
    if routing.get("type") in ("CANARY", "LINEAR") and "waitIntervalInSeconds" in routing:
        waits.append(("bake (waitIntervalInSeconds)", int(routing["waitIntervalInSeconds"])))
    return waits


@stack_rule(
    "sagemaker-rollback-in-bake",
    "Endpoints with a deployment policy roll back on alarms that can reach ALARM inside every bake, with a "
    "non-zero final bake.",
)
def sagemaker_rollback_in_bake(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    index = Index(resources)
    alarms = _alarms_by_name(index)
    for endpoint in index.of(ENDPOINT):
        config = endpoint.inputs.get("deploymentConfig")
        if not config:
            continue
        names = [a.get("alarmName") for a in as_list(get(config, "autoRollbackConfiguration.alarms"))]
        if not names:
            yield endpoint.name, "deployment policy without auto-rollback alarms"
            continue
        waits = _waits(endpoint)
        if not any(seconds > 0 for label, seconds in waits if label.startswith("final")):
            yield endpoint.name, "no final bake (terminationWaitInSeconds is 0): a bad fleet is never rolled back"
        for name in names:
            alarm = alarms.get(str(name))
            if alarm is None:
                yield endpoint.name, f"rollback alarm {name} is not declared in this stack"
                continue
            period = int(alarm.inputs.get("period", 60))
            datapoints = int(alarm.inputs.get("datapointsToAlarm") or alarm.inputs.get("evaluationPeriods", 1))
            detect = rollout.detection_seconds(period, datapoints)
            for label, seconds in waits:
                if seconds < detect:
                    yield (
                        endpoint.name,
                        f"alarm {name} needs up to {detect} s to fire, longer than the {label} {seconds} s",
                    )


@resource_rule(
    "sagemaker-rollback-alarms-stable",
    "A fixed-name endpoint's rollback alarms are named after the endpoint, so no config change alters "
    "deploymentConfig.autoRollbackConfiguration (force-new: a replacement would collide with the fixed name).",
    (ENDPOINT,),
)
def sagemaker_rollback_alarms_stable(resource: Resource, ctx: Context) -> Iterable[str]:
    name = resource.inputs.get("name")
    if not name:
        return  # auto-named endpoints can be replaced create-before-delete
    for alarm in as_list(get(resource.inputs, "deploymentConfig.autoRollbackConfiguration.alarms")):
        if not str(alarm.get("alarmName", "")).startswith(f"{name}-"):
            yield f"rollback alarm {alarm.get('alarmName')} is not named after the endpoint {name}"


@resource_rule(
    "ec2-s3-endpoint-scoped",
    "S3 gateway endpoints carry a policy limited to named buckets (no s3 access to every bucket).",
    (VPC_ENDPOINT,),
)
def ec2_s3_endpoint_scoped(resource: Resource, ctx: Context) -> Iterable[str]:
    if not str(resource.inputs.get("serviceName", "")).endswith(".s3"):
        return
    doc = document(resource.inputs.get("policy"))
    if not doc:
        yield "no endpoint policy: the endpoint reaches every bucket"
    for statement in statements(doc):
        if statement.get("Effect") == "Allow" and "*" in as_list(statement.get("Resource")):
            yield f"statement {statement.get('Sid', '?')} allows every bucket"


@stack_rule(
    "sagemaker-canary-size",
    "Canary and linear steps are at least one instance and at most half of the new fleet (SageMaker's limit).",
)
def sagemaker_canary_size(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    index = Index(resources)
    fleets = {
        str(c.inputs.get("name") or c.name): sum(
            int(v.get("initialInstanceCount", 0)) for v in c.inputs["productionVariants"]
        )
        for c in index.of(ENDPOINT_CONFIG)
        if c.inputs.get("productionVariants")
    }
    for endpoint in index.of(ENDPOINT):
        routing = get(endpoint.inputs, "deploymentConfig.blueGreenUpdatePolicy.trafficRoutingConfiguration", {}) or {}
        kind = routing.get("type")
        if kind not in ("CANARY", "LINEAR"):
            continue
        size = routing.get("canarySize" if kind == "CANARY" else "linearStepSize") or {}
        fleet = _fleet_of(endpoint, fleets)
        if fleet is None:
            continue
        value = int(size.get("value", 0))
        instances = value if size.get("type") == "INSTANCE_COUNT" else value * fleet / 100
        if instances < 1:
            yield endpoint.name, f"a {kind.lower()} step of {value}% of {fleet} instances is under one instance"
        elif instances > fleet / 2:
            yield endpoint.name, f"a {kind.lower()} step of {instances:g} instances is over half the fleet of {fleet}"


def _fleet_of(endpoint: Resource, fleets: dict[str, int]) -> int | None:
    config_name = str(endpoint.inputs.get("endpointConfigName", ""))
    for name, fleet in fleets.items():
        if config_name == name or config_name.startswith(name + "-"):
            return fleet
    return None


@resource_rule(
    "sagemaker-deployment-timeout",
    "A deployment's maximum execution time fits in the provider's 60-minute wait for an endpoint update.",
    (ENDPOINT,),
)
def sagemaker_timeout(resource: Resource, ctx: Context) -> Iterable[str]:
    limit = rollout.MAX_DEPLOYMENT_TIMEOUT_MINUTES * 60
    seconds = get(resource.inputs, "deploymentConfig.blueGreenUpdatePolicy.maximumExecutionTimeoutInSeconds")
    if seconds is not None and int(seconds) > limit:
        yield f"maximumExecutionTimeoutInSeconds {seconds} is longer than pulumi-aws waits ({limit} s)"


@stack_rule(
    "sagemaker-autoscaled-deploys-at-max",
    "An autoscaled variant deploys at its maximum capacity, so a new pin never shrinks a scaled-out endpoint.",
)
def sagemaker_deploys_at_max(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    index = Index(resources)
    targets = {str(t.inputs.get("resourceId")): t for t in index.of(SCALING_TARGET)}
    endpoints = {str(e.inputs.get("name")): e for e in index.of(ENDPOINT)}
    for endpoint_name, endpoint in endpoints.items():
        config_name = str(endpoint.inputs.get("endpointConfigName", ""))
        configs = [c for c in index.of(ENDPOINT_CONFIG) if config_name.startswith(str(c.inputs.get("name") or c.name))]
        for config in configs:
            for variant in as_list(config.inputs.get("productionVariants")):
                target = targets.get(f"endpoint/{endpoint_name}/variant/{variant.get('variantName')}")
                if target is None:
                    continue
                initial, most = variant.get("initialInstanceCount"), target.inputs.get("maxCapacity")
                if initial != most:
                    yield (
                        config.name,
                        (
                            f"variant {variant.get('variantName')} starts {initial} instances but scales to {most}: a "
                            "new pin would shrink a scaled-out endpoint"
                        ),
                    )


# ---------------------------------------------------------------------------------------------------------------
# EC2


@resource_rule("ec2-imdsv2", "Instances require IMDSv2 tokens.", (INSTANCE,), ("CKV_AWS_79",))
def ec2_imdsv2(resource: Resource, ctx: Context) -> Iterable[str]:
    if get(resource.inputs, "metadataOptions.httpTokens") != "required":
        yield "metadataOptions.httpTokens is not required (IMDSv1 allowed)"


@resource_rule("ec2-no-public-ip", "Instances get no public IP.", (INSTANCE,), ("CKV_AWS_88",))
def ec2_no_public_ip(resource: Resource, ctx: Context) -> Iterable[str]:
    if resource.inputs.get("associatePublicIpAddress") is True:
        yield "associatePublicIpAddress is true"


@resource_rule("ec2-subnet-private", "Subnets do not assign public IPs on launch.", (SUBNET,), ("CKV_AWS_130",))
def ec2_subnet_private(resource: Resource, ctx: Context) -> Iterable[str]:
    if resource.inputs.get("mapPublicIpOnLaunch") is True:
        yield "mapPublicIpOnLaunch is true"


@resource_rule(
    "ec2-encrypted-volumes",
    "Instance volumes are encrypted with the stage's key.",
    (INSTANCE,),
    ("CKV_AWS_8", "CKV2_AWS_2"),
)
def ec2_encrypted_volumes(resource: Resource, ctx: Context) -> Iterable[str]:
    devices = [("rootBlockDevice", resource.inputs.get("rootBlockDevice") or {})]
    devices += [(f"ebsBlockDevices.{i}", d) for i, d in enumerate(as_list(resource.inputs.get("ebsBlockDevices")))]
    for path, device in devices:
        if device.get("encrypted") is not True or not device.get("kmsKeyId"):
            yield f"{path} is not encrypted with a customer key"


def _open_ingress(rules: Iterable[Any]) -> Iterator[str]:
    for rule in rules:
        cidrs = as_list(rule.get("cidrBlocks")) + as_list(rule.get("ipv6CidrBlocks"))
        cidrs += as_list(rule.get("cidrIpv4")) + as_list(rule.get("cidrIpv6"))
        for cidr in cidrs:
            if cidr in OPEN_CIDRS:
                yield f"ingress from {cidr} to ports {rule.get('fromPort')}-{rule.get('toPort')}"


@resource_rule(
    "ec2-no-open-ingress",
    "No security group admits traffic from 0.0.0.0/0 or ::/0.",
    (SECURITY_GROUP, SG_RULE),
    ("CKV_AWS_24", "CKV_AWS_25", "CKV_AWS_260", "CKV_AWS_277"),
)
def ec2_no_open_ingress(resource: Resource, ctx: Context) -> Iterable[str]:
    rules = as_list(resource.inputs.get("ingress")) if resource.type == SECURITY_GROUP else [resource.inputs]
    yield from _open_ingress(rules)


@resource_rule(
    "ec2-default-sg-closed",
    "The VPC's default security group has no rules.",
    (DEFAULT_SG,),
    ("CKV2_AWS_12",),
)
def ec2_default_sg(resource: Resource, ctx: Context) -> Iterable[str]:
    if as_list(resource.inputs.get("ingress")) or as_list(resource.inputs.get("egress")):
        yield "the default security group has rules"


@resource_rule("ec2-no-key-pair", "Instances have no SSH key pair: access is through Session Manager.", (INSTANCE,))
def ec2_no_key_pair(resource: Resource, ctx: Context) -> Iterable[str]:
    if resource.inputs.get("keyName"):
        yield f"key pair {resource.inputs['keyName']} attached"
