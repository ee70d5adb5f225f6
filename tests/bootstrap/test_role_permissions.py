"""What each CI role may do, evaluated against the rendered policies with the project's IAM evaluator.

- mlinfra's own calls with the CI roles (check, up, record-deployment, promote, approve, rollback) are the access
  contract's recorded calls: `mlinfra check --access --all` decides every one of them against the bootstrap stack's
  roles and boundaries and the stage stacks' bucket and key policies (the tests at the end of this file).
- The Pulumi engine's calls (infra/bootstrap/ci_calls.json `allowed`, declared: the engine cannot run here) and the
  calls beyond the stage each role must be refused (`denied`) are evaluated here, with the deploy role creating
  every resource the stage stacks declare. Calls on the tooling account's state bucket
and key from a stage in another account must be allowed by both sides (the role's policies and the bucket or key
policy), as AWS requires across accounts. The source registry's own bucket and key policies belong to the stage
stacks (registry.readerRoleArns) and are not part of this render: promotion's source calls are checked on the role's
side only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mlinfra.bootstrap import stack
from mlinfra.stacks.files import raw_config
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import RenderedStack, mock_autoname, mock_bucket, render
from mlinfra_infra import layout, naming
from mlinfra_infra.bootstrap import names
from mlinfra_infra.policy import iam
from tests.builders import merge, pin

Shipped = tuple[stack.Bootstrap, RenderedStack]
REPO = Path(__file__).resolve().parents[2]
CALLS = json.loads((REPO / "infra" / "bootstrap" / "ci_calls.json").read_text(encoding="utf-8"))
STAGES = ("sandbox", "dev", "staging", "prod")
ACCOUNTS = {"sandbox": "111111111111", "dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}
TOOLING = "111111111111"
REGION = "eu-west-1"
OTHER = {"sandbox": "dev", "dev": "sandbox", "staging": "prod", "prod": "staging"}
UNRELATED = {"sandbox": "dev", "dev": "staging", "staging": "prod", "prod": "sandbox"}  # neither own nor source


def placeholders(stage: str) -> dict[str, str]:
    index = STAGES.index(stage)
    source = STAGES[index - 1] if index else ""
    other = OTHER[stage]
    return {
        "project": "mlinfra",
        "stage": stage,
        "other": other,
        "source": source,
        "account": ACCOUNTS[stage],
        "source_account": ACCOUNTS.get(source, ""),
        "tooling": TOOLING,
        "region": REGION,
        "state_bucket": names.state_bucket("mlinfra", TOOLING, REGION),
        "registry": naming.registry_bucket("mlinfra", stage, REGION, ACCOUNTS[stage]),
        "other_registry": naming.registry_bucket("mlinfra", other, REGION, ACCOUNTS[other]),
        "unrelated_registry": naming.registry_bucket("mlinfra", UNRELATED[stage], REGION, ACCOUNTS[UNRELATED[stage]]),
        "source_registry": naming.registry_bucket("mlinfra", source, REGION, ACCOUNTS.get(source, "0" * 12)),
        "model": "churn",
    }


def fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    return value


def role_policies(rendered: RenderedStack, stage: str, kind: str) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """The identity policies (inline and attached) and the boundary (or None) of one CI role."""
    prefix = f"{stage}-ci-{kind}-policy"
    identity = [
        json.loads(r.inputs["policy"])
        for r in rendered.resources
        if r.type in ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy")
        and (r.name == prefix or r.name.startswith(prefix + "-"))
        and not r.name.endswith("-attachment")
    ]
    assert identity, f"no policy of {stage} {kind}"
    boundary = None
    if kind == "deploy":
        boundary = [json.loads(rendered.named(f"{stage}-ci-deploy-boundary").inputs["policy"])]
    return identity, boundary


def decide(rendered: RenderedStack, stage: str, kind: str, call: dict[str, Any]) -> iam.Decision:
    values = placeholders(stage)
    request = iam.Request(call["action"], fill(call["resource"], values), fill(call.get("context", {}), values))
    principal = names.role_arn(ACCOUNTS[stage], names.role("mlinfra", stage, kind))
    identity, boundary = role_policies(rendered, stage, kind)
    resource_policies: list[dict[str, Any]] = []
    key_policy = False
    state_bucket = values["state_bucket"]
    if f":::{state_bucket}" in request.resource:
        resource_policies = [json.loads(rendered.named("state-policy").inputs["policy"])]
    elif state_bucket in str(request.context.get("kms:EncryptionContext:aws:s3:arn", "")):
        resource_policies, key_policy = [json.loads(rendered.named("state-key").inputs["policy"])], True
    cross_account = resource_policies and ACCOUNTS[stage] != TOOLING
    if not cross_account:
        return iam.evaluate(
            request,
            identity,
            resource_policies,
            principal,
            boundary_policies=boundary,
            resource_policy_required=key_policy,
        )
    # Across accounts both sides must allow: the role's own policies in its account, the resource's policy in the
    # tooling account (naming the role itself).
    own = iam.evaluate(request, identity, [], principal, boundary_policies=boundary)
    theirs = iam.evaluate(request, [], resource_policies, principal, resource_policy_required=True)
    return own if not own.allowed else theirs


def cases(expected: str) -> list[Any]:
    out = []
    for kind in names.ROLE_KINDS:
        for index, call in enumerate(CALLS[kind][expected]):
            for stage in STAGES:
                if call.get("source") and stage == STAGES[0]:
                    continue
                out.append(pytest.param(kind, stage, call, id=f"{kind}-{stage}-{index}-{call['action']}"))
    return out


@pytest.mark.parametrize(("kind", "stage", "call"), cases("allowed"))
def test_every_call_ci_makes_is_allowed(shipped: Shipped, kind: str, stage: str, call: dict[str, Any]) -> None:
    decision = decide(shipped[1], stage, kind, call)
    assert decision.allowed, f"{kind} of {stage}: {decision.reason}"


@pytest.mark.parametrize(("kind", "stage", "call"), cases("denied"))
def test_nothing_beyond_the_stage_is_allowed(shipped: Shipped, kind: str, stage: str, call: dict[str, Any]) -> None:
    decision = decide(shipped[1], stage, kind, call)
    assert not decision.allowed, f"{kind} of {stage} may {call['action']} ({call['why']}): {decision.decided_by}"


def test_the_call_list_covers_every_role_kind() -> None:
    assert set(CALLS) - {"about"} == set(names.ROLE_KINDS)
    assert all(CALLS[kind]["denied"] for kind in names.ROLE_KINDS)
    # The promotion role runs no Pulumi: its calls are all mlinfra's, in the access contract.
    assert CALLS["preview"]["allowed"] and CALLS["deploy"]["allowed"] and not CALLS["promotion"]["allowed"]


# --- the deploy role creates what the stage stacks declare --------------------------------------------------------

# Resource type -> (create action, ARN template, whether the request carries the resource's tags). {name} is the
# resource's physical name (its name input, else the mock runtime's auto-name).
CREATES: dict[str, tuple[str, str, bool]] = {
    "aws:s3/bucket:Bucket": ("s3:CreateBucket", "arn:aws:s3:::{name}", False),
    "aws:kms/key:Key": ("kms:CreateKey", "*", True),
    "aws:kms/alias:Alias": ("kms:CreateAlias", "arn:aws:kms:{region}:{account}:{name}", False),
    "aws:iam/role:Role": ("iam:CreateRole", "arn:aws:iam::{account}:role{path}{name}", True),
    "aws:iam/policy:Policy": ("iam:CreatePolicy", "arn:aws:iam::{account}:policy{path}{name}", True),
    "aws:iam/instanceProfile:InstanceProfile": (
        "iam:CreateInstanceProfile",
        "arn:aws:iam::{account}:instance-profile{path}{name}",
        True,
    ),
    "aws:sagemaker/model:Model": ("sagemaker:CreateModel", "arn:aws:sagemaker:{region}:{account}:model/{name}", True),
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": (
        "sagemaker:CreateEndpointConfig",
        "arn:aws:sagemaker:{region}:{account}:endpoint-config/{name}",
        True,
    ),
    "aws:sagemaker/endpoint:Endpoint": (
        "sagemaker:CreateEndpoint",
        "arn:aws:sagemaker:{region}:{account}:endpoint/{name}",
        True,
    ),
    "aws:sagemaker/modelPackageGroup:ModelPackageGroup": (
        "sagemaker:CreateModelPackageGroup",
        "arn:aws:sagemaker:{region}:{account}:model-package-group/{name}",
        True,
    ),
    "aws:cloudwatch/metricAlarm:MetricAlarm": (
        "cloudwatch:PutMetricAlarm",
        "arn:aws:cloudwatch:{region}:{account}:alarm:{name}",
        False,
    ),
    "aws:cloudwatch/compositeAlarm:CompositeAlarm": (
        "cloudwatch:PutCompositeAlarm",
        "arn:aws:cloudwatch:{region}:{account}:alarm:{name}",
        False,
    ),
    "aws:cloudwatch/dashboard:Dashboard": (
        "cloudwatch:PutDashboard",
        "arn:aws:cloudwatch::{account}:dashboard/{name}",
        False,
    ),
    "aws:sns/topic:Topic": ("sns:CreateTopic", "arn:aws:sns:{region}:{account}:{name}", False),
    "aws:lambda/function:Function": (
        "lambda:CreateFunction",
        "arn:aws:lambda:{region}:{account}:function:{name}",
        False,
    ),
    "aws:cloudwatch/logGroup:LogGroup": (
        "logs:CreateLogGroup",
        "arn:aws:logs:{region}:{account}:log-group:{name}",
        False,
    ),
    "aws:ssm/document:Document": ("ssm:CreateDocument", "arn:aws:ssm:{region}:{account}:document/{name}", False),
    "aws:scheduler/schedule:Schedule": (
        "scheduler:CreateSchedule",
        "arn:aws:scheduler:{region}:{account}:schedule/default/{name}",
        False,
    ),
    "aws:codeartifact/domain:Domain": (
        "codeartifact:CreateDomain",
        "arn:aws:codeartifact:{region}:{account}:domain/{domain}",
        False,
    ),
    "aws:codeartifact/repository:Repository": (
        "codeartifact:CreateRepository",
        "arn:aws:codeartifact:{region}:{account}:repository/{domain}/{repository}",
        False,
    ),
    "aws:ec2/vpc:Vpc": ("ec2:CreateVpc", "arn:aws:ec2:{region}:{account}:vpc/*", True),
    "aws:ec2/subnet:Subnet": ("ec2:CreateSubnet", "arn:aws:ec2:{region}:{account}:subnet/*", True),
    "aws:ec2/securityGroup:SecurityGroup": (
        "ec2:CreateSecurityGroup",
        "arn:aws:ec2:{region}:{account}:security-group/*",
        True,
    ),
    "aws:ec2/routeTable:RouteTable": ("ec2:CreateRouteTable", "arn:aws:ec2:{region}:{account}:route-table/*", True),
    "aws:ec2/vpcEndpoint:VpcEndpoint": ("ec2:CreateVpcEndpoint", "arn:aws:ec2:{region}:{account}:vpc-endpoint/*", True),
    "aws:ec2/instance:Instance": ("ec2:RunInstances", "arn:aws:ec2:{region}:{account}:instance/*", True),
}


@pytest.fixture(scope="module")
def stage_stacks() -> dict[str, RenderedStack]:
    project = Project(REPO)
    out = {}
    for stage in STAGES:
        pinned = pin(stage=stage)
        pinned["artifact"] = pinned["artifact"].replace("123456789012", ACCOUNTS[stage])
        raw = merge(
            raw_config(project, stage),
            {
                "mlinfra:models": {"churn": {"pinned": pinned}},
                "mlinfra:accountId": ACCOUNTS[stage],
                # Every stage with everything: the VM and its network, monitoring and the drift job.
                "mlinfra:sandbox": {"enabled": True},
                "mlinfra:monitoring": {"enabled": True, "drift": True},
            },
        )
        out[stage] = render(
            raw, project="mlinfra", stage=stage, source=f"stacks/Pulumi.{stage}.yaml", account_id=ACCOUNTS[stage]
        )
    return out


# Resources configured through their parent's API: type -> (action, the input naming the parent, ARN template).
PARTS: dict[str, tuple[str, str, str]] = {
    "aws:s3/bucketVersioning:BucketVersioning": ("s3:PutBucketVersioning", "bucket", "arn:aws:s3:::{parent}"),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "s3:PutEncryptionConfiguration",
        "bucket",
        "arn:aws:s3:::{parent}",
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
        "s3:PutBucketPublicAccessBlock",
        "bucket",
        "arn:aws:s3:::{parent}",
    ),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": (
        "s3:PutBucketOwnershipControls",
        "bucket",
        "arn:aws:s3:::{parent}",
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": (
        "s3:PutLifecycleConfiguration",
        "bucket",
        "arn:aws:s3:::{parent}",
    ),
    "aws:s3/bucketLogging:BucketLogging": ("s3:PutBucketLogging", "bucket", "arn:aws:s3:::{parent}"),
    "aws:s3/bucketPolicy:BucketPolicy": ("s3:PutBucketPolicy", "bucket", "arn:aws:s3:::{parent}"),
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration": (
        "s3:PutBucketObjectLockConfiguration",
        "bucket",
        "arn:aws:s3:::{parent}",
    ),
    "aws:s3/bucketObjectv2:BucketObjectv2": ("s3:PutObject", "bucket", "arn:aws:s3:::{parent}/{key}"),
    "aws:iam/rolePolicy:RolePolicy": ("iam:PutRolePolicy", "role", "arn:aws:iam::{account}:role{path}{parent}"),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": (
        "iam:AttachRolePolicy",
        "role",
        "arn:aws:iam::{account}:role{path}{parent}",
    ),
    "aws:sns/topicPolicy:TopicPolicy": ("sns:SetTopicAttributes", "arn", "{parent}"),
    "aws:sns/topicSubscription:TopicSubscription": ("sns:Subscribe", "topic", "{parent}"),
    "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": (
        "lambda:PutFunctionEventInvokeConfig",
        "functionName",
        "arn:aws:lambda:{region}:{account}:function:{parent}",
    ),
    "aws:lambda/invocation:Invocation": (
        "lambda:InvokeFunction",
        "functionName",
        "arn:aws:lambda:{region}:{account}:function:{parent}",
    ),
    "aws:appautoscaling/target:Target": (
        "application-autoscaling:RegisterScalableTarget",
        "resourceId",
        "arn:aws:application-autoscaling:{region}:{account}:scalable-target/0a1b",
    ),
    "aws:appautoscaling/policy:Policy": (
        "application-autoscaling:PutScalingPolicy",
        "resourceId",
        "arn:aws:application-autoscaling:{region}:{account}:scalable-target/0a1b",
    ),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": (
        "ec2:AssociateRouteTable",
        "routeTableId",
        "arn:aws:ec2:{region}:{account}:route-table/{parent}",
    ),
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": (
        "ec2:CreateTags",
        "vpcId",
        "arn:aws:ec2:{region}:{account}:security-group/sg-0a1b",
    ),
    "aws:sqs/queue:Queue": ("sqs:CreateQueue", "name", "arn:aws:sqs:{region}:{account}:{parent}"),
}
PARENT_TAGGED = {"aws:ec2/routeTableAssociation:RouteTableAssociation"}  # the route table carries the stage tags
REQUEST_TAGGED = {"aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"}  # adopted by tagging it


def deploy_calls(resource: Any, stage: str) -> list[iam.Request]:
    """The calls `pulumi up` makes to create `resource` in `stage`'s account; a type not known here fails."""
    values = {"region": REGION, "account": ACCOUNTS[stage], "path": naming.iam_path("mlinfra", stage)}
    inputs = resource.inputs
    tags = inputs.get("tags") or {}
    context: dict[str, Any] = {"aws:ResourceAccount": ACCOUNTS[stage]}
    if resource.type in CREATES:
        action, template, tagged = CREATES[resource.type]
        name = (
            (mock_bucket(resource.name, inputs) if resource.type == "aws:s3/bucket:Bucket" else None)
            or inputs.get("name")
            or inputs.get("modelPackageGroupName")
            or inputs.get("alarmName")
            or inputs.get("dashboardName")
            or mock_autoname(resource.name)
        )
        if tagged:
            context.update({f"aws:RequestTag/{k}": v for k, v in tags.items()})
        if resource.type == "aws:iam/role:Role":
            context["iam:PermissionsBoundary"] = inputs["permissionsBoundary"]
        arn = template.format(
            name=name, domain=inputs.get("domain", ""), repository=inputs.get("repository", ""), **values
        )
        return [iam.Request(action, arn, context)]
    if resource.type in PARTS:
        action, key, template = PARTS[resource.type]
        parent = str(inputs.get(key, ""))
        if resource.type.startswith("aws:iam/role"):
            context["iam:PermissionsBoundary"] = (
                f"arn:aws:iam::{ACCOUNTS[stage]}:policy/mlinfra-{stage}-workload-boundary"
            )
        if resource.type in PARENT_TAGGED:
            context.update({"aws:ResourceTag/stage": stage, "aws:ResourceTag/managed-by": "mlinfra"})
        if resource.type in REQUEST_TAGGED:
            context.update({f"aws:RequestTag/{k}": v for k, v in tags.items()})
        arn = template.format(parent=parent, key=inputs.get("key", ""), **values)
        return [iam.Request(action, arn, context)]
    raise AssertionError(
        f"{resource.type} ({resource.name}): no calls known for it here; add what `pulumi up` calls to create it "
        "(and grant it to the deploy role in infra/bootstrap/deploy.py)"
    )


@pytest.mark.parametrize("stage", STAGES)
def test_the_deploy_role_creates_every_resource_its_stage_declares(
    shipped: Shipped, stage_stacks: dict[str, RenderedStack], stage: str
) -> None:
    identity, boundary = role_policies(shipped[1], stage, "deploy")
    principal = names.role_arn(ACCOUNTS[stage], names.role("mlinfra", stage, "deploy"))
    checked, refused = 0, []
    for resource in stage_stacks[stage].resources:
        if not resource.custom:
            continue
        for request in deploy_calls(resource, stage):
            decision = iam.evaluate(request, identity, [], principal, boundary_policies=boundary)
            checked += 1
            if not decision.allowed:
                refused.append(f"{resource.name}: {decision.reason}")
    assert checked >= 15
    assert refused == []


# --- the preview role reads what a refresh of the stage stack reads ---------------------------------------------

# Resource type -> (read actions, ARN template) of the provider's refresh; {name} as above, {parent} from PARTS'
# input.
READS: dict[str, tuple[tuple[str, ...], str]] = {
    "aws:s3/bucket:Bucket": (("s3:GetBucketTagging", "s3:GetBucketPolicy"), "arn:aws:s3:::{name}"),
    "aws:s3/bucketVersioning:BucketVersioning": (("s3:GetBucketVersioning",), "arn:aws:s3:::{parent}"),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        ("s3:GetEncryptionConfiguration",),
        "arn:aws:s3:::{parent}",
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
        ("s3:GetBucketPublicAccessBlock",),
        "arn:aws:s3:::{parent}",
    ),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": (
        ("s3:GetBucketOwnershipControls",),
        "arn:aws:s3:::{parent}",
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": (
        ("s3:GetLifecycleConfiguration",),
        "arn:aws:s3:::{parent}",
    ),
    "aws:s3/bucketLogging:BucketLogging": (("s3:GetBucketLogging",), "arn:aws:s3:::{parent}"),
    "aws:s3/bucketPolicy:BucketPolicy": (("s3:GetBucketPolicy",), "arn:aws:s3:::{parent}"),
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration": (
        ("s3:GetBucketObjectLockConfiguration",),
        "arn:aws:s3:::{parent}",
    ),
    # HeadObject of the drift job's code package.
    "aws:s3/bucketObjectv2:BucketObjectv2": (("s3:GetObject",), "arn:aws:s3:::{parent}/{key}"),
    "aws:kms/key:Key": (
        ("kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags"),
        "arn:aws:kms:{region}:{account}:key/00000000-0000-4000-8000-000000000009",
    ),
    "aws:kms/alias:Alias": (("kms:ListAliases",), "*"),
    "aws:iam/role:Role": (("iam:GetRole", "iam:ListAttachedRolePolicies"), "arn:aws:iam::{account}:role{path}{name}"),
    "aws:iam/rolePolicy:RolePolicy": (("iam:GetRolePolicy",), "arn:aws:iam::{account}:role{path}{parent}"),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": (
        ("iam:ListAttachedRolePolicies",),
        "arn:aws:iam::{account}:role{path}{parent}",
    ),
    "aws:iam/policy:Policy": (("iam:GetPolicy", "iam:GetPolicyVersion"), "arn:aws:iam::{account}:policy{path}{name}"),
    "aws:iam/instanceProfile:InstanceProfile": (
        ("iam:GetInstanceProfile",),
        "arn:aws:iam::{account}:instance-profile{path}{name}",
    ),
    "aws:sagemaker/model:Model": (("sagemaker:DescribeModel",), "arn:aws:sagemaker:{region}:{account}:model/{name}"),
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": (
        ("sagemaker:DescribeEndpointConfig",),
        "arn:aws:sagemaker:{region}:{account}:endpoint-config/{name}",
    ),
    "aws:sagemaker/endpoint:Endpoint": (
        ("sagemaker:DescribeEndpoint",),
        "arn:aws:sagemaker:{region}:{account}:endpoint/{name}",
    ),
    "aws:sagemaker/modelPackageGroup:ModelPackageGroup": (
        ("sagemaker:DescribeModelPackageGroup",),
        "arn:aws:sagemaker:{region}:{account}:model-package-group/{name}",
    ),
    "aws:cloudwatch/metricAlarm:MetricAlarm": (
        ("cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource"),
        "arn:aws:cloudwatch:{region}:{account}:alarm:{name}",
    ),
    "aws:cloudwatch/compositeAlarm:CompositeAlarm": (
        ("cloudwatch:DescribeAlarms",),
        "arn:aws:cloudwatch:{region}:{account}:alarm:{name}",
    ),
    "aws:cloudwatch/dashboard:Dashboard": (
        ("cloudwatch:GetDashboard",),
        "arn:aws:cloudwatch::{account}:dashboard/{name}",
    ),
    "aws:cloudwatch/logGroup:LogGroup": (("logs:DescribeLogGroups", "logs:ListTagsForResource"), "*"),
    "aws:sns/topic:Topic": (
        ("sns:GetTopicAttributes", "sns:ListTagsForResource"),
        "arn:aws:sns:{region}:{account}:{name}",
    ),
    "aws:sns/topicPolicy:TopicPolicy": (("sns:GetTopicAttributes",), "{parent}"),
    "aws:sns/topicSubscription:TopicSubscription": (("sns:GetSubscriptionAttributes",), "*"),
    "aws:lambda/function:Function": (
        ("lambda:GetFunction", "lambda:GetFunctionCodeSigningConfig"),
        "arn:aws:lambda:{region}:{account}:function:{name}",
    ),
    "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": (
        ("lambda:GetFunctionEventInvokeConfig",),
        "arn:aws:lambda:{region}:{account}:function:{parent}",
    ),
    "aws:lambda/invocation:Invocation": ((), ""),  # nothing to read back
    "aws:sqs/queue:Queue": (
        ("sqs:GetQueueAttributes", "sqs:ListQueueTags"),
        "arn:aws:sqs:{region}:{account}:{name}",
    ),
    "aws:ssm/document:Document": (
        ("ssm:DescribeDocument", "ssm:GetDocument"),
        "arn:aws:ssm:{region}:{account}:document/{name}",
    ),
    "aws:scheduler/schedule:Schedule": (
        ("scheduler:GetSchedule",),
        "arn:aws:scheduler:{region}:{account}:schedule/default/{name}",
    ),
    "aws:codeartifact/domain:Domain": (
        ("codeartifact:DescribeDomain",),
        "arn:aws:codeartifact:{region}:{account}:domain/{domain}",
    ),
    "aws:codeartifact/repository:Repository": (
        ("codeartifact:DescribeRepository",),
        "arn:aws:codeartifact:{region}:{account}:repository/{domain}/{repository}",
    ),
    "aws:appautoscaling/target:Target": (("application-autoscaling:DescribeScalableTargets",), "*"),
    "aws:appautoscaling/policy:Policy": (("application-autoscaling:DescribeScalingPolicies",), "*"),
    "aws:ec2/vpc:Vpc": (
        ("ec2:DescribeVpcs", "ec2:DescribeVpcAttribute"),
        "arn:aws:ec2:{region}:{account}:vpc/vpc-0a1b",
    ),
    "aws:ec2/subnet:Subnet": (("ec2:DescribeSubnets",), "*"),
    "aws:ec2/securityGroup:SecurityGroup": (("ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules"), "*"),
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": (("ec2:DescribeSecurityGroups",), "*"),
    "aws:ec2/routeTable:RouteTable": (("ec2:DescribeRouteTables",), "*"),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": (("ec2:DescribeRouteTables",), "*"),
    "aws:ec2/vpcEndpoint:VpcEndpoint": (("ec2:DescribeVpcEndpoints", "ec2:DescribePrefixLists"), "*"),
    "aws:ec2/instance:Instance": (
        ("ec2:DescribeInstances", "ec2:DescribeInstanceAttribute", "ec2:DescribeVolumes"),
        "arn:aws:ec2:{region}:{account}:instance/i-0a1b",
    ),
}


@pytest.mark.parametrize("stage", STAGES)
def test_the_preview_role_reads_back_every_resource_its_stage_declares(
    shipped: Shipped, stage_stacks: dict[str, RenderedStack], stage: str
) -> None:
    identity, _ = role_policies(shipped[1], stage, "preview")
    principal = names.role_arn(ACCOUNTS[stage], names.role("mlinfra", stage, "preview"))
    values = {"region": REGION, "account": ACCOUNTS[stage], "path": naming.iam_path("mlinfra", stage)}
    checked, refused = 0, []
    for resource in stage_stacks[stage].resources:
        if not resource.custom:
            continue
        assert resource.type in READS, f"{resource.type} ({resource.name}): add what a refresh reads for it"
        actions, template = READS[resource.type]
        inputs = resource.inputs
        parent_key = PARTS[resource.type][1] if resource.type in PARTS else ""
        name = (
            (mock_bucket(resource.name, inputs) if resource.type == "aws:s3/bucket:Bucket" else None)
            or inputs.get("name")
            or inputs.get("modelPackageGroupName")
            or inputs.get("alarmName")
            or inputs.get("dashboardName")
            or mock_autoname(resource.name)
        )
        arn = template.format(
            name=name,
            parent=str(inputs.get(parent_key, "")),
            key=inputs.get("key", ""),
            domain=inputs.get("domain", ""),
            repository=inputs.get("repository", ""),
            **values,
        )
        for action in actions:
            decision = iam.evaluate(iam.Request(action, arn), identity, [], principal)
            checked += 1
            if not decision.allowed:
                refused.append(f"{resource.name}: {decision.reason}")
    assert checked >= 30
    assert refused == []


# --- mlinfra's calls with the CI roles: the access contract, through `mlinfra check --access` -----------------------


def _access(root: Path) -> list[Any]:
    from click.testing import CliRunner

    from mlinfra.main import cli

    result = CliRunner().invoke(cli, ["--project", str(root), "check", "--access", "--all", "--json"])
    assert result.exit_code in (0, 3), result.output
    return [json.loads(result.stdout), result.exit_code][0:2]


def test_check_access_decides_every_ci_call_of_the_contract_against_the_bootstrap_roles() -> None:
    from mlinfra_infra.policy.contract import load

    reports, code = _access(REPO)
    contract = load()
    for report in reports:
        principals = {c["principal"] for c in report["calls"]}
        assert {"ci-preview", "ci-deploy", "ci-promotion"} <= principals, report["stack"]
        assert not set(report["absentPrincipals"]) & {"ci-preview", "ci-deploy", "ci-promotion"}
        denied = [c for c in report["calls"] if not c["allowed"]]
        assert denied == [], f"{report['stack']}: {denied[:3]}"
        # Every recorded call of each CI role was decided here (the source stage's too, past the entry stage).
        for principal in ("ci-preview", "ci-deploy", "ci-promotion"):
            decided = {c["action"] for c in report["calls"] if c["principal"] == principal}
            roles = {"{stage_role}", "{source_role}", "{approval_role}"}  # one account: no role is assumed
            entry = report["stack"] == "sandbox"  # the entry stage has no source stage: its calls are not made there
            needed = {
                c.action
                for c in contract.calls_of(principal)
                if c.resource not in roles and not (entry and "{source" in c.resource + json.dumps(dict(c.context)))
            }
            assert needed <= decided, f"{report['stack']} {principal}: {sorted(needed - decided)[:3]}"
    assert code == 0


def test_check_access_fails_when_a_ci_role_loses_a_call_the_code_makes(tmp_path: Path) -> None:
    """Narrow the deploy role's autoscaling grant to nothing: `mlinfra up`'s scaling calls are then denied (exit 3)."""
    from tests.bootstrap.conftest import platform_copy

    root = platform_copy(tmp_path / "platform")
    policies = REPO / "infra" / "bootstrap" / "deploy.py"
    assert '"application-autoscaling:RegisterScalableTarget",' in policies.read_text(encoding="utf-8")
    shutil.copy(
        REPO / "infra" / "bootstrap" / "Pulumi.bootstrap.yaml", root / "infra" / "bootstrap" / "Pulumi.bootstrap.yaml"
    )
    from mlinfra_infra.bootstrap import deploy

    original = deploy.allow

    def without_autoscaling(sid: str, actions: list[str], *args: Any, **kwargs: Any) -> Any:
        if sid == "StageAutoscaling":
            actions = [a for a in actions if a != "application-autoscaling:RegisterScalableTarget"]
        return original(sid, actions, *args, **kwargs)

    deploy.allow = without_autoscaling  # type: ignore[assignment]
    try:
        reports, code = _access(root)
    finally:
        deploy.allow = original  # type: ignore[assignment]
    assert code == 3
    denied = {(c["principal"], c["action"]) for r in reports for c in r["calls"] if not c["allowed"]}
    assert denied == {("ci-deploy", "application-autoscaling:RegisterScalableTarget")}


def test_across_accounts_the_source_stage_is_read_through_the_roles_it_lends(tmp_path: Path) -> None:
    """Stages in separate accounts (the test bootstrap). Without the source roles in the stage files, CloudWatch alarms
    and model packages of the source stage cannot be read from the next stage's account (exit 3); with each stage's
    accountId, sourceRoleArn, approvalRoleArn and readerRoleArns set, every CI call is allowed (exit 0): the source's
    reads as its source role, the approval as its approval role, each assumed by the calling role (its policy and the
    role's trust), and the artifact copy by the promotion role itself through the source's bucket and key policies."""
    from mlinfra_infra.policy.contract import load
    from tests.bootstrap.conftest import platform_copy, with_source_roles

    reports, code = _access(platform_copy(tmp_path / "without"))
    assert code == 3
    by_stack = {r["stack"]: r for r in reports}
    assert not [c for s in ("sandbox", "dev") for c in by_stack[s]["calls"] if not c["allowed"]]
    staging = [c for c in by_stack["staging"]["calls"] if not c["allowed"]]
    alarms = [c for c in staging if c["action"] == "cloudwatch:DescribeAlarms"]
    assert alarms and all("without a role there" in c["reason"] and ":111111111111:" in c["resource"] for c in alarms)

    reports, code = _access(with_source_roles(platform_copy(tmp_path / "with")))
    denied = [(r["stack"], c["principal"], c["action"], c["resource"]) for r in reports for c in r["calls"]
              if not c["allowed"]]  # fmt: skip
    assert (code, denied) == (0, [])
    by_stack = {r["stack"]: r for r in reports}
    contract = load()
    for target, source, account in (("staging", "dev", "111111111111"), ("prod", "staging", "222222222222")):
        calls = by_stack[target]["calls"]
        for principal in ("ci-preview", "ci-promotion"):
            mine = [c for c in calls if c["principal"] == principal]
            # Every call made as a lent role: the reads as the source role, the approval as the approval role.
            lent = {(c["action"] == "sagemaker:UpdateModelPackage", c["actingAs"]) for c in mine if c["actingAs"]}
            expected_lent = {(False, f"arn:aws:iam::{account}:role/mlinfra-{source}-source")}
            if principal == "ci-promotion":
                expected_lent.add((True, f"arn:aws:iam::{account}:role/mlinfra-{source}-approval"))
            assert lent == expected_lent, (target, principal)
            # The source role reads records only: every artifact read (the copy, its check) is the role's own.
            artifacts = [c for c in mine if "/sha256/" in c["resource"] and c["action"].startswith("s3:")]
            assert artifacts if principal == "ci-promotion" else not artifacts, (target, principal)
            assert not [c for c in artifacts if c["actingAs"]], (target, principal)
            assumed = {c["resource"] for c in mine if c["action"] == "sts:AssumeRole" and c["allowed"]}
            expected = {f"arn:aws:iam::{account}:role/mlinfra-{source}-source"}
            if principal == "ci-promotion":
                expected.add(f"arn:aws:iam::{account}:role/mlinfra-{source}-approval")
            assert assumed == expected, (target, principal)
            decided = {c["action"] for c in mine}
            needed = {c.action for c in contract.calls_of(principal) if c.resource != "{stage_role}"}
            assert needed <= decided, f"{target} {principal}: {sorted(needed - decided)[:3]}"
        # The server-side copy's read of the source registry: the promotion role itself (not a lent role).
        copies = [c for c in calls if c["action"] == "s3:GetObject" and f"-{source}-{account}-" in c["resource"]
                  and "/sha256/" in c["resource"] and not c["actingAs"]]  # fmt: skip
        assert copies and {c["principal"] for c in copies} == {"ci-promotion"}
        assert all("NextStagePromotionRolesReadModels" in c["decidedBy"] for c in copies)


def test_across_accounts_the_artifact_copy_needs_the_source_registry_to_list_the_promotion_role(tmp_path: Path) -> None:
    """The promotion role copies the artifact server-side with its own credentials: without it among the source
    registry's readerRoleArns (bucket and key policies), that read is denied though every lent role is in place."""
    from tests.bootstrap.conftest import platform_copy, with_source_roles

    root = with_source_roles(platform_copy(tmp_path / "platform"))
    path = root / "stacks" / "Pulumi.staging.yaml"
    text = path.read_text(encoding="utf-8")
    assert "arn:aws:iam::333333333333:role/mlinfra-prod-promotion" in text
    path.write_text(
        text.replace(
            "arn:aws:iam::333333333333:role/mlinfra-prod-promotion", "arn:aws:iam::333333333333:role/someone-else"
        )
    )
    reports, code = _access(root)
    assert code == 3
    denied = {(r["stack"], c["principal"], c["action"]) for r in reports for c in r["calls"] if not c["allowed"]}
    assert denied == {("prod", "ci-promotion", "s3:GetObject"), ("prod", "ci-promotion", "kms:Decrypt")}


def test_check_access_evaluates_the_stage_roles_under_the_workload_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stage stacks' roles carry the bootstrap's workload boundary: a boundary without S3 denies the drift job's
    registry reads even though its own policy allows them."""
    from mlinfra_infra.bootstrap import boundaries
    from tests.bootstrap.conftest import platform_copy

    root = platform_copy(tmp_path / "platform")
    shipped_file = REPO / "infra" / "bootstrap" / "Pulumi.bootstrap.yaml"
    shutil.copy(shipped_file, root / "infra" / "bootstrap" / "Pulumi.bootstrap.yaml")
    monkeypatch.setattr(boundaries, "WORKLOAD_SERVICES", [s for s in boundaries.WORKLOAD_SERVICES if s != "s3:*"])
    reports, code = _access(root)
    assert code == 3
    denied = [c for r in reports for c in r["calls"] if not c["allowed"]]
    drift = [c for c in denied if c["principal"] == "drift-job" and c["action"].startswith("s3:")]
    assert drift and all("permissions boundary" in c["reason"] for c in drift)
    assert not [c for c in denied if not c["action"].startswith("s3:")]


@pytest.mark.parametrize(("source", "target"), [("dev", "staging"), ("staging", "prod")])
def test_a_preview_role_of_the_next_stage_cannot_read_an_artifact_through_the_source_role(
    shipped: Shipped, source: str, target: str
) -> None:
    """The next stage's preview role may assume the source role (any same-repository pull request of an unprotected
    stage runs it), so the source role reads records only: pointers, version records and the files stored with a
    version, audit, the version's package and alarm states. Never an artifact, nor a listing of them: promote checks
    and copies the artifact with its own promotion role (the source registry's readerRoleArns)."""
    rendered = shipped[1]
    account, registry = ACCOUNTS[source], placeholders(source)["registry"]
    source_arn = names.role_arn(account, names.source_role("mlinfra", source))
    preview = names.role_arn(ACCOUNTS[target], names.role("mlinfra", target, "preview"))
    trust = json.loads(rendered.named(f"{source}-source-source").inputs["assumeRolePolicy"])
    preview_policies, _ = role_policies(rendered, target, "preview")
    assume = iam.Request("sts:AssumeRole", source_arn, {"aws:SecureTransport": True})
    assert iam.evaluate(assume, preview_policies, [], preview).allowed, "the preview role's own policy"
    assert iam.evaluate(assume, [], [trust], preview, resource_policy_required=True).allowed, "the role's trust"

    policy = json.loads(rendered.named(f"{source}-source-source-policy").inputs["policy"])

    def as_source_role(action: str, resource: str, **context: Any) -> bool:
        request = iam.Request(action, resource, {"aws:SecureTransport": True, **context})
        return iam.evaluate(request, [policy], [], source_arn).allowed

    artifact = f"arn:aws:s3:::{registry}/{layout.artifact_key('churn', 'sha256:' + '0' * 64)}"
    for action in ("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes"):
        assert not as_source_role(action, artifact), action
    assert not as_source_role("s3:GetObject", f"arn:aws:s3:::{registry}/uploads/churn/x.tar.gz")
    assert not as_source_role("s3:ListBucket", f"arn:aws:s3:::{registry}", **{"s3:prefix": "models/churn/sha256/"})
    for key in (layout.version_key("churn", 1), "models/churn/versions/1/card.md", layout.stage_key("churn")):
        assert as_source_role("s3:GetObject", f"arn:aws:s3:::{registry}/{key}"), key
    assert as_source_role("s3:GetObject", f"arn:aws:s3:::{registry}/audit/churn/2026-12-07T00:00:00Z-x.json")
    for prefix in ("models/churn/versions/", "models/churn/versions/1/", "audit/churn/", "stages/churn.json"):
        assert as_source_role("s3:ListBucket", f"arn:aws:s3:::{registry}", **{"s3:prefix": prefix}), prefix
    package = f"arn:aws:sagemaker:{REGION}:{account}:model-package/mlinfra-{source}-churn/1"
    assert as_source_role("sagemaker:DescribeModelPackage", package)
    group = f"arn:aws:sagemaker:{REGION}:{account}:model-package-group/mlinfra-{source}-churn"
    assert not as_source_role("sagemaker:DescribeModelPackageGroup", group), "no recorded call needs it"
    assert not as_source_role("sagemaker:UpdateModelPackage", package, **{"sagemaker:ModelApprovalStatus": "Approved"})


@pytest.mark.parametrize("source", ["dev", "staging"])
def test_the_approval_role_only_approves(shipped: Shipped, source: str) -> None:
    """UpdateModelPackage's `sagemaker:ModelApprovalStatus` must be Approved: the role cannot reject a package, reset
    it to pending, or change its metadata without approving it."""
    rendered = shipped[1]
    account = ACCOUNTS[source]
    arn = names.role_arn(account, names.approval_role("mlinfra", source))
    policy = json.loads(rendered.named(f"{source}-source-approval-policy").inputs["policy"])
    package = f"arn:aws:sagemaker:{REGION}:{account}:model-package/mlinfra-{source}-churn/3"

    def update(**context: Any) -> bool:
        request = iam.Request("sagemaker:UpdateModelPackage", package, {"aws:SecureTransport": True, **context})
        return iam.evaluate(request, [policy], [], arn).allowed

    assert update(**{"sagemaker:ModelApprovalStatus": "Approved"})
    assert not update(**{"sagemaker:ModelApprovalStatus": "Rejected"})
    assert not update(**{"sagemaker:ModelApprovalStatus": "PendingManualApproval"})
    assert not update(), "an update that sets no approval status"
