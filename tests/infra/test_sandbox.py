"""SandboxVM under Pulumi's mock runtime: every security property of the analyst VM, its network and its stop."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from ruamel.yaml import YAML

from mlinfra.render import MOCK_ACCOUNT, MOCK_AMI, RenderedResource, RenderedStack
from mlinfra_infra import outputs
from tests.conftest import REGION, policy

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


def test_instance_role_is_scoped_to_the_sandbox_registry(stack: RenderedStack) -> None:
    doc = policy(stack.named("sandbox-registry-access").inputs)
    for statement in statements(doc):
        actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
        assert statement["Effect"] == "Allow"
        assert not ("*" in resources and any("*" in a for a in actions)), f"sandbox-registry-access: {statement}"
        assert all(":" in a and not a.endswith(":*") for a in actions), f"sandbox-registry-access: {actions}"
    by_sid = {s["Sid"]: s for s in statements(doc)}
    assert by_sid["ListRegistry"]["Resource"] == [BUCKET_ARN]
    assert sorted(by_sid["ReadWriteRegistryRecords"]["Resource"]) == [
        f"{BUCKET_ARN}/audit/*",
        f"{BUCKET_ARN}/models/*",
        f"{BUCKET_ARN}/stages/*",
    ]
    assert "s3:DeleteObject" not in by_sid["ReadWriteRegistryRecords"]["Action"]
    assert by_sid["UseRegistryKey"]["Resource"] == [stack.outputs[outputs.REGISTRY_KEY_ARN]]
    sagemaker = f"arn:aws:sagemaker:{REGION}:{MOCK_ACCOUNT}"
    assert by_sid["RegisterModelPackages"]["Resource"] == [
        f"{sagemaker}:model-package-group/mlinfra-sandbox-*",
        f"{sagemaker}:model-package/mlinfra-sandbox-*/*",
    ]
    # The one statement on "*": ListModelPackages, which IAM cannot scope to a resource.
    assert [s["Action"] for s in statements(doc) if "*" in as_list(s["Resource"])] == [["sagemaker:ListModelPackages"]]


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
    assert config["ssh_pwauth"] is False
    for forbidden in ("ssh_authorized_keys", "users", "chpasswd", "ssh_keys"):
        assert forbidden not in config, f"sandbox cloud-init must not set {forbidden}"
