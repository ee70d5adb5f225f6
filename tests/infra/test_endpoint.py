"""ModelEndpoint under Pulumi's mock runtime: role scope, model, config, alarms, rollback, autoscaling, names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mlinfra.stacks import render as render_module
from mlinfra.stacks.render import RenderedResource, RenderedStack
from mlinfra_infra import naming, outputs
from mlinfra_infra.components.endpoint import ecr_repository_arn
from tests.builders import IMAGE, digest_of, pin
from tests.conftest import policy

Render = Callable[..., RenderedStack]

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MODEL = "aws:sagemaker/model:Model"
CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TARGET = "aws:appautoscaling/target:Target"
SCALING_POLICY = "aws:appautoscaling/policy:Policy"
ENDPOINT_TYPES = (ROLE, ROLE_POLICY, MODEL, CONFIG, ENDPOINT, ALARM, TARGET, SCALING_POLICY)
UNTAGGABLE = {ROLE_POLICY, SCALING_POLICY}

PROD_CHURN: dict[str, Any] = {
    "pinned": pin(stage="prod"),
    "mode": "realtime",
    "capture": {"enabled": True, "samplingPercent": 20},
    "autoscaling": {"enabled": True, "minCapacity": 2, "maxCapacity": 4},
    "instanceCount": 2,
    "deployment": {"strategy": "canary"},
}
DEV_SERVERLESS: dict[str, Any] = {"pinned": pin(), "mode": "serverless", "networkIsolation": False}
# The only actions IAM accepts on no other resource than "*".
STAR_ONLY_ACTIONS = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}


@pytest.fixture
def prod(render_stack: Render) -> RenderedStack:
    return render_stack({"mlinfra:models": {"churn": PROD_CHURN}}, stage="prod")


@pytest.fixture
def serverless(render_stack: Render) -> RenderedStack:
    return render_stack({"mlinfra:models": {"churn": DEV_SERVERLESS}}, stage="dev")


@pytest.fixture
def dependencies(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, dict[str, Any]]]:
    """Record, per logical name, the resources each registration depends on (all, and per input property)."""
    recorded: dict[str, dict[str, Any]] = {}
    original = render_module._make_monitor

    def name_of(urn: str) -> str:
        return urn.rsplit("::", 1)[1]

    def make_monitor(mocks: Any, stack: RenderedStack) -> Any:
        monitor = original(mocks, stack)
        register = monitor.RegisterResource

        def recording(request: Any) -> Any:
            recorded[request.name] = {
                "all": {name_of(urn) for urn in request.dependencies},
                "by_property": {
                    key: {name_of(urn) for urn in deps.urns} for key, deps in request.propertyDependencies.items()
                },
            }
            return register(request)

        monitor.RegisterResource = recording
        return monitor

    monkeypatch.setattr(render_module, "_make_monitor", make_monitor)
    yield recorded


def child(stack: RenderedStack, type_token: str, model: str = "churn") -> RenderedResource:
    """The single resource of `type_token` in `model`'s endpoint component."""
    found = [r for r in stack.children(f"{model}-endpoint") if r.type == type_token]
    assert len(found) == 1, f"{model}-endpoint: expected one {type_token}, found {[r.name for r in found]}"
    return found[0]


def statements(stack: RenderedStack, model: str = "churn") -> dict[str, dict[str, Any]]:
    """The execution role's policy statements by Sid."""
    document = policy(child(stack, ROLE_POLICY, model).inputs)
    return {s["Sid"]: s for s in document["Statement"]}


def variant(stack: RenderedStack, model: str = "churn") -> dict[str, Any]:
    variants = child(stack, CONFIG, model).inputs["productionVariants"]
    assert len(variants) == 1, f"{model}-endpoint config: one production variant expected, got {variants}"
    return dict(variants[0])


def deployment(stack: RenderedStack, model: str = "churn") -> dict[str, Any]:
    return dict(child(stack, ENDPOINT, model).inputs["deploymentConfig"])


def key_arn(stack: RenderedStack) -> str:
    return str(stack.outputs[outputs.REGISTRY_KEY_ARN])


def bucket_arn(stack: RenderedStack) -> str:
    return f"arn:aws:s3:::{stack.outputs[outputs.REGISTRY_BUCKET]}"


# ---------------------------------------------------------------------------------------------------------------
# The component and its children.


def test_component_parents_every_endpoint_resource(prod: RenderedStack) -> None:
    assert prod.named("churn-endpoint").type == "mlinfra:aws:ModelEndpoint"
    for type_token in ENDPOINT_TYPES:
        resources = prod.of_type(type_token)
        assert resources, f"prod: no {type_token} declared"
        for resource in resources:
            assert resource.parent == "churn-endpoint", f"{resource.name} ({type_token}) is not under churn-endpoint"


def test_every_taggable_child_carries_the_standard_tags(prod: RenderedStack, serverless: RenderedStack) -> None:
    for stack, stage in ((prod, "prod"), (serverless, "dev")):
        for resource in stack.children("churn-endpoint"):
            if resource.type in UNTAGGABLE:
                continue
            assert resource.inputs.get("tags") == {
                "stage": stage,
                "model": "churn",
                "owner": "ml-platform",
                "managed-by": "mlinfra",
            }, f"{stage}: {resource.name} ({resource.type}) tags are {resource.inputs.get('tags')}"


def test_unpinned_model_declares_no_endpoint_resources(render_stack: Render) -> None:
    stack = render_stack({"mlinfra:models": {"churn": {"mode": "realtime"}}}, stage="prod")
    assert not stack.of_type("mlinfra:aws:ModelEndpoint"), "an unpinned model must not get an endpoint component"
    for type_token in ENDPOINT_TYPES:
        assert not stack.of_type(type_token), f"unpinned churn: unexpected {type_token}"
    assert stack.outputs[outputs.ENDPOINT_NAMES] == {}


def test_two_pinned_models_get_two_endpoints_with_distinct_names(render_stack: Render) -> None:
    stack = render_stack(
        {
            "mlinfra:models": {
                "churn": {"pinned": pin(stage="staging")},
                "fraud": {"pinned": pin("fraud", 7, "staging")},
            }
        },
        stage="staging",
    )
    endpoints = {r.parent: r.inputs["name"] for r in stack.of_type(ENDPOINT)}
    assert endpoints == {"churn-endpoint": "mlinfra-staging-churn", "fraud-endpoint": "mlinfra-staging-fraud"}
    assert stack.outputs[outputs.ENDPOINT_NAMES] == {"churn": "mlinfra-staging-churn", "fraud": "mlinfra-staging-fraud"}
    alarm_names = [r.inputs["name"] for r in stack.of_type(ALARM)]
    assert len(alarm_names) == 4 and len(set(alarm_names)) == 4, f"alarm names collide: {alarm_names}"
    for model in ("churn", "fraud"):
        read = statements(stack, model)["ReadOwnModelArtifacts"]["Resource"]
        assert read == [f"{bucket_arn(stack)}/models/{model}/*"], f"{model}-endpoint role reads {read}"
        env = child(stack, MODEL, model).inputs["primaryContainer"]["environment"]
        assert env["MLINFRA_MODEL"] == model, f"{model}-endpoint model environment: {env}"


# ---------------------------------------------------------------------------------------------------------------
# Execution role.


def test_role_trusts_sagemaker_only(prod: RenderedStack) -> None:
    trust = policy(child(prod, ROLE).inputs, "assumeRolePolicy")
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
            # Confused deputy: only SageMaker acting for this account's resources in this region.
            "Condition": {
                "StringEquals": {"aws:SourceAccount": "123456789012"},
                "ArnLike": {"aws:SourceArn": "arn:aws:sagemaker:eu-west-1:123456789012:*"},
            },
        }
    ], f"churn-endpoint-role trust policy: {trust}"


@pytest.mark.parametrize("stage_fixture", ["prod", "serverless"])
def test_role_policy_never_grants_wildcards(stage_fixture: str, request: pytest.FixtureRequest) -> None:
    stack: RenderedStack = request.getfixturevalue(stage_fixture)
    for sid, stmt in statements(stack).items():
        assert stmt["Effect"] == "Allow", f"churn-endpoint-role-policy {sid}: unexpected effect"
        for action in stmt["Action"]:
            assert "*" not in action, f"churn-endpoint-role-policy {sid}: wildcard action {action!r}"
        if "*" in stmt["Resource"]:
            assert stmt["Resource"] == ["*"], f"churn-endpoint-role-policy {sid}: '*' mixed with other resources"
            assert set(stmt["Action"]) <= STAR_ONLY_ACTIONS, (
                f"churn-endpoint-role-policy {sid}: {stmt['Action']} on '*' (only {sorted(STAR_ONLY_ACTIONS)} may be)"
            )
        else:
            for resource in stmt["Resource"]:
                assert not resource.endswith(":*") and "::*" not in resource, (
                    f"churn-endpoint-role-policy {sid}: over-broad resource {resource!r}"
                )


def test_metrics_are_scoped_by_namespace(prod: RenderedStack) -> None:
    metrics = statements(prod)["PublishEndpointMetrics"]
    assert metrics["Action"] == ["cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}}, (
        "churn-endpoint-role-policy: PutMetricData on '*' must be limited to the endpoint namespace"
    )


def test_s3_access_is_limited_to_the_models_own_prefixes(prod: RenderedStack) -> None:
    by_sid = statements(prod)
    s3 = {sid: s for sid, s in by_sid.items() if any(a.startswith("s3:") for a in s["Action"])}
    assert s3 == {
        "ReadOwnModelArtifacts": {
            "Sid": "ReadOwnModelArtifacts",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{bucket_arn(prod)}/models/churn/*"],
        },
        "WriteOwnDataCapture": {
            "Sid": "WriteOwnDataCapture",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [f"{bucket_arn(prod)}/capture/churn/*"],
        },
    }, f"churn-endpoint-role-policy S3 statements: {s3}"


def test_no_capture_write_without_capture(render_stack: Render, serverless: RenderedStack) -> None:
    staging = render_stack(
        {"mlinfra:models": {"churn": {"pinned": pin(stage="staging"), "mode": "realtime"}}}, stage="staging"
    )
    for stack in (staging, serverless):
        actions = {a for s in statements(stack).values() for a in s["Action"]}
        assert "s3:PutObject" not in actions, f"{stack.stack}: churn-endpoint role may write without capture"


def test_role_uses_the_registry_key_pulls_its_image_and_writes_its_logs(prod: RenderedStack) -> None:
    by_sid = statements(prod)
    assert by_sid["UseRegistryKey"]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert by_sid["UseRegistryKey"]["Resource"] == [key_arn(prod)], "churn-endpoint-role: KMS must be the registry key"
    pull = by_sid["PullOwnImage"]
    assert set(pull["Action"]) == {
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchCheckLayerAvailability",
    }
    assert pull["Resource"] == ["arn:aws:ecr:eu-west-1:763104351884:repository/sklearn-inference"], (
        f"churn-endpoint-role: image pull scoped to {pull['Resource']}"
    )
    assert by_sid["GetEcrAuthorizationToken"]["Resource"] == ["*"]
    logs = by_sid["WriteOwnLogs"]
    assert set(logs["Action"]) == {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    assert logs["Resource"] == [
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/sagemaker/Endpoints/mlinfra-prod-churn*"
    ], f"churn-endpoint-role: logs scoped to {logs['Resource']}"


@pytest.mark.parametrize(
    ("image", "arn"),
    [
        (IMAGE, "arn:aws:ecr:eu-west-1:763104351884:repository/sklearn-inference"),
        (
            f"123456789012.dkr.ecr.us-east-1.amazonaws.com/team/churn@{digest_of('image')}",
            "arn:aws:ecr:us-east-1:123456789012:repository/team/churn",
        ),
    ],
)
def test_repository_arn_comes_from_the_image_uri(image: str, arn: str) -> None:
    assert ecr_repository_arn(image) == arn


def test_repository_arn_refuses_a_non_ecr_image() -> None:
    with pytest.raises(ValueError, match="is not an ECR image URI"):
        ecr_repository_arn("docker.io/library/python:3.11")


# ---------------------------------------------------------------------------------------------------------------
# Model and endpoint configuration.


def test_model_serves_the_pinned_version_in_isolation(prod: RenderedStack) -> None:
    model = child(prod, MODEL)
    pinned = PROD_CHURN["pinned"]
    assert "name" not in model.inputs, f"{model.name}: a fixed name would block replacement on a new pin"
    assert model.inputs["primaryContainer"] == {
        "image": pinned["image"],
        "modelDataUrl": pinned["artifact"],
        "environment": {
            "MLINFRA_MODEL": "churn",
            "MLINFRA_VERSION": str(pinned["version"]),
            "MLINFRA_DIGEST": pinned["digest"],
        },
    }, f"{model.name}: container {model.inputs['primaryContainer']}"
    assert model.inputs["enableNetworkIsolation"] is True, f"{model.name}: network isolation must be on in prod"
    role_name = f"churn-endpoint-role-{render_module._short_hash('churn-endpoint-role')}"
    assert model.inputs["executionRoleArn"] == f"arn:aws:iam::123456789012:role/{role_name}"


@pytest.mark.parametrize("framework", ["sklearn", "xgboost", "pytorch"])
def test_model_sets_the_framework_containers_environment_from_the_recorded_layout(
    render_stack: Render, framework: str
) -> None:
    # What `register --framework F` recorded about the archive (handler at code/inference.py) travels in the pin.
    pinned = {
        **pin(stage="staging"),
        "handler": {"framework": framework, "program": "inference.py", "directory": "code"},
    }
    stack = render_stack({"mlinfra:models": {"churn": {"pinned": pinned}}}, stage="staging")
    model = child(stack, MODEL)
    assert model.inputs["primaryContainer"]["environment"] == {
        "MLINFRA_MODEL": "churn",
        "MLINFRA_VERSION": str(pinned["version"]),
        "MLINFRA_DIGEST": pinned["digest"],
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_REGION": "eu-west-1",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "PIP_NO_BUILD_ISOLATION": "0",
    }, f"{model.name} ({framework}): environment {model.inputs['primaryContainer']['environment']}"


def test_a_recorded_layout_in_another_directory_is_what_the_container_is_told(render_stack: Render) -> None:
    pinned = {**pin(stage="dev"), "handler": {"framework": "sklearn", "program": "serve.py", "directory": "src/app"}}
    env = child(render_stack({"mlinfra:models": {"churn": {"pinned": pinned}}}), MODEL).inputs["primaryContainer"][
        "environment"
    ]
    assert (env["SAGEMAKER_PROGRAM"], env["SAGEMAKER_SUBMIT_DIRECTORY"]) == ("serve.py", "/opt/ml/model/src/app")


@pytest.mark.parametrize(
    ("handler", "problem"),
    [
        ({"framework": "sklearn", "program": "inference.py", "directory": "../etc"}, "leaves the archive"),
        ({"framework": "sklearn", "program": "inference.sh", "directory": "code"}, "not a Python file name"),
        ({"framework": "tensorflow", "program": "inference.py", "directory": "code"}, "framework"),
    ],
)
def test_a_bad_handler_layout_in_a_pin_is_refused(handler: dict[str, str], problem: str) -> None:
    from pydantic import ValidationError

    from mlinfra_infra.config import Pin

    with pytest.raises(ValidationError, match=problem):
        Pin.model_validate({**pin(), "handler": handler})


def test_model_waits_for_the_role_policy(render_stack: Render, dependencies: dict[str, Any]) -> None:
    model = child(render_stack({"mlinfra:models": {"churn": PROD_CHURN}}, stage="prod"), MODEL).name
    assert "churn-endpoint-role-policy" in dependencies[model]["all"], (
        f"{model}: must depend on churn-endpoint-role-policy (CreateModel checks the role's access)"
    )


def test_realtime_config_is_encrypted_and_captures_to_the_registry(prod: RenderedStack) -> None:
    config = child(prod, CONFIG)
    assert "name" not in config.inputs, f"{config.name}: a fixed name would block replacement"
    model_name = f"{child(prod, MODEL).name}-{render_module._short_hash(child(prod, MODEL).name)}"
    assert variant(prod) == {
        "variantName": "primary",
        "modelName": model_name,
        "instanceType": "ml.m5.large",
        # Autoscaled 2-4: every (re)deployment starts the new fleet at the maximum, never below the live count.
        "initialInstanceCount": 4,
    }, f"{config.name}: variant {variant(prod)}"
    assert config.inputs["kmsKeyArn"] == key_arn(prod), f"{config.name}: ML volume must use the registry key"
    assert config.inputs["dataCaptureConfig"] == {
        "enableCapture": True,
        "initialSamplingPercentage": 20,
        "destinationS3Uri": f"s3://{prod.outputs[outputs.REGISTRY_BUCKET]}/capture/churn",
        "kmsKeyId": key_arn(prod),
        "captureOptions": [{"captureMode": "Input"}, {"captureMode": "Output"}],
        "captureContentTypeHeader": {"jsonContentTypes": ["application/json"], "csvContentTypes": ["text/csv"]},
    }, f"{config.name}: data capture {config.inputs['dataCaptureConfig']}"


@pytest.mark.parametrize(
    ("instance_type", "encrypted"),
    [("ml.m5.xlarge", True), ("ml.c6i.large", True), ("ml.g5.xlarge", False), ("ml.m5d.large", False)],
)
def test_volume_key_is_left_out_on_instance_storage(render_stack: Render, instance_type: str, encrypted: bool) -> None:
    # CreateEndpointConfig fails when KmsKeyId is given for an instance type with local NVMe storage.
    stack = render_stack(
        {
            "mlinfra:models": {
                "churn": {"pinned": pin(stage="staging"), "mode": "realtime", "instanceType": instance_type}
            }
        },
        stage="staging",
    )
    config = child(stack, CONFIG)
    assert ("kmsKeyArn" in config.inputs) is encrypted, f"{config.name} on {instance_type}: {config.inputs}"


def test_serverless_config_has_no_key_no_capture_no_scaling(serverless: RenderedStack) -> None:
    config = child(serverless, CONFIG)
    assert variant(serverless)["serverlessConfig"] == {"maxConcurrency": 5, "memorySizeInMb": 2048}, config.name
    for absent in ("instanceType", "initialInstanceCount"):
        assert absent not in variant(serverless), f"{config.name}: serverless variant has {absent}"
    assert "kmsKeyArn" not in config.inputs, f"{config.name}: serverless config must not set kmsKeyArn"
    assert "dataCaptureConfig" not in config.inputs, f"{config.name}: serverless cannot capture data"
    assert child(serverless, MODEL).inputs["enableNetworkIsolation"] is False
    assert not serverless.of_type(TARGET) and not serverless.of_type(SCALING_POLICY), "serverless cannot autoscale"


def test_serverless_sizes_follow_config(render_stack: Render) -> None:
    stack = render_stack(
        {
            "mlinfra:models": {
                "churn": {**DEV_SERVERLESS, "serverlessMemoryMb": 4096, "serverlessMaxConcurrency": 20},
            }
        }
    )
    assert variant(stack)["serverlessConfig"] == {"maxConcurrency": 20, "memorySizeInMb": 4096}


def test_auto_names_fit_sagemaker_limits_for_the_longest_names(render_stack: Render) -> None:
    stage = "abcdefghijkl"  # 12, the longest stage name
    model = "m" * 31  # the longest model name naming.check_model_names accepts with that stage
    stack = render_stack(
        {"mlinfra:models": {model: {"pinned": pin(model, stage=stage), "mode": "realtime"}}}, stage=stage
    )
    endpoint = child(stack, ENDPOINT, model).inputs["name"]
    assert len(endpoint) == 52
    for type_token in (MODEL, CONFIG):
        resource = child(stack, type_token, model)
        # Pulumi auto-names "<logical name>-<7 random hex>"; the render's mock does the same.
        physical = f"{resource.name}-{render_module._short_hash(resource.name)}"
        assert len(physical) <= naming.SAGEMAKER_NAME_MAX, f"{resource.name}: auto-name {physical!r} is too long"
        assert naming.SAGEMAKER_NAME.fullmatch(physical), f"{resource.name}: auto-name {physical!r} is invalid"
        assert physical.startswith(endpoint), f"{resource.name}: auto-name should start with the endpoint name"
    role = child(stack, ROLE, model).name
    assert len(f"{role}-{render_module._short_hash(role)}") <= 64, f"{role}: IAM role names allow 64 characters"


# ---------------------------------------------------------------------------------------------------------------
# Health alarms, endpoint and rollback.


def test_health_alarms_watch_the_endpoint_variant(prod: RenderedStack) -> None:
    alarms = {r.inputs["name"]: r.inputs for r in prod.children("churn-endpoint") if r.type == ALARM}
    assert set(alarms) == {"mlinfra-prod-churn-5xx", "mlinfra-prod-churn-latency-p99"}
    for name, alarm in alarms.items():
        assert alarm["namespace"] == "AWS/SageMaker", name
        assert alarm["dimensions"] == {"EndpointName": "mlinfra-prod-churn", "VariantName": "primary"}, name
        # At or above: errors5xx: 1 must fire on the first error, not the second.
        assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold", name
        assert (alarm["period"], alarm["evaluationPeriods"], alarm["datapointsToAlarm"]) == (60, 3, 2), name
        assert alarm["treatMissingData"] == "notBreaching", f"{name}: no traffic must not breach"
        for actions in ("alarmActions", "okActions", "insufficientDataActions"):
            assert not alarm.get(actions), f"{name}: notifications belong to DriftMonitoring's composite alarm"
    errors_alarm = alarms["mlinfra-prod-churn-5xx"]
    assert (errors_alarm["metricName"], errors_alarm["statistic"], errors_alarm["threshold"]) == (
        "Invocation5XXErrors",
        "Sum",
        5,
    )
    latency = alarms["mlinfra-prod-churn-latency-p99"]
    assert (latency["metricName"], latency["extendedStatistic"]) == ("ModelLatency", "p99")
    assert "statistic" not in latency
    assert latency["threshold"] == 1000 * 1000, "ModelLatency is in microseconds: 1000 ms is 1,000,000"


def test_alarm_thresholds_follow_config(render_stack: Render) -> None:
    alarms_cfg = {
        "errors5xx": 2,
        "latencyP99Ms": 250,
        "periodSeconds": 60,
        "evaluationPeriods": 5,
        "datapointsToAlarm": 1,
    }
    stack = render_stack(
        {"mlinfra:models": {"churn": {"pinned": pin(stage="staging"), "alarms": alarms_cfg}}}, stage="staging"
    )
    alarms = {r.inputs["metricName"]: r.inputs for r in stack.of_type(ALARM)}
    assert alarms["Invocation5XXErrors"]["threshold"] == 2
    assert alarms["ModelLatency"]["threshold"] == 250_000
    for alarm in alarms.values():
        assert (alarm["period"], alarm["evaluationPeriods"], alarm["datapointsToAlarm"]) == (60, 5, 1), alarm["name"]


def test_endpoint_has_its_fixed_name_and_the_auto_named_config(prod: RenderedStack) -> None:
    endpoint = child(prod, ENDPOINT)
    assert endpoint.inputs["name"] == naming.endpoint("mlinfra", "prod", "churn") == "mlinfra-prod-churn"
    config = child(prod, CONFIG).name
    assert endpoint.inputs["endpointConfigName"] == f"{config}-{render_module._short_hash(config)}"
    assert prod.outputs[outputs.ENDPOINT_NAMES] == {"churn": "mlinfra-prod-churn"}


@pytest.mark.parametrize("stage_fixture", ["prod", "serverless"])
def test_rollback_watches_the_endpoints_own_alarms(
    stage_fixture: str, request: pytest.FixtureRequest, dependencies: dict[str, Any]
) -> None:
    stack: RenderedStack = request.getfixturevalue(stage_fixture)
    alarm_names = sorted(r.inputs["name"] for r in stack.children("churn-endpoint") if r.type == ALARM)
    rollback = deployment(stack)["autoRollbackConfiguration"]["alarms"]
    assert sorted(a["alarmName"] for a in rollback) == alarm_names, f"{stack.stack}: rollback watches {rollback}"
    assert {"churn-endpoint-5xx", "churn-endpoint-latency-p99"} <= dependencies["churn-endpoint-endpoint"]["all"]


@pytest.mark.parametrize(
    ("strategy", "extra", "routing"),
    [
        ("all-at-once", {}, {"type": "ALL_AT_ONCE", "waitIntervalInSeconds": 300}),
        # 5% of 4 instances is a fifth of one: the canary is one instance (at most 50% of the fleet).
        (
            "canary",
            {"trafficPercent": 5},
            {"type": "CANARY", "waitIntervalInSeconds": 300, "canarySize": {"type": "INSTANCE_COUNT", "value": 1}},
        ),
        # 30% of 4 is 1.2: a linear step rounds up to reach 10% of the fleet, here 2 instances (50%).
        (
            "linear",
            {"trafficPercent": 30, "waitMinutes": 6},
            {
                "type": "LINEAR",
                "waitIntervalInSeconds": 360,
                "linearStepSize": {"type": "INSTANCE_COUNT", "value": 2},
            },
        ),
    ],
)
def test_deployment_strategy_maps_to_blue_green_traffic_routing(
    render_stack: Render, strategy: str, extra: dict[str, Any], routing: dict[str, Any]
) -> None:
    settings = {"strategy": strategy, "terminationWaitMinutes": 6, "timeoutMinutes": 50, **extra}
    stack = render_stack(
        {
            "mlinfra:models": {
                "churn": {
                    "pinned": pin(stage="staging"),
                    "mode": "realtime",
                    "instanceCount": 4,
                    "deployment": settings,
                }
            }
        },
        stage="staging",
    )
    policy_ = deployment(stack)["blueGreenUpdatePolicy"]
    assert policy_ == {
        "trafficRoutingConfiguration": routing,
        "terminationWaitInSeconds": 360,
        "maximumExecutionTimeoutInSeconds": 3000,
    }, f"churn-endpoint-endpoint ({strategy}): {policy_}"


def test_serverless_keeps_all_at_once_blue_green(serverless: RenderedStack) -> None:
    routing = deployment(serverless)["blueGreenUpdatePolicy"]["trafficRoutingConfiguration"]
    assert routing["type"] == "ALL_AT_ONCE", f"churn-endpoint-endpoint (serverless): {routing}"


# ---------------------------------------------------------------------------------------------------------------
# Autoscaling.


def test_autoscaling_targets_the_endpoint_variant_after_the_endpoint(
    render_stack: Render, dependencies: dict[str, Any]
) -> None:
    stack = render_stack({"mlinfra:models": {"churn": PROD_CHURN}}, stage="prod")
    target = child(stack, TARGET)
    assert target.inputs["resourceId"] == "endpoint/mlinfra-prod-churn/variant/primary", target.name
    assert target.inputs["serviceNamespace"] == "sagemaker"
    assert target.inputs["scalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target.inputs["minCapacity"], target.inputs["maxCapacity"]) == (2, 4)
    recorded = dependencies[target.name]
    assert "churn-endpoint-endpoint" in recorded["all"], f"{target.name}: must depend on the endpoint"
    assert recorded["by_property"]["resourceId"] == {"churn-endpoint-endpoint"}, (
        f"{target.name}: resourceId must come from the endpoint's name output"
    )
    scaling = child(stack, SCALING_POLICY)
    assert scaling.inputs["policyType"] == "TargetTrackingScaling"
    assert scaling.inputs["resourceId"] == target.inputs["resourceId"]
    assert scaling.inputs["targetTrackingScalingPolicyConfiguration"] == {
        "predefinedMetricSpecification": {"predefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        "targetValue": 100,
        "scaleInCooldown": 300,
        "scaleOutCooldown": 60,
    }, f"{scaling.name}: {scaling.inputs['targetTrackingScalingPolicyConfiguration']}"


def test_no_autoscaling_when_disabled(render_stack: Render) -> None:
    stack = render_stack(
        {"mlinfra:models": {"churn": {"pinned": pin(stage="staging"), "mode": "realtime"}}}, stage="staging"
    )
    assert not stack.of_type(TARGET) and not stack.of_type(SCALING_POLICY), "autoscaling is off by default"
