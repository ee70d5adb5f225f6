"""SandboxVM under Pulumi's mock runtime: every security property of the analyst VM, its network and its stop."""

from __future__ import annotations

import fnmatch
import io
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from ruamel.yaml import YAML

from mlinfra.stacks.render import MOCK_ACCOUNT, MOCK_AMI, RenderedResource, RenderedStack
from mlinfra_infra import outputs
from tests.conftest import REGION, merge, policy

Render = Callable[..., RenderedStack]
SANDBOX = {"mlinfra:sandbox": {"enabled": True}}
BUCKET = f"mlinfra-sandbox-{MOCK_ACCOUNT}-{REGION}"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
VPC_ID = "vpc-0123456789abcdef0"
SUBNET_ID = "subnet-0123456789abcdef0"

INSTANCE = "aws:ec2/instance:Instance"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
ROLE = "aws:iam/role:Role"
SCHEDULE = "aws:scheduler/schedule:Schedule"
# Every way to open a port or a route to the internet that the sandbox must never declare.
INGRESS_RULE_TYPES = (
    "aws:ec2/securityGroupRule:SecurityGroupRule",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
)
INTERNET_TYPES = (
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/internetGatewayAttachment:InternetGatewayAttachment",
    "aws:ec2/egressOnlyInternetGateway:EgressOnlyInternetGateway",
    "aws:ec2/natGateway:NatGateway",
    "aws:ec2/eip:Eip",
    "aws:ec2/eipAssociation:EipAssociation",
    "aws:ec2/route:Route",
)
# Resources AWS cannot tag; every other child of the component must carry the shared tags.
UNTAGGABLE = {
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    SCHEDULE,
}


@pytest.fixture
def stack(render_stack: Render) -> RenderedStack:
    return render_stack(SANDBOX, stage="sandbox")


def sandbox_children(stack: RenderedStack) -> list[RenderedResource]:
    return stack.children("sandbox")


def instance_of(stack: RenderedStack) -> dict[str, Any]:
    return stack.one(INSTANCE).inputs


def instance_security_group(stack: RenderedStack) -> RenderedResource:
    return stack.named("sandbox-instance-sg")


def statements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["Statement"])


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


# ---------------------------------------------------------------------------------------------------------------
# The component and its outputs.


def test_sandbox_is_one_component_owning_every_sandbox_resource(stack: RenderedStack) -> None:
    component = stack.one("mlinfra:aws:SandboxVM")
    assert component.name == "sandbox"
    owned = {r.type for r in sandbox_children(stack)}
    assert {INSTANCE, SECURITY_GROUP, ROLE, "aws:iam/instanceProfile:InstanceProfile", SCHEDULE} <= owned
    strays = [
        r.name for r in stack.resources if r.type.startswith(("aws:ec2/", "aws:scheduler/")) and r.parent != "sandbox"
    ]
    assert not strays, f"sandbox resources outside the SandboxVM component: {strays}"


def test_instance_id_is_exported(stack: RenderedStack) -> None:
    instance_id = stack.outputs.get(outputs.SANDBOX_INSTANCE_ID)
    assert instance_id, "sandboxInstanceId output must be set when the sandbox is enabled"
    assert instance_id.startswith("sandbox-instance-"), instance_id


def test_disabled_sandbox_declares_nothing(render_stack: Render) -> None:
    stack = render_stack(stage="sandbox")
    assert not stack.of_type("mlinfra:aws:SandboxVM"), "sandbox disabled: no SandboxVM component"
    assert not [r.name for r in stack.resources if r.type.startswith(("aws:ec2/", "aws:scheduler/"))]
    assert outputs.SANDBOX_INSTANCE_ID not in stack.outputs


def test_every_taggable_resource_is_tagged_and_named(stack: RenderedStack) -> None:
    for resource in sandbox_children(stack):
        if resource.type in UNTAGGABLE:
            continue
        tags = resource.inputs.get("tags")
        assert tags, f"{resource.name}: {resource.type} must be tagged"
        assert tags["managed-by"] == "mlinfra", resource.name
        assert tags["stage"] == "sandbox", resource.name
        assert tags["owner"] == "ml-platform", resource.name
        assert tags["Name"].startswith("mlinfra-sandbox-vm"), resource.name
    root_tags = instance_of(stack)["rootBlockDevice"]["tags"]
    assert root_tags["managed-by"] == "mlinfra", "sandbox-instance: the root volume must be tagged"


# ---------------------------------------------------------------------------------------------------------------
# The instance.


def test_instance_requires_imdsv2_with_one_hop(stack: RenderedStack) -> None:
    metadata = instance_of(stack)["metadataOptions"]
    assert metadata["httpTokens"] == "required", "sandbox-instance: IMDSv2 must be required"
    assert metadata["httpEndpoint"] == "enabled", "sandbox-instance: the SSM agent needs the metadata service"
    assert metadata["httpPutResponseHopLimit"] == 1, "sandbox-instance: containers must not reach IMDS"
    assert metadata["instanceMetadataTags"] == "disabled", "sandbox-instance: tags stay out of IMDS"


def test_instance_has_no_public_ip_and_no_key_pair(stack: RenderedStack) -> None:
    instance = instance_of(stack)
    assert instance["associatePublicIpAddress"] is False, "sandbox-instance: no public IP"
    assert "keyName" not in instance, "sandbox-instance: no key pair, access is by SSM only"


def test_root_volume_is_encrypted_with_the_registry_key(stack: RenderedStack) -> None:
    root = instance_of(stack)["rootBlockDevice"]
    assert root["encrypted"] is True, "sandbox-instance: root volume must be encrypted"
    assert root["kmsKeyId"] == stack.outputs[outputs.REGISTRY_KEY_ARN], (
        "sandbox-instance: root volume uses the registry key"
    )
    assert root["volumeType"] == "gp3"
    assert root["volumeSize"] == 50


def test_instance_settings_come_from_config(render_stack: Render) -> None:
    stack = render_stack(
        {"mlinfra:sandbox": {"enabled": True, "instanceType": "m6i.xlarge", "rootVolumeGb": 120}}, stage="sandbox"
    )
    instance = instance_of(stack)
    assert instance["instanceType"] == "m6i.xlarge"
    assert instance["rootBlockDevice"]["volumeSize"] == 120
    assert instance["ami"] == MOCK_AMI, "sandbox-instance: AMI comes from the SSM public parameter"
    assert instance["monitoring"] is True
    assert instance["ebsOptimized"] is True
    assert instance["userDataReplaceOnChange"] is False, "sandbox-instance: a template change must not wipe the disk"


def test_instance_uses_the_profile_of_its_role(stack: RenderedStack) -> None:
    profile = stack.one("aws:iam/instanceProfile:InstanceProfile")
    assert instance_of(stack)["iamInstanceProfile"].startswith(f"{profile.name}-"), "sandbox-instance: its own profile"
    assert profile.inputs["role"].startswith("sandbox-role-"), f"{profile.name}: must carry the sandbox role"
    role = stack.named("sandbox-role")
    trust = policy(role.inputs, "assumeRolePolicy")
    assert [s["Principal"] for s in statements(trust)] == [{"Service": "ec2.amazonaws.com"}]
    attachments = stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert [a.inputs["policyArn"] for a in attachments] == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]


# ---------------------------------------------------------------------------------------------------------------
# Security groups and network.


def test_instance_security_group_has_no_ingress(stack: RenderedStack) -> None:
    group = instance_security_group(stack)
    assert not group.inputs.get("ingress"), f"{group.name}: no inbound rules at all"
    group_ids = instance_of(stack)["vpcSecurityGroupIds"]
    assert len(group_ids) == 1, "sandbox-instance: only its own security group"
    assert group_ids[0].startswith(f"{group.name}-"), f"sandbox-instance: must use {group.name}"
    separate = [r for rule_type in INGRESS_RULE_TYPES for r in stack.of_type(rule_type)]
    into_instance = [r.name for r in separate if r.inputs.get("securityGroupId") in group_ids]
    assert not into_instance, f"{group.name}: separate ingress rules {into_instance}"


def test_instance_security_group_allows_only_https_out(stack: RenderedStack) -> None:
    group = instance_security_group(stack)
    egress = group.inputs["egress"]
    assert egress, f"{group.name}: the SSM agent needs HTTPS out"
    for rule in egress:
        assert (rule["protocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 443, 443), f"{group.name}: {rule}"


def test_no_internet_gateway_nat_or_route_out(stack: RenderedStack) -> None:
    for internet_type in INTERNET_TYPES:
        assert not stack.of_type(internet_type), f"sandbox network must not declare {internet_type}"
    table = stack.one("aws:ec2/routeTable:RouteTable")
    assert not table.inputs.get("routes"), f"{table.name}: only the implicit local route"


def test_created_network_is_private(stack: RenderedStack) -> None:
    vpc = stack.one("aws:ec2/vpc:Vpc").inputs
    assert vpc["cidrBlock"] == "10.42.0.0/16"
    assert vpc["enableDnsSupport"] is True, "sandbox-vpc: interface endpoints need DNS support"
    assert vpc["enableDnsHostnames"] is True, "sandbox-vpc: interface endpoints need DNS hostnames"
    subnet = stack.one("aws:ec2/subnet:Subnet").inputs
    assert subnet["mapPublicIpOnLaunch"] is False, "sandbox-subnet: must not hand out public IPs"
    assert subnet["cidrBlock"] == "10.42.0.0/24"
    assert subnet["availabilityZone"] == f"{REGION}a"
    default_group = stack.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup").inputs
    assert not default_group.get("ingress"), "sandbox-default-sg: the VPC's default group must be emptied"
    assert not default_group.get("egress"), "sandbox-default-sg: the VPC's default group must be emptied"


def test_ssm_and_cli_endpoints_use_private_dns(stack: RenderedStack) -> None:
    endpoints = {r.inputs["serviceName"]: r for r in stack.of_type(VPC_ENDPOINT)}
    for service in ("ssm", "ssmmessages", "ec2messages", "sagemaker.api", "sts"):
        endpoint = endpoints.get(f"com.amazonaws.{REGION}.{service}")
        assert endpoint is not None, f"sandbox network: no interface endpoint for {service}"
        assert endpoint.inputs["vpcEndpointType"] == "Interface", endpoint.name
        assert endpoint.inputs["privateDnsEnabled"] is True, f"{endpoint.name}: private DNS must be on"
        groups = endpoint.inputs["securityGroupIds"]
        assert len(groups) == 1, endpoint.name
        assert groups[0].startswith("sandbox-endpoint-sg-"), f"{endpoint.name}: must use the endpoint security group"
    s3 = endpoints[f"com.amazonaws.{REGION}.s3"]
    assert s3.inputs["vpcEndpointType"] == "Gateway", s3.name
    tables = s3.inputs["routeTableIds"]
    assert len(tables) == 1, s3.name
    assert tables[0].startswith(f"{stack.one('aws:ec2/routeTable:RouteTable').name}-"), (
        f"{s3.name}: on the subnet's table"
    )


def test_endpoint_security_group_accepts_https_from_the_vpc_only(stack: RenderedStack) -> None:
    group = stack.named("sandbox-endpoint-sg")
    ingress = group.inputs["ingress"]
    assert [(r["protocol"], r["fromPort"], r["toPort"], r["cidrBlocks"]) for r in ingress] == [
        ("tcp", 443, 443, ["10.42.0.0/16"])
    ], f"{group.name}: HTTPS from the VPC CIDR only"
    assert not group.inputs.get("egress"), f"{group.name}: endpoints never initiate connections"


def test_existing_network_is_used_as_given(render_stack: Render) -> None:
    stack = render_stack(
        {"mlinfra:sandbox": {"enabled": True, "network": {"vpcId": VPC_ID, "subnetId": SUBNET_ID}}}, stage="sandbox"
    )
    for created in ("aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/routeTable:RouteTable", VPC_ENDPOINT):
        assert not stack.of_type(created), f"existing network: must not create {created}"
    assert instance_of(stack)["subnetId"] == SUBNET_ID, "sandbox-instance: must go into the configured subnet"
    group = instance_security_group(stack)
    assert group.inputs["vpcId"] == VPC_ID, f"{group.name}: must be in the configured VPC"
    assert not group.inputs.get("ingress"), f"{group.name}: no inbound rules at all"
    assert {(r["protocol"], r["fromPort"], r["toPort"]) for r in group.inputs["egress"]} == {("tcp", 443, 443)}


# ---------------------------------------------------------------------------------------------------------------
# IAM.


def allowed(doc: dict[str, Any], action: str, resource: str, headers: frozenset[str] = frozenset()) -> bool:
    """Whether an Allow statement grants `action` on `resource` for a request carrying these conditional headers.

    Enough of IAM for these policies: wildcard resources and `Null` conditions on s3:if-match / s3:if-none-match.
    """
    for s in statements(doc):
        if s["Effect"] != "Allow" or action not in as_list(s["Action"]):
            continue
        if not any(fnmatch.fnmatchcase(resource, pattern) for pattern in as_list(s["Resource"])):
            continue
        nulls = s.get("Condition", {}).get("Null", {})
        if all((key.removeprefix("s3:") not in headers) == (want == "true") for key, want in nulls.items()):
            return True
    return False


def test_instance_role_lets_register_write_what_it_writes_and_nothing_more(stack: RenderedStack) -> None:
    doc = policy(stack.named("sandbox-registry-access").inputs)
    for s in statements(doc):
        actions, resources = as_list(s["Action"]), as_list(s["Resource"])
        assert s["Effect"] == "Allow"
        assert not ("*" in resources and any("*" in a for a in actions)), f"sandbox-registry-access: {s}"
        assert all(":" in a and not a.endswith(":*") for a in actions), f"sandbox-registry-access: {actions}"
    obj = f"{BUCKET_ARN}/"
    create, swap = frozenset({"if-none-match"}), frozenset({"if-match"})
    # What `mlinfra register` and `attach` do in the entry stage (cli/registry/register.py, attach.py, store.py).
    for action, key, headers in [
        ("s3:PutObject", "uploads/churn/abc.tar.gz", frozenset()),  # multipart parts and completion
        ("s3:AbortMultipartUpload", "uploads/churn/abc.tar.gz", frozenset()),
        ("s3:GetObject", "uploads/churn/abc.tar.gz", frozenset()),  # the copy's source
        ("s3:PutObject", "models/churn/sha256/0a1b/model.tar.gz", frozenset()),  # CopyObject: no conditions
        ("s3:DeleteObject", "uploads/churn/abc.tar.gz", frozenset()),
        ("s3:DeleteObjectVersion", "uploads/churn/abc.tar.gz", frozenset()),  # discard(): the upload's version
        ("s3:PutObject", "models/churn/versions/1.json", create),
        ("s3:PutObject", "models/churn/versions/1/baseline.json", create),
        ("s3:PutObject", "models/churn/versions/1.json", swap),  # attach (cli/registry/attach.py)
        ("s3:PutObject", "models/churn/versions/1/baseline.json", swap),
        ("s3:PutObject", "stages/churn.json", create),  # the first pointer
        ("s3:PutObject", "stages/churn.json", swap),  # moving it
        ("s3:PutObject", "audit/churn/20261127T020000-1.json", create),
        ("s3:GetObjectAttributes", "models/churn/sha256/0a1b/model.tar.gz", frozenset()),
        ("s3:GetObjectVersion", "audit/churn/20261127T020000-1.json", frozenset()),  # history, deleted records
    ]:
        assert allowed(doc, action, obj + key, headers), f"register needs {action} on {key} with {set(headers)}"
    # What it must not do: overwrite pointers, audit or version records, delete anything but uploads, touch retention.
    for action, key, headers in [
        ("s3:PutObject", "stages/churn.json", frozenset()),
        ("s3:PutObject", "audit/churn/20261127T020000-1.json", frozenset()),
        ("s3:PutObject", "audit/churn/20261127T020000-1.json", swap),
        ("s3:PutObject", "models/churn/versions/1.json", frozenset()),
        ("s3:DeleteObject", "stages/churn.json", frozenset()),
        ("s3:DeleteObject", "audit/churn/x.json", frozenset()),
        ("s3:DeleteObject", "models/churn/sha256/0a1b/model.tar.gz", frozenset()),
        ("s3:DeleteObjectVersion", "audit/churn/x.json", frozenset()),
        ("s3:PutObjectRetention", "models/churn/sha256/0a1b/model.tar.gz", frozenset()),
        ("s3:BypassGovernanceRetention", "audit/churn/x.json", frozenset()),
        ("s3:PutObject", "capture/churn/x.jsonl", frozenset()),
    ]:
        assert not allowed(doc, action, obj + key, headers), f"the VM must not {action} {key} with {set(headers)}"
    by_sid = {s["Sid"]: s for s in statements(doc)}
    assert by_sid["UseRegistryKey"]["Resource"] == [stack.outputs[outputs.REGISTRY_KEY_ARN]]
    sagemaker = f"arn:aws:sagemaker:{REGION}:{MOCK_ACCOUNT}"
    assert by_sid["RegisterModelPackages"]["Resource"] == [
        f"{sagemaker}:model-package-group/mlinfra-sandbox-*",
        f"{sagemaker}:model-package/mlinfra-sandbox-*/*",
    ]
    # Statements on "*": only actions IAM cannot scope to a resource, the bearer token with a service condition.
    star = sorted(a for s in statements(doc) if "*" in as_list(s["Resource"]) for a in as_list(s["Action"]))
    assert star == [
        "cloudwatch:GetMetricStatistics",
        "logs:DescribeLogGroups",
        "sagemaker:ListModelPackages",
        "sts:GetServiceBearerToken",
    ]
    # `mlinfra status` on the VM (found by the access contract): the stage's alarms and endpoints, read-only.
    assert by_sid["ReadStageStatus"]["Resource"] == [
        f"arn:aws:cloudwatch:{REGION}:{MOCK_ACCOUNT}:alarm:mlinfra-sandbox-*"
    ]
    assert by_sid["DescribeStageEndpoints"]["Resource"] == [
        f"{sagemaker}:endpoint/mlinfra-sandbox-*",
        f"{sagemaker}:endpoint-config/mlinfra-sandbox-*",
        f"{sagemaker}:model/mlinfra-sandbox-*",
    ]
    assert by_sid["CodeArtifactBearerToken"]["Condition"] == {
        "StringEquals": {"sts:AWSServiceName": "codeartifact.amazonaws.com"}
    }


def test_a_locked_sandbox_registry_lets_register_set_retention(render_stack: Render) -> None:
    stack = render_stack({**SANDBOX, "mlinfra:registry": {"objectLock": {"days": 30}}}, stage="sandbox")
    doc = policy(stack.named("sandbox-registry-access").inputs)
    assert allowed(doc, "s3:PutObjectRetention", f"{BUCKET_ARN}/models/churn/sha256/0a/model.tar.gz")
    assert allowed(doc, "s3:PutObjectRetention", f"{BUCKET_ARN}/audit/churn/x.json")
    assert not allowed(doc, "s3:PutObjectRetention", f"{BUCKET_ARN}/stages/churn.json")
    assert not allowed(doc, "s3:BypassGovernanceRetention", f"{BUCKET_ARN}/audit/churn/x.json")


def test_packages_come_from_codeartifact_with_a_pypi_upstream(stack: RenderedStack) -> None:
    domain = stack.one("aws:codeartifact/domain:Domain").inputs
    assert domain["domain"] == "mlinfra-sandbox"
    assert domain["encryptionKey"] == stack.outputs[outputs.REGISTRY_KEY_ARN]
    repos = {r.inputs["repository"]: r.inputs for r in stack.of_type("aws:codeartifact/repository:Repository")}
    assert repos["pypi-store"]["externalConnections"] == {"externalConnectionName": "public:pypi"}
    assert repos["mlinfra"]["upstreams"] == [{"repositoryName": "pypi-store"}]
    services = {
        r.inputs["serviceName"].removeprefix(f"com.amazonaws.{REGION}."): r.inputs for r in stack.of_type(VPC_ENDPOINT)
    }
    for service in ("codeartifact.api", "codeartifact.repositories", "logs"):
        assert services[service]["vpcEndpointType"] == "Interface", service
        assert services[service]["privateDnsEnabled"] is True, service


def test_s3_endpoint_reaches_only_the_stages_buckets(stack: RenderedStack) -> None:
    s3 = next(r for r in stack.of_type(VPC_ENDPOINT) if r.inputs["serviceName"].endswith(".s3"))
    doc = policy(s3.inputs)
    resources = sorted(r for s in statements(doc) for r in as_list(s["Resource"]))
    assert resources == sorted(
        [
            BUCKET_ARN,
            f"{BUCKET_ARN}/*",
            f"arn:aws:s3:::al2023-repos-{REGION}-de612dc2/*",
            f"arn:aws:s3:::aws-ssm-{REGION}/*",
            f"arn:aws:s3:::amazon-ssm-{REGION}/*",
            f"arn:aws:s3:::amazon-ssm-packages-{REGION}/*",
        ]
    )
    system = next(s for s in statements(doc) if s["Sid"] == "OperatingSystemPackagesAndSsmAgent")
    assert system["Action"] == ["s3:GetObject"]


def test_shell_sessions_are_logged_to_an_encrypted_group(stack: RenderedStack) -> None:
    group = stack.one("aws:cloudwatch/logGroup:LogGroup").inputs
    assert group["name"] == "/mlinfra/mlinfra-sandbox/sessions"
    assert group["kmsKeyId"] == stack.outputs[outputs.REGISTRY_KEY_ARN]
    assert group["retentionInDays"] == 365
    document = stack.one("aws:ssm/document:Document").inputs
    assert (document["name"], document["documentType"]) == ("mlinfra-sandbox-analyst-shell", "Session")
    content = json.loads(document["content"])
    assert content["inputs"]["cloudWatchLogGroupName"] == group["name"]
    assert content["inputs"]["cloudWatchEncryptionEnabled"] is True
    assert stack.outputs[outputs.SANDBOX_SESSION_DOCUMENT] == "mlinfra-sandbox-analyst-shell"
    # The key lets CloudWatch Logs encrypt only this stage's log groups.
    key = policy(stack.named("registry-key").inputs)
    logs = next(s for s in statements(key) if s["Sid"] == "CloudWatchLogsEncryptsThisStagesLogGroups")
    groups = f"arn:aws:logs:{REGION}:{MOCK_ACCOUNT}:log-group:/mlinfra/mlinfra-sandbox/*"
    assert logs["Condition"]["ArnLike"] == {"kms:EncryptionContext:aws:logs:arn": groups}
    # DescribeKey carries no encryption context: under that condition it would never be allowed, so it is not there.
    assert not [a for a in logs["Action"] if a.startswith("kms:Describe")]


def test_analyst_policy_starts_the_vm_and_opens_only_logged_sessions(stack: RenderedStack) -> None:
    doc = policy(stack.named("sandbox-analyst-access").inputs)
    instance_arn = f"arn:aws:ec2:{REGION}:{MOCK_ACCOUNT}:instance/{stack.outputs[outputs.SANDBOX_INSTANCE_ID]}"
    by_sid = {s["Sid"]: s for s in statements(doc)}
    assert by_sid["StartTheSandboxVM"]["Resource"] == [instance_arn]
    # Starting a VM whose root volume uses a customer key needs a grant for EC2, in its own statement.
    grant = by_sid["AttachTheEncryptedRootVolume"]
    assert (grant["Action"], grant["Condition"]) == (
        ["kms:CreateGrant"],
        {"Bool": {"kms:GrantIsForAWSResource": "true"}},
    )
    assert by_sid["ReadTheRootVolumeKey"]["Action"] == ["kms:DescribeKey"]
    session = by_sid["LoggedSessionsOnTheVM"]
    assert session["Resource"] == [
        instance_arn,
        f"arn:aws:ssm:{REGION}:{MOCK_ACCOUNT}:document/mlinfra-sandbox-analyst-shell",
        f"arn:aws:ssm:{REGION}::document/AWS-StartPortForwardingSession",
    ]
    assert session["Condition"] == {"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}}
    assert stack.outputs[outputs.SANDBOX_ANALYST_POLICY_ARN].startswith("arn:aws:iam:")


def test_stop_schedule_follows_config(render_stack: Render) -> None:
    stack = render_stack(
        {"mlinfra:sandbox": {"enabled": True, "stopSchedule": "cron(30 18 ? * * *)", "timezone": "Europe/Berlin"}},
        stage="sandbox",
    )
    schedule = stack.one(SCHEDULE).inputs
    assert schedule["scheduleExpression"] == "cron(30 18 ? * * *)", "sandbox-nightly-stop: expression from config"
    assert schedule["scheduleExpressionTimezone"] == "Europe/Berlin", "sandbox-nightly-stop: timezone from config"
    assert schedule["flexibleTimeWindow"] == {"mode": "OFF"}
    target = schedule["target"]
    assert target["arn"] == "arn:aws:scheduler:::aws-sdk:ec2:stopInstances"
    assert json.loads(target["input"]) == {"InstanceIds": [stack.outputs[outputs.SANDBOX_INSTANCE_ID]]}
    assert target["roleArn"].startswith(f"arn:aws:iam::{MOCK_ACCOUNT}:role/sandbox-stop-role")


def test_stop_role_may_only_stop_this_instance(stack: RenderedStack) -> None:
    trust = policy(stack.named("sandbox-stop-role").inputs, "assumeRolePolicy")
    assert [s["Principal"] for s in statements(trust)] == [{"Service": "scheduler.amazonaws.com"}]
    assert statements(trust)[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": MOCK_ACCOUNT}}
    doc = policy(stack.named("sandbox-stop-policy").inputs)
    instance_arn = f"arn:aws:ec2:{REGION}:{MOCK_ACCOUNT}:instance/{stack.outputs[outputs.SANDBOX_INSTANCE_ID]}"
    assert [(s["Action"], s["Resource"]) for s in statements(doc)] == [(["ec2:StopInstances"], [instance_arn])], (
        "sandbox-stop-policy: ec2:StopInstances on the sandbox instance only"
    )


def test_morning_start_when_configured(render_stack: Render) -> None:
    stack = render_stack(
        {"mlinfra:sandbox": {"enabled": True, "startSchedule": "cron(0 8 ? * MON-FRI *)"}}, stage="sandbox"
    )
    schedules = {r.name: r.inputs for r in stack.of_type(SCHEDULE)}
    start = schedules["sandbox-morning-start"]
    assert start["scheduleExpression"] == "cron(0 8 ? * MON-FRI *)"
    assert start["target"]["arn"] == "arn:aws:scheduler:::aws-sdk:ec2:startInstances"
    doc = policy(stack.named("sandbox-stop-policy").inputs)
    assert {a for s in statements(doc) for a in s["Action"]} == {
        "ec2:StopInstances",
        "ec2:StartInstances",
        "kms:CreateGrant",
        "kms:DescribeKey",
    }


# ---------------------------------------------------------------------------------------------------------------
# cloud-init.


def test_cloud_init_is_yaml_and_points_at_the_registry(stack: RenderedStack) -> None:
    user_data = instance_of(stack)["userData"]
    first, _, rest = user_data.partition("\n")
    assert first == "#cloud-config", "sandbox-instance: user data must start with #cloud-config"
    config = YAML(typ="safe").load(io.StringIO(rest))
    assert isinstance(config, dict), "sandbox-instance: cloud-init must be a YAML mapping"
    files = {f["path"]: f["content"] for f in config["write_files"]}
    profile = files["/etc/profile.d/mlinfra.sh"]
    assert f"export MLINFRA_REGISTRY_BUCKET='{BUCKET}'" in profile
    assert "export MLINFRA_STACK='sandbox'" in profile
    assert f"export AWS_REGION='{REGION}'" in profile
    assert any("aws ssm start-session" in content for content in files.values()), "motd must explain SSM access"
    assert ["dnf", "install", "--assumeyes", "python3.11", "python3.11-pip", "git"] in config["runcmd"]
    # Python, Jupyter and the CLI from CodeArtifact (no internet route), Jupyter on loopback only.
    index = files["/usr/local/sbin/mlinfra-pip-index"]
    assert "--domain 'mlinfra-sandbox'" in index and f"--domain-owner '{MOCK_ACCOUNT}'" in index
    assert "--repository 'mlinfra'" in index
    assert ["/opt/mlinfra/venv/bin/pip", "install", "jupyterlab"] in config["runcmd"]
    # No wheel published yet: no mlinfra, by name or otherwise, and the motd says how to publish it.
    pip = [c for c in config["runcmd"] if isinstance(c, list) and "pip" in str(c[0])]
    assert not [arg for c in pip for arg in c if re.fullmatch(r"mlinfra(\[.*\])?([=<>~!].*)?", str(arg))]
    assert "mlinfra:sandbox.mlinfraWheel" in files["/etc/motd.d/30-mlinfra"]
    assert ["systemctl", "enable", "--now", "mlinfra-pip-index.timer", "jupyter.service"] in config["runcmd"]
    assert "--ip=127.0.0.1 --port=8888" in files["/etc/systemd/system/jupyter.service"]
    assert "OnUnitActiveSec=6h" in files["/etc/systemd/system/mlinfra-pip-index.timer"]
    assert "--document-name mlinfra-sandbox-analyst-shell" in files["/etc/motd.d/30-mlinfra"]
    assert config["ssh_pwauth"] is False
    for forbidden in ("ssh_authorized_keys", "users", "chpasswd", "ssh_keys"):
        assert forbidden not in config, f"sandbox cloud-init must not set {forbidden}"


WHEEL = {"key": "code/wheels/mlinfra-0.1.0-py3-none-any.whl", "sha256": "ab" * 32}


def test_the_vm_installs_only_the_published_wheel_checked_and_offline(render_stack: Render) -> None:
    stack = render_stack(merge(SANDBOX, {"mlinfra:sandbox": {"mlinfraWheel": WHEEL}}), stage="sandbox")
    _, _, rest = instance_of(stack)["userData"].partition("\n")
    config = YAML(typ="safe").load(io.StringIO(rest))
    scripts = [c[2] for c in config["runcmd"] if isinstance(c, list) and c[:2] == ["sh", "-c"]]
    install = next(s for s in scripts if "sha256sum" in s)
    wheel = "/opt/mlinfra/dist/mlinfra-0.1.0-py3-none-any.whl"
    assert install.startswith("set -eu;")
    steps = [step.strip() for step in install.split(";")]
    check = steps.index(f"echo '{'ab' * 32}  '\"$wheel\" | sha256sum --check --strict")
    offline = steps.index('/opt/mlinfra/venv/bin/pip install --no-index --no-deps "$wheel"')
    assert f"aws s3 cp 's3://{BUCKET}/{WHEEL['key']}' \"$wheel\"" in steps
    assert f"wheel={wheel}" in steps and check < offline
    # pip is never asked for mlinfra by name: every pip command installs a file or jupyterlab.
    pip = [c for c in config["runcmd"] if isinstance(c, list) and "pip" in str(c[0])]
    assert all(c[-1] in {"jupyterlab", "pip"} for c in pip)
    # The VM's role may read the published wheels (and the access contract checks cloud-init's download).
    doc = policy(stack.named("sandbox-registry-access").inputs)
    wheels = next(s for s in statements(doc) if s["Sid"] == "ReadPublishedWheels")
    assert wheels["Resource"] == [f"arn:aws:s3:::{BUCKET}/code/wheels/*"]


@pytest.mark.parametrize(
    "bad",
    [
        {"key": "code/wheels/evil-0.1.0-py3-none-any.whl", "sha256": "ab" * 32},
        {"key": "code/wheels/mlinfra-0.1.0-py3-none-any.whl", "sha256": "not-a-digest"},
        {"key": "models/mlinfra-0.1.0-py3-none-any.whl", "sha256": "ab" * 32},
    ],
)
def test_a_malformed_wheel_pin_is_refused(render_stack: Render, bad: dict[str, str]) -> None:
    from mlinfra_infra.config import ConfigError

    with pytest.raises(ConfigError, match="mlinfraWheel"):
        render_stack(merge(SANDBOX, {"mlinfra:sandbox": {"mlinfraWheel": bad}}), stage="sandbox")
