"""Rollback timing, canary sizes, provider wait limits and AWS-data validation of the stack config."""

from __future__ import annotations

from typing import Any

import pytest

from mlinfra_infra import awsdata, rollout
from mlinfra_infra.accounts import check_promotion_chain
from mlinfra_infra.config import ConfigError, load_stack_config
from tests.builders import base_config, merge

SOURCE = "stacks/Pulumi.prod.yaml"


def load(overrides: dict[str, Any], *, stage: str = "prod") -> Any:
    return load_stack_config(merge(base_config(stage), overrides), project="mlinfra", stage=stage, source=SOURCE)


def error(overrides: dict[str, Any], *, stage: str = "prod") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(overrides, stage=stage)
    assert "\n" not in str(info.value)
    return info.value


def churn(**settings: Any) -> dict[str, Any]:
    return {"mlinfra:models": {"churn": settings}}


# ---------------------------------------------------------------------------------------------------------------
# Rollback can fire inside every bake.


def test_defaults_let_the_alarms_fire_inside_each_bake() -> None:
    model = load({}).models["churn"]
    assert model.alarms.detection_seconds == (2 + 1) * 60 + rollout.DETECTION_DELAY_SECONDS == 300
    assert model.deployment.wait_minutes * 60 >= model.alarms.detection_seconds
    assert model.deployment.termination_wait_minutes * 60 >= model.alarms.detection_seconds > 0


def test_the_findings_combination_is_refused() -> None:
    # The review's prod: 3 x 300 s alarms, a 10-minute canary bake and no final bake.
    err = error(
        churn(
            instanceCount=2,
            alarms={"periodSeconds": 300, "evaluationPeriods": 3, "datapointsToAlarm": 3},
            deployment={"strategy": "canary", "waitMinutes": 10, "terminationWaitMinutes": 0},
        )
    )
    assert err.key == "mlinfra:models.churn"
    assert "deployment.waitMinutes is 10 min but the rollback alarms need up to 22 min 0 s to fire" in err.message


def test_a_zero_final_bake_is_refused() -> None:
    err = error(churn(deployment={"terminationWaitMinutes": 0}))
    assert "deployment.terminationWaitMinutes (the final bake) is 0 min" in err.message
    assert "lengthen the bake to at least 5 min" in err.message


def test_shorter_alarms_make_a_short_bake_valid() -> None:
    model = load(
        churn(
            alarms={"periodSeconds": 60, "evaluationPeriods": 1, "datapointsToAlarm": 1},
            deployment={"waitMinutes": 4, "terminationWaitMinutes": 4},
        )
    ).models["churn"]
    assert model.alarms.detection_seconds == 240


def test_datapoints_cannot_exceed_evaluation_periods() -> None:
    err = error(churn(alarms={"evaluationPeriods": 2, "datapointsToAlarm": 3}))
    assert err.key == "mlinfra:models.churn.alarms"
    assert "datapointsToAlarm (3) is more than evaluationPeriods (2)" in err.message


# ---------------------------------------------------------------------------------------------------------------
# Canary size in instances, at most half the fleet.


@pytest.mark.parametrize(
    ("strategy", "percent", "fleet", "instances"),
    [
        ("canary", 10, 2, 1),  # 0.2 of an instance becomes one instance
        ("canary", 10, 6, 1),
        ("canary", 25, 8, 2),
        ("canary", 50, 10, 5),
        ("linear", 10, 15, 2),  # 1.5 rounds up: 1 of 15 would be under SageMaker's 10% minimum
        ("linear", 20, 4, 1),
    ],
)
def test_steps_are_sized_in_instances(strategy: str, percent: int, fleet: int, instances: int) -> None:
    assert rollout.step_instances(strategy, percent, fleet) == instances
    assert rollout.check_step(strategy, percent, fleet) is None


def test_a_canary_on_one_instance_is_refused() -> None:
    err = error(churn(instanceCount=1, deployment={"strategy": "canary"}))
    assert err.key == "mlinfra:models.churn"
    assert "a canary step of 1 instance(s) is more than 50% of a fleet of 1" in err.message
    assert "at least 2" in err.message


def test_an_autoscaled_canary_is_sized_on_the_maximum_it_deploys_at() -> None:
    model = load(
        churn(
            instanceCount=1,
            autoscaling={"enabled": True, "minCapacity": 1, "maxCapacity": 3},
            deployment={"strategy": "canary"},
        )
    ).models["churn"]
    assert model.deploy_fleet == 3
    assert rollout.step_instances("canary", 10, 3) == 1


# ---------------------------------------------------------------------------------------------------------------
# What the provider can wait for.


def test_timeouts_beyond_the_providers_wait_are_refused() -> None:
    err = error(churn(deployment={"timeoutMinutes": 240}))
    assert err.key == "mlinfra:models.churn.deployment"
    assert "pulumi-aws waits 60 minutes for an endpoint update, so at most 55" in err.message
    assert load(churn(deployment={"timeoutMinutes": 55})).models["churn"].deployment.timeout_minutes == 55


def test_a_linear_deployment_too_long_for_the_wait_is_refused() -> None:
    err = error(churn(instanceCount=10, deployment={"strategy": "linear", "trafficPercent": 10, "waitMinutes": 5}))
    assert "(55 min) plus 10 min to launch the new fleet (65 min)" in err.message


# ---------------------------------------------------------------------------------------------------------------
# Validation from botocore's data.


def test_a_misspelt_region_fails_at_validation_with_a_suggestion() -> None:
    err = error({"aws:region": "eu-wset-1"})
    assert err.key == "aws:region"
    assert "'eu-wset-1' is not an AWS region (did you mean 'eu-west-1'?)" in err.message


@pytest.mark.parametrize("region", ["eu-west-1", "us-gov-west-1", "cn-north-1", "ap-southeast-2"])
def test_regions_of_every_partition_load(region: str) -> None:
    assert load({"aws:region": region}, stage="dev").region == region


def test_global_pseudo_regions_are_refused() -> None:
    assert "global endpoint" in error({"aws:region": "aws-global"}).message


def test_hosting_types_come_from_botocores_enum() -> None:
    hosting = awsdata.sagemaker_hosting_types()
    assert "ml.m5.xlarge" in hosting and "ml.g5.2xlarge" in hosting
    # A family the old hand list accepted with any size: SageMaker hosts no ml.t3.nano.
    assert "ml.t3.nano" not in hosting
    err = error(churn(instanceType="ml.t3.nano"))
    assert "'ml.t3.nano' is not an instance type SageMaker hosting accepts" in err.message


def test_the_vm_type_is_checked_against_ec2s_enum_only_when_the_vm_is_enabled() -> None:
    assert load({"mlinfra:sandbox": {"instanceType": "t3.hughe"}}, stage="sandbox").sandbox.enabled is False
    err = error({"mlinfra:sandbox": {"enabled": True, "instanceType": "t3.hughe"}}, stage="sandbox")
    assert "'t3.hughe' is not an instance type EC2 accepts" in err.message
    assert load({"mlinfra:sandbox": {"enabled": True, "instanceType": "m7i.xlarge"}}, stage="sandbox").sandbox


# ---------------------------------------------------------------------------------------------------------------
# Config the policy pack will read.


def test_policy_and_budget_settings_default_and_validate() -> None:
    cfg = load({})
    assert (cfg.policy.enforcement, cfg.policy.allowed_instance_types, cfg.budget_monthly_usd) == ("advisory", [], None)
    cfg = load(
        {
            "mlinfra:budgetMonthlyUsd": "2500",  # the engine hands scalar config over as text
            "mlinfra:policy": {"enforcement": "mandatory", "allowedInstanceTypes": ["ml.m5.xlarge", "t3.large"]},
        }
    )
    assert (cfg.budget_monthly_usd, cfg.policy.enforcement) == (2500.0, "mandatory")
    err = error({"mlinfra:policy": {"allowedInstanceTypes": ["ml.m5.xlarg"]}})
    assert err.key == "mlinfra:policy.allowedInstanceTypes.0"
    assert "did you mean 'ml.m5.xlarge'" in err.message
    assert "did you mean 'enforcement'" in error({"mlinfra:policy": {"enforcment": "advisory"}}).message
    assert error({"mlinfra:budgetMonthlyUsd": -5}).key == "mlinfra:budgetMonthlyUsd"


# ---------------------------------------------------------------------------------------------------------------
# Cross-account promotion chain.

ROLE = "arn:aws:iam::{account}:role/mlinfra-promotion"


def chain(**per_stage: dict[str, Any]) -> dict[str, Any]:
    return {stage: load(per_stage.get(stage, {}), stage=stage) for stage in ("sandbox", "dev", "staging", "prod")}


def test_a_consistent_chain_has_no_problems() -> None:
    configs = chain(
        staging={"mlinfra:registry": {"readerRoleArns": [ROLE.format(account="444444444444")]}},
        prod={"mlinfra:access": {"roleArn": ROLE.format(account="444444444444")}},
    )
    assert check_promotion_chain(configs) == []


def test_a_reader_list_missing_the_next_stages_role_is_reported() -> None:
    configs = chain(prod={"mlinfra:access": {"roleArn": ROLE.format(account="444444444444")}})
    problems = check_promotion_chain(configs)
    assert problems == [
        "stacks/Pulumi.staging.yaml: mlinfra:registry.readerRoleArns: does not list prod's promotion role "
        "arn:aws:iam::444444444444:role/mlinfra-promotion (access.roleArn of prod); add it, or "
        "`mlinfra promote --to prod` cannot read staging's artifacts"
    ]


def test_a_reader_in_the_wrong_account_is_reported() -> None:
    configs = chain(
        staging={"mlinfra:registry": {"readerRoleArns": [ROLE.format(account="555555555555")]}},
        prod={"mlinfra:access": {"roleArn": ROLE.format(account="444444444444")}},
    )
    problems = check_promotion_chain(configs)
    assert len(problems) == 2
    assert "arn:aws:iam::555555555555:role/mlinfra-promotion is not in prod's account 444444444444" in problems[1]


# ---------------------------------------------------------------------------------------------------------------
# Changes one `pulumi up` cannot apply.


def test_an_instance_type_change_on_an_autoscaled_endpoint_is_a_hazard() -> None:
    from tests.builders import pin

    def prod(**model: Any) -> Any:
        base = {"pinned": pin(stage="prod"), "instanceCount": 2, "autoscaling": {"enabled": True, "minCapacity": 2}}
        return load({"mlinfra:models": {"churn": merge(base, model)}})

    before = prod()
    assert rollout.update_hazards(before, prod(pinned=pin(version=4, stage="prod"))) == []  # a new pin is fine
    hazards = rollout.update_hazards(before, prod(instanceType="ml.c5.xlarge"))
    assert hazards == [
        "stacks/Pulumi.prod.yaml: mlinfra:models.churn.instanceType: ml.m5.large -> ml.c5.xlarge on an autoscaled "
        "endpoint fails under a plain `pulumi up` (the variant is a scalable target): apply it with `mlinfra up`, "
        "which releases the target first, or in two steps (autoscaling.enabled: false, then the new type with "
        "autoscaling on)"
    ]
    # The documented two steps are each safe.
    step1 = prod(autoscaling={"enabled": False})
    step2 = prod(instanceType="ml.c5.xlarge")
    assert rollout.update_hazards(before, step1) == []
    assert rollout.update_hazards(step1, step2) == []
