"""The policy pack's rules on the rendered stacks: every rule passes on each shipped stack (with a model pinned) and
fails on a rendered stack mutated to break exactly that rule."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from mlinfra.stacks.files import raw_config
from mlinfra.stacks.render import RenderedResource, RenderedStack
from mlinfra_infra.config import load_stack_config
from mlinfra_infra.policy.engine import RULES, Context, evaluate
from mlinfra_infra.policy.rules import RULES as REGISTERED
from tests.builders import merge, pin
from tests.infra.test_program import REPO, STAGES, shipped

Mutation = Callable[[list[RenderedResource]], None]


@pytest.fixture(scope="module")
def stacks() -> dict[str, tuple[RenderedStack, Context]]:
    found = {}
    for stage in STAGES:
        raw = merge(raw_config(REPO, stage), {"mlinfra:models": {"churn": {"pinned": pin(stage=stage)}}})
        cfg = load_stack_config(raw, project=REPO.name, stage=stage, source=f"stacks/Pulumi.{stage}.yaml")
        found[stage] = (shipped(stage), Context.from_config(cfg))
    return found


def test_the_pack_has_at_least_30_rules_with_unique_ids() -> None:
    assert REGISTERED is RULES
    ids = [r.id for r in RULES]
    assert len(ids) >= 30
    assert len(set(ids)) == len(ids)


def test_checkov_ids_are_well_formed() -> None:
    for rule in RULES:
        for check in rule.checkov:
            assert re.fullmatch(r"CKV2?_AWS_\d+", check), (rule.id, check)


@pytest.mark.parametrize("rule", [r.id for r in RULES])
def test_every_rule_passes_on_every_shipped_stack(stacks: dict[str, tuple[RenderedStack, Context]], rule: str) -> None:
    chosen = [r for r in RULES if r.id == rule]
    for stage, (stack, ctx) in stacks.items():
        assert evaluate(stack.resources, ctx, chosen) == [], stage


def test_enforcement_follows_the_stage_config(stacks: dict[str, tuple[RenderedStack, Context]]) -> None:
    assert stacks["sandbox"][1].enforcement == "advisory"
    assert stacks["prod"][1].enforcement == "mandatory"
    stack, ctx = stacks["prod"]
    broken = _mutated(stack.resources, MUTATIONS["kms-rotation"][1])
    assert {v.level for v in evaluate(broken, ctx)} == {"mandatory"}
    assert {v.level for v in evaluate(broken, replace(ctx, enforcement="advisory"))} == {"advisory"}


# ---------------------------------------------------------------------------------------------------------------
# One mutation per rule: (stage, change to the rendered resources).


def _named(resources: list[RenderedResource], name: str) -> dict[str, Any]:
    return next(r for r in resources if r.name == name).inputs


def _set(name: str, path: str, value: Any) -> Mutation:
    def mutate(resources: list[RenderedResource]) -> None:
        target: Any = _named(resources, name)
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        if value is DROP:
            target.pop(last)
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


DROP = object()


def _policy(name: str, key: str, change: Callable[[dict[str, Any]], None]) -> Mutation:
    def mutate(resources: list[RenderedResource]) -> None:
        inputs = _named(resources, name)
        doc = json.loads(inputs[key])
        change(doc)
        inputs[key] = json.dumps(doc)

    return mutate


def _drop_statement(sid: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["Statement"] = [s for s in doc["Statement"] if s.get("Sid") != sid]

    return change


def _chain(*mutations: Mutation) -> Mutation:
    def mutate(resources: list[RenderedResource]) -> None:
        for mutation in mutations:
            mutation(resources)

    return mutate


def _remove(name: str) -> Mutation:
    def mutate(resources: list[RenderedResource]) -> None:
        resources[:] = [r for r in resources if r.name != name]

    return mutate


def _unconditioned(doc: dict[str, Any]) -> None:
    for statement in doc["Statement"]:
        statement.pop("Condition", None)


def _add_function_without_alarm(resources: list[RenderedResource]) -> None:
    """A Lambda function (as the drift job declares one) with no Errors alarm watching it."""
    existing = [r for r in resources if r.type == "aws:lambda/function:Function"]
    if existing:  # the drift job is declared: drop its Errors alarm instead
        name = existing[0].inputs.get("name")
        resources[:] = [r for r in resources if get_dimension(r, "FunctionName") != name]
        return
    tags = {"managed-by": "mlinfra", "stage": "prod", "owner": "ml-platform"}
    inputs = {"name": "mlinfra-prod-drift-job", "memorySize": 1024, "tags": tags}
    resources.append(RenderedResource("aws:lambda/function:Function", "job", None, inputs, custom=True))


def _list_capture_only(doc: dict[str, Any]) -> None:
    for statement in doc["Statement"]:
        if statement["Action"] == ["s3:ListBucket"]:
            prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
            statement["Condition"]["StringLike"]["s3:prefix"] = [p for p in prefixes if p.startswith("capture/")]


def get_dimension(resource: RenderedResource, key: str) -> Any:
    return (resource.inputs.get("dimensions") or {}).get(key) if resource.type.endswith("MetricAlarm") else None


SKLEARN_REPOSITORY = "arn:aws:ecr:eu-west-1:141502667606:repository/sagemaker-scikit-learn"


def _pull_from(repository: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        for statement in doc["Statement"]:
            if statement.get("Sid") == "PullOwnImage":
                statement["Resource"] = repository

    return change


ENDPOINT_CONFIG = "mlinfra-prod-churn-c"
ENDPOINT = "churn-endpoint-endpoint"
ROUTING = "deploymentConfig.blueGreenUpdatePolicy.trafficRoutingConfiguration"
MUTATIONS: dict[str, tuple[str, Mutation]] = {
    "iam-no-star-on-star": (
        "prod",
        _policy(
            "churn-endpoint-role-policy",
            "policy",
            lambda d: d["Statement"].append({"Effect": "Allow", "Action": "*", "Resource": "*"}),
        ),
    ),
    "iam-no-admin-policies": (
        "sandbox",
        _set("sandbox-ssm-core", "policyArn", "arn:aws:iam::aws:policy/AdministratorAccess"),
    ),
    "iam-service-trust-scoped": ("prod", _policy("churn-endpoint-role", "assumeRolePolicy", _unconditioned)),
    "cloudwatch-endpoint-5xx-alarm": ("prod", _set("churn-endpoint-5xx", "dimensions.EndpointName", "other")),
    "cloudwatch-endpoint-latency-alarm": (
        "prod",
        _set("churn-endpoint-latency-p99", "dimensions.EndpointName", "other"),
    ),
    "cloudwatch-drift-alarm": ("prod", _set("monitoring-churn-drift", "dimensions.Model", "other")),
    "cloudwatch-alarms-reach-subscriber": ("prod", _remove("monitoring-subscription-0")),
    "lambda-errors-alarm": ("prod", _add_function_without_alarm),
    "sns-encrypted": ("prod", _set("monitoring-topic", "kmsMasterKeyId", DROP)),
    "logs-encrypted": ("sandbox", _set("sandbox-session-logs", "kmsKeyId", DROP)),
    "logs-retention": ("sandbox", _set("sandbox-session-logs", "retentionInDays", DROP)),
    "tags-required": ("prod", _set("registry-key", "tags.owner", DROP)),
    "sagemaker-volume-kms": ("prod", _set(ENDPOINT_CONFIG, "kmsKeyArn", DROP)),
    "sagemaker-capture-kms": ("prod", _set(ENDPOINT_CONFIG, "dataCaptureConfig.kmsKeyId", DROP)),
    "sagemaker-capture-enabled": ("prod", _set(ENDPOINT_CONFIG, "dataCaptureConfig.enableCapture", False)),
    "sagemaker-network-isolation": ("prod", _set("mlinfra-prod-churn-m", "enableNetworkIsolation", False)),
    # A hand-written pin of a framework image without its handler layout: the Model gets no SAGEMAKER_PROGRAM.
    # A framework image on a pin without its handler layout (the role may pull that image: only the handler lacks).
    "sagemaker-framework-handler": (
        "prod",
        _chain(
            _set(
                "mlinfra-prod-churn-m",
                "primaryContainer.image",
                "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.9-0-cpu-py3",
            ),
            _policy("churn-endpoint-role-policy", "policy", _pull_from(SKLEARN_REPOSITORY)),
        ),
    ),
    "sagemaker-instance-allowed": (
        "prod",
        _set(ENDPOINT_CONFIG, "productionVariants.0.instanceType", "ml.m5.large"),
    ),
    "sagemaker-rollback-in-bake": ("prod", _set("churn-endpoint-5xx", "period", 300)),
    "sagemaker-canary-size": ("prod", _set(ENDPOINT, f"{ROUTING}.canarySize.value", 4)),
    "sagemaker-deployment-timeout": (
        "prod",
        _set(ENDPOINT, "deploymentConfig.blueGreenUpdatePolicy.maximumExecutionTimeoutInSeconds", 7200),
    ),
    "sagemaker-autoscaled-deploys-at-max": (
        "prod",
        _set(ENDPOINT_CONFIG, "productionVariants.0.initialInstanceCount", 2),
    ),
    "ec2-imdsv2": ("sandbox", _set("sandbox-instance", "metadataOptions.httpTokens", "optional")),
    "ec2-no-public-ip": ("sandbox", _set("sandbox-instance", "associatePublicIpAddress", True)),
    "ec2-subnet-private": ("sandbox", _set("sandbox-subnet", "mapPublicIpOnLaunch", True)),
    "ec2-encrypted-volumes": ("sandbox", _set("sandbox-instance", "rootBlockDevice.encrypted", False)),
    "ec2-no-open-ingress": ("sandbox", _set("sandbox-endpoint-sg", "ingress.0.cidrBlocks", ["0.0.0.0/0"])),
    "ec2-default-sg-closed": (
        "sandbox",
        _set(
            "sandbox-default-sg",
            "ingress",
            [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["10.42.0.0/16"]}],
        ),
    ),
    "ec2-no-key-pair": ("sandbox", _set("sandbox-instance", "keyName", "analyst")),
    "s3-kms-encryption": (
        "prod",
        _set("registry-encryption", "rules.0.applyServerSideEncryptionByDefault", {"sseAlgorithm": "AES256"}),
    ),
    "s3-versioning": ("prod", _set("registry-versioning", "versioningConfiguration.status", "Suspended")),
    "s3-block-public-acls": ("prod", _set("registry-public-access", "blockPublicAcls", False)),
    "s3-block-public-policy": ("prod", _set("registry-public-access", "blockPublicPolicy", False)),
    "s3-ignore-public-acls": ("prod", _set("registry-public-access", "ignorePublicAcls", False)),
    "s3-restrict-public-buckets": ("prod", _set("registry-public-access", "restrictPublicBuckets", False)),
    "s3-tls-only": ("prod", _policy("registry-policy", "policy", _drop_statement("DenyInsecureTransport"))),
    "s3-uploads-pinned-to-key": ("prod", _policy("registry-policy", "policy", _drop_statement("DenyOtherKmsKeys"))),
    "sagemaker-rollback-alarms-stable": (
        "prod",
        _chain(
            _set("churn-endpoint-5xx", "name", "custom-5xx"),
            _set(ENDPOINT, "deploymentConfig.autoRollbackConfiguration.alarms.0.alarmName", "custom-5xx"),
            _set(
                "monitoring-churn-health",
                "alarmRule",
                'ALARM("custom-5xx") OR ALARM("mlinfra-prod-churn-latency-p99") OR ALARM("mlinfra-prod-churn-drift")',
            ),
        ),
    ),
    "ec2-s3-endpoint-scoped": ("sandbox", _set("sandbox-endpoint-s3", "policy", DROP)),
    "s3-ownership-enforced": ("prod", _set("registry-ownership", "rule.objectOwnership", "ObjectWriter")),
    "s3-lifecycle": ("prod", _set("registry-lifecycle", "rules.2.expiration.days", 365)),
    "s3-access-logging": ("prod", _set("registry-access-logging", "bucket", "some-other-bucket")),
    "s3-object-lock-per-object": (
        "prod",
        _set("registry-object-lock", "rule", {"defaultRetention": {"mode": "GOVERNANCE", "days": 365}}),
    ),
    "kms-rotation": ("prod", _set("registry-key", "enableKeyRotation", False)),
    "kms-service-principals-scoped": ("prod", _policy("registry-key", "policy", _unconditioned)),
    "kms-protected-key": (
        "prod",
        _policy("registry-key", "policy", _drop_statement("NobodySchedulesKeyDeletion")),
    ),
    # The drift job's role as it was: ListBucket only under capture, so its first GetObject of a missing checkpoint
    # is a 403 (the access contract).
    "access-contract": ("prod", _policy("monitoring-drift-job-role-policy", "policy", _list_capture_only)),
    # Not a resource: the pack could not load the stage's context (test_each_rule... gives the context an error).
    "stage-context": ("prod", lambda resources: None),
}


def _mutated(resources: list[RenderedResource], mutation: Mutation) -> list[RenderedResource]:
    copied = [replace(r, inputs=copy.deepcopy(r.inputs)) for r in resources]
    mutation(copied)
    return copied


def test_every_rule_has_a_mutation() -> None:
    assert sorted(MUTATIONS) == sorted(r.id for r in RULES)


@pytest.mark.parametrize("rule", sorted(MUTATIONS))
def test_each_rule_fails_on_a_stack_mutated_to_break_exactly_it(
    stacks: dict[str, tuple[RenderedStack, Context]], rule: str
) -> None:
    stage, mutation = MUTATIONS[rule]
    stack, ctx = stacks[stage]
    if rule == "stage-context":
        ctx = replace(ctx, error="the context of stage 'prod' could not be loaded: stacks/Pulumi.prod.yaml: missing")
    violations = evaluate(_mutated(stack.resources, mutation), ctx)
    assert {v.rule for v in violations} == {rule}, [v.to_json() for v in violations]
    assert all(v.message and v.resource for v in violations)


def test_cost_delta_of_a_change(stacks: dict[str, tuple[RenderedStack, Context]]) -> None:
    from mlinfra_infra.policy.cost import Assumptions, delta, estimate

    stack, _ = stacks["prod"]
    before = estimate(stack.resources, "eu-west-1", Assumptions())
    bigger = _mutated(
        stack.resources, _set("mlinfra-prod-churn-c", "productionVariants.0.instanceType", "ml.m5.2xlarge")
    )
    after = estimate(bigger, "eu-west-1", Assumptions())
    change = delta(before, after)
    # Two instances at minCapacity, from ml.m5.xlarge to ml.m5.2xlarge: twice the hourly price, 730 h.
    assert [c.resource for c in change.changes] == ["mlinfra-prod-churn-c"]
    assert change.delta == pytest.approx(2 * 730 * (0.512 - 0.256), abs=0.01)
    assert "+373.76" in change.markdown()
    assert delta(before, before).changes == ()


def test_price_table_is_dated_sourced_and_positive() -> None:
    import datetime

    from mlinfra_infra.policy.cost import PriceTable

    table = PriceTable.load()
    datetime.date.fromisoformat(table.date)
    assert table.currency == "USD"
    assert all(url.startswith("https://aws.amazon.com/") for url in table.sources.values())
    assert "eu-west-1" in table.regions
    for key, value in table.region("eu-west-1").items():
        values = value.values() if isinstance(value, dict) else [value]
        assert all(isinstance(v, int | float) and v > 0 for v in values), key


def test_sandbox_hours_without_a_start_schedule_use_the_assumption(
    stacks: dict[str, tuple[RenderedStack, Context]],
) -> None:
    from mlinfra_infra.policy.cost import WEEKDAYS_PER_MONTH, Assumptions, estimate

    stack, _ = stacks["sandbox"]
    without_start = [r for r in stack.resources if r.name != "sandbox-morning-start"]
    lines = {
        line.resource: line
        for line in estimate(without_start, "eu-west-1", Assumptions(sandbox_hours_per_weekday=6)).lines
    }
    vm = lines["sandbox-instance"]
    assert "6 h per weekday (assumed" in vm.basis
    assert vm.monthly_usd == pytest.approx(0.0912 * 6 * WEEKDAYS_PER_MONTH)
    with_start = {line.resource: line for line in estimate(stack.resources, "eu-west-1", Assumptions()).lines}
    assert with_start["sandbox-instance"].monthly_usd == pytest.approx(0.0912 * 11 * WEEKDAYS_PER_MONTH)
