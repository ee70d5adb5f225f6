"""Stack config validation: good config loads, every kind of bad config names the file and the key."""

from __future__ import annotations

from typing import Any

import pytest

from mlinfra_infra import naming
from mlinfra_infra.config import SECRET_PLACEHOLDER, ConfigError, load_stack_config, split_config
from tests.builders import base_config, merge, pin

SOURCE = "stacks/Pulumi.dev.yaml"


def load(overrides: dict[str, Any] | None = None, *, stage: str = "dev", drop: tuple[str, ...] = ()) -> Any:
    raw = merge(base_config(stage), overrides or {})
    for key in drop:
        raw.pop(key)
    return load_stack_config(raw, project="mlinfra", stage=stage, source=SOURCE)


def error_of(overrides: dict[str, Any] | None = None, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(overrides, **kwargs)
    return info.value


def test_minimal_config_loads_with_defaults() -> None:
    cfg = load()
    assert cfg.stage == "dev"
    assert cfg.region == "eu-west-1"
    assert cfg.models["churn"].pinned is None
    assert cfg.pinned_models == {}
    assert cfg.models["churn"].mode == "realtime"


def test_pinned_model_and_model_defaults_merge_key_by_key() -> None:
    cfg = load(
        {
            "mlinfra:modelDefaults": {"instanceType": "ml.c5.xlarge", "alarms": {"latencyP99Ms": 250}},
            "mlinfra:models": {"churn": {"pinned": pin(), "alarms": {"errors5xx": 9}}},
        }
    )
    churn = cfg.models["churn"]
    assert churn.pinned is not None and churn.pinned.version == 3
    assert churn.instance_type == "ml.c5.xlarge"
    assert churn.alarms.latency_p99_ms == 250  # from the defaults
    assert churn.alarms.errors_5xx == 9  # the model's own override
    assert list(cfg.pinned_models) == ["churn"]


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        (
            {"mlinfra:models": {"churn": {"instanceTyp": "ml.m5.large"}}},
            "mlinfra:models.churn.instanceTyp",
            "did you mean 'instanceType'",
        ),
        ({"mlinfra:modelz": {}}, "mlinfra:modelz", "did you mean 'models'"),
        ({"mlinfa:models": {}}, "mlinfa:models", "did you mean 'mlinfra'"),
        (
            {"mlinfra:models": {"churn": {"instanceCount": "two"}}},
            "mlinfra:models.churn.instanceCount",
            "valid integer",
        ),
        (
            {"mlinfra:models": {"churn": {"instanceType": "ml.m99.large"}}},
            "mlinfra:models.churn.instanceType",
            "not an instance type SageMaker hosting accepts (did you mean 'ml.m5.large'?)",
        ),
        (
            {"mlinfra:models": {"churn": {"instanceType": "m5.large"}}},
            "mlinfra:models.churn.instanceType",
            "did you mean 'ml.m5.large'",
        ),
        (
            {"mlinfra:sandbox": {"enabled": True, "instanceType": "t9.large"}},
            "mlinfra:sandbox",
            "'t9.large' is not an instance type EC2 accepts",
        ),
        ({"mlinfra:models": {"Churn_Model": {}}}, "mlinfra:models.Churn_Model", "not a model name"),
        (
            {"mlinfra:models": {"churn": {"pinned": {k: v for k, v in pin().items() if k != "image"}}}},
            "mlinfra:models.churn.pinned.image",
            "required key is missing",
        ),
        (
            {"mlinfra:models": {"churn": {"pinned": {**pin(), "digest": "sha256:abc"}}}},
            "mlinfra:models.churn.pinned.digest",
            "sha256:<64 lowercase hex>",
        ),
        (
            {"mlinfra:models": {"churn": {"pinned": {**pin(), "digest": "md5:" + "a" * 64}}}},
            "mlinfra:models.churn.pinned.digest",
            "sha256:",
        ),
        (
            {"mlinfra:models": {"churn": {"pinned": {**pin(), "version": 0}}}},
            "mlinfra:models.churn.pinned.version",
            "greater than or equal to 1",
        ),
        (
            {"mlinfra:models": {"churn": {"pinned": {**pin(), "image": "docker.io/me/model:1"}}}},
            "mlinfra:models.churn.pinned.image",
            "ECR image URI",
        ),
        ({"mlinfra:models": {"churn": {"mode": "batch"}}}, "mlinfra:models.churn.mode", "'serverless' or 'realtime'"),
        (
            {
                "mlinfra:models": {
                    "churn": {"mode": "serverless", "networkIsolation": False, "capture": {"enabled": True}}
                }
            },
            "mlinfra:models.churn",
            "serverless endpoints do not support capture.enabled",
        ),
        (
            {"mlinfra:models": {"churn": {"autoscaling": {"enabled": True, "minCapacity": 3, "maxCapacity": 2}}}},
            "mlinfra:models.churn.autoscaling",
            "above maxCapacity",
        ),
        (
            {"mlinfra:models": {"churn": {"deployment": {"strategy": "canary", "trafficPercent": 80}}}},
            "mlinfra:models.churn.deployment.trafficPercent",
            "less than or equal to 50",
        ),
        ({"mlinfra:registry": {"bucketName": "My.Bucket"}}, "mlinfra:registry.bucketName", "not a valid bucket name"),
        (
            {"mlinfra:registry": {"objectLock": {"mode": "STRICT"}}},
            "mlinfra:registry.objectLock.mode",
            "'GOVERNANCE' or 'COMPLIANCE'",
        ),
        ({"mlinfra:accountId": "1234"}, "mlinfra:accountId", "12-digit"),
        ({"mlinfra:modelDefaults": {"instanceCount": 0}}, "mlinfra:modelDefaults.instanceCount", "greater than"),
        (
            {"mlinfra:sandbox": {"network": {"vpcId": "vpc-0123456789abcdef0"}}},
            "mlinfra:sandbox.network",
            "give both vpcId and subnetId",
        ),
        (
            {"mlinfra:models": {"churn": {"gates": {"fromStage": "stagng"}}}},
            "mlinfra:models.churn.gates.fromStage",
            "did you mean 'staging'",
        ),
    ],
)
def test_bad_config_names_file_and_key(overrides: dict[str, Any], key: str, fragment: str) -> None:
    err = error_of(overrides)
    assert err.source == SOURCE
    assert err.key == key, str(err)
    assert fragment in err.message, str(err)
    assert "\n" not in str(err)


def test_pin_must_point_at_this_stages_copy_of_the_digest() -> None:
    elsewhere = pin(stage="staging")  # a staging artifact pinned in dev: dev's endpoint role could not read it
    err = error_of({"mlinfra:models": {"churn": {"pinned": elsewhere}}})
    assert err.key == "mlinfra:models.churn.pinned.artifact"
    assert "expected s3://mlinfra-dev-<account>-eu-west-1/models/churn/sha256/" in err.message
    wrong_digest = {**pin(), "artifact": pin(version=9)["artifact"]}
    assert error_of({"mlinfra:models": {"churn": {"pinned": wrong_digest}}}).key.endswith("pinned.artifact")
    # With the account known, the bucket must match exactly.
    err = error_of({"mlinfra:accountId": "999999999999", "mlinfra:models": {"churn": {"pinned": pin()}}})
    assert "expected s3://mlinfra-dev-999999999999-eu-west-1/" in err.message


def test_deployment_timeout_must_cover_the_bakes_and_the_fleet_launch() -> None:
    err = error_of(
        {"mlinfra:models": {"churn": {"deployment": {"strategy": "linear", "trafficPercent": 10, "waitMinutes": 5}}}}
    )
    assert err.key == "mlinfra:models.churn"
    # A single instance: one linear step of 1 is 100% of the fleet.
    assert "more than 50% of a fleet of 1" in err.message
    err = error_of(
        {
            "mlinfra:models": {
                "churn": {
                    "instanceCount": 10,
                    "deployment": {"strategy": "linear", "trafficPercent": 10, "waitMinutes": 5},
                }
            }
        }
    )
    # Ten steps of 5 min plus the final bake (5) plus 10 min to launch the fleet: 65 min > 55.
    assert "must cover the linear deployment's bakes (55 min) plus 10 min" in err.message
    ok = load({"mlinfra:models": {"churn": {"deployment": {"waitMinutes": 30, "timeoutMinutes": 45}}}})
    assert ok.models["churn"].deployment.bake_minutes(1) == 35


def test_missing_region_is_named() -> None:
    err = error_of(drop=("aws:region",))
    assert err.key == "aws:region"
    assert "required" in err.message


def test_overlong_model_name_breaks_sagemaker_limit() -> None:
    # 32 characters is a legal model name, but with a long stage the endpoint name would exceed 63 characters.
    model = "m" * 32
    raw = merge(base_config("integration"), {"mlinfra:models": {model: {}}})
    project = "platform-team-mlops"
    with pytest.raises(ConfigError) as info:
        load_stack_config(raw, project=project, stage="integration", source=SOURCE)
    assert info.value.key == f"mlinfra:models.{model}"
    assert "SageMaker allows" in info.value.message
    assert len(naming.endpoint(project, "integration", model)) > 55


def test_overlong_stage_name_is_refused() -> None:
    err = error_of(stage="averyveryverylongstage")
    assert err.key == "stack name"


def test_secure_values_become_placeholders_and_are_reported() -> None:
    raw = merge(
        base_config(),
        {"mlinfra:monitoring": {"notifications": [{"protocol": "https", "endpoint": {"secure": "v1:abcd"}}]}},
    )
    ours, _, secrets = split_config(raw, SOURCE)
    assert secrets == {"mlinfra:monitoring"}
    assert ours["monitoring"]["notifications"][0]["endpoint"] == SECRET_PLACEHOLDER
    cfg = load_stack_config(raw, project="mlinfra", stage="dev", source=SOURCE)
    assert cfg.monitoring.notifications[0].endpoint == SECRET_PLACEHOLDER


@pytest.mark.parametrize("value", ["ml.m5.large", "ml.g5.12xlarge", "ml.inf2.xlarge", "ml.t2.medium"])
def test_valid_sagemaker_instance_types(value: str) -> None:
    assert load({"mlinfra:models": {"churn": {"instanceType": value}}}).models["churn"].instance_type == value


def test_bucket_name_derivation_is_deterministic_and_valid() -> None:
    name = naming.registry_bucket("mlinfra", "prod", "eu-west-1", "123456789012")
    assert name == "mlinfra-prod-123456789012-eu-west-1"
    naming.check_bucket_name(name)
    with pytest.raises(ValueError, match="not a valid bucket name"):
        naming.check_bucket_name("a" * 64)


@pytest.mark.parametrize(
    ("stage", "expected"),
    [("sandbox", "direct"), ("dev", "direct"), ("staging", "pullRequest"), ("prod", "pullRequest")],
)
def test_delivery_defaults_to_pull_requests_for_staging_and_prod(stage: str, expected: str) -> None:
    assert load(stage=stage).delivery_mode == expected
    flipped = "direct" if expected == "pullRequest" else "pullRequest"
    assert load({"mlinfra:delivery": flipped}, stage=stage).delivery_mode == flipped


def test_unknown_delivery_is_refused_with_the_choices() -> None:
    error = error_of({"mlinfra:delivery": "pullrequest"})
    assert error.key == "mlinfra:delivery"
    assert "'direct' or 'pullRequest'" in error.message


SOURCE_ROLE = "arn:aws:iam::111111111111:role/mlinfra-dev-source"
APPROVAL_ROLE = "arn:aws:iam::111111111111:role/mlinfra-dev-approval"


def test_the_source_roles_are_validated_arns_set_together_in_the_stages_account() -> None:
    lent = {"sourceRoleArn": SOURCE_ROLE, "approvalRoleArn": APPROVAL_ROLE}
    cfg = load({"mlinfra:accountId": "111111111111", "mlinfra:access": lent})
    assert (cfg.access.source_role_arn, cfg.access.approval_role_arn) == (SOURCE_ROLE, APPROVAL_ROLE)
    assert cfg.access.role_arn is None, "the roles lent to the next stage are not this stage's own"
    err = error_of({"mlinfra:access": {"sourceRoleArn": SOURCE_ROLE}})
    assert err.key == "mlinfra:access" and "set both" in err.message, str(err)
    err = error_of({"mlinfra:access": {"sourceRoleArn": "mlinfra-dev-source", "approvalRoleArn": APPROVAL_ROLE}})
    assert err.key == "mlinfra:access.sourceRoleArn" and "IAM role ARN" in err.message, str(err)
    elsewhere = APPROVAL_ROLE.replace("111111111111", "222222222222")
    err = error_of({"mlinfra:access": {"sourceRoleArn": SOURCE_ROLE, "approvalRoleArn": elsewhere}})
    assert "same account" in err.message, str(err)
    err = error_of({"mlinfra:accountId": "222222222222", "mlinfra:access": lent})
    assert "not in this stage's account 222222222222" in err.message and "\n" not in str(err), str(err)
