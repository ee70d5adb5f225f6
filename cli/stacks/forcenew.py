"""Which input changes make the AWS provider replace a resource instead of updating it in place.

The Pulumi AWS provider is bridged from the Terraform AWS provider; whether a property change replaces the resource
is Terraform's `ForceNew` on that attribute (or the absence of an Update function). The installed `pulumi-aws` Python
SDK carries no schema and no ForceNew metadata (no `schema.json`; docstrings mention replacement for a handful of
properties only), and the engine's diff needs the provider binary, which is not available offline. So the rules below
are read from the provider's resource definitions (terraform-provider-aws `internal/service/<service>/<resource>.go`,
the version pulumi-aws 7.x bridges) for every resource type the mlinfra program declares, and extended by docstring
hints found in the installed SDK (`sdk_replacement_hints`).

A rule path is a dotted path of Pulumi wire names (`primaryContainer`, `rootBlockDevice.encrypted`); list indices
are ignored when matching. `ALL` means every input except tags replaces (the resource has no Update beyond tags).
"""

from __future__ import annotations

import re
from functools import cache

ALL = "*"
UPDATABLE_EVERYWHERE = frozenset({"tags", "tagsAll"})

# type token -> input paths whose change replaces the resource.
FORCE_NEW: dict[str, frozenset[str]] = {
    # SageMaker models and endpoint configurations are immutable: the provider only updates their tags.
    "aws:sagemaker/model:Model": frozenset({ALL}),
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": frozenset({ALL}),
    # An endpoint is updated in place (UpdateEndpoint switches it to a new config and deployment policy); its name
    # and its auto-rollback alarms (`deployment_config.auto_rollback_configuration` is ForceNew in the provider)
    # replace it — with a fixed name, a delete before the create: the endpoint is down in between.
    "aws:sagemaker/endpoint:Endpoint": frozenset({"name", "deploymentConfig.autoRollbackConfiguration"}),
    "aws:sagemaker/modelPackageGroup:ModelPackageGroup": frozenset(
        {"modelPackageGroupName", "modelPackageGroupDescription"}
    ),
    "aws:s3/bucket:Bucket": frozenset({"bucket", "bucketPrefix", "objectLockEnabled"}),
    "aws:s3/bucketVersioning:BucketVersioning": frozenset({"bucket", "expectedBucketOwner"}),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": frozenset(
        {"bucket", "expectedBucketOwner"}
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": frozenset({"bucket"}),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": frozenset({"bucket"}),
    "aws:s3/bucketPolicy:BucketPolicy": frozenset({"bucket"}),
    "aws:s3/bucketLogging:BucketLogging": frozenset({"bucket", "expectedBucketOwner"}),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": frozenset({"bucket", "expectedBucketOwner"}),
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration": frozenset({"bucket", "expectedBucketOwner"}),
    "aws:kms/key:Key": frozenset({"customerMasterKeySpec", "keyUsage", "multiRegion", "customKeyStoreId", "xksKeyId"}),
    "aws:kms/alias:Alias": frozenset({"name", "namePrefix"}),
    "aws:iam/role:Role": frozenset({"name", "namePrefix", "path"}),
    "aws:iam/policy:Policy": frozenset({"name", "namePrefix", "path", "description"}),
    "aws:iam/rolePolicy:RolePolicy": frozenset({"name", "namePrefix", "role"}),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": frozenset({"role", "policyArn"}),
    "aws:iam/instanceProfile:InstanceProfile": frozenset({"name", "namePrefix", "path"}),
    "aws:cloudwatch/metricAlarm:MetricAlarm": frozenset({"name"}),
    "aws:cloudwatch/compositeAlarm:CompositeAlarm": frozenset({"alarmName"}),
    "aws:cloudwatch/dashboard:Dashboard": frozenset({"dashboardName"}),
    "aws:cloudwatch/logGroup:LogGroup": frozenset({"name", "namePrefix", "logGroupClass"}),
    "aws:cloudwatch/eventRule:EventRule": frozenset({"name", "namePrefix", "eventBusName"}),
    "aws:sns/topic:Topic": frozenset({"name", "namePrefix", "fifoTopic"}),
    "aws:sns/topicPolicy:TopicPolicy": frozenset({"arn"}),
    "aws:sns/topicSubscription:TopicSubscription": frozenset({"topic", "protocol", "endpoint"}),
    "aws:appautoscaling/target:Target": frozenset({"resourceId", "scalableDimension", "serviceNamespace"}),
    "aws:appautoscaling/policy:Policy": frozenset({"name", "resourceId", "scalableDimension", "serviceNamespace"}),
    "aws:ec2/instance:Instance": frozenset(
        {
            "ami",
            "availabilityZone",
            "subnetId",
            "associatePublicIpAddress",
            "keyName",
            "privateIp",
            "tenancy",
            "rootBlockDevice.encrypted",
            "rootBlockDevice.kmsKeyId",
            "ebsBlockDevices",
        }
    ),
    "aws:ec2/vpc:Vpc": frozenset({"cidrBlock"}),
    "aws:ec2/subnet:Subnet": frozenset({"vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId"}),
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": frozenset({"vpcId"}),
    "aws:ec2/securityGroup:SecurityGroup": frozenset({"name", "namePrefix", "description", "vpcId"}),
    "aws:ec2/vpcEndpoint:VpcEndpoint": frozenset({"vpcId", "serviceName", "vpcEndpointType"}),
    "aws:ec2/routeTable:RouteTable": frozenset({"vpcId"}),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": frozenset({"subnetId", "gatewayId"}),
    "aws:ec2/securityGroupRule:SecurityGroupRule": frozenset(
        {"type", "securityGroupId", "protocol", "fromPort", "toPort", "cidrBlocks", "sourceSecurityGroupId"}
    ),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": frozenset({"securityGroupId"}),
    "aws:scheduler/schedule:Schedule": frozenset({"name", "namePrefix", "groupName"}),
    "aws:lambda/function:Function": frozenset({"name", "packageType"}),
    "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": frozenset({"functionName", "qualifier"}),
    # The drift job's code package: a new package is a new key (content-addressed), hence a new object.
    "aws:s3/bucketObjectv2:BucketObjectv2": frozenset({"bucket", "key"}),
    "aws:codeartifact/domain:Domain": frozenset({"domain", "encryptionKey"}),
    "aws:codeartifact/repository:Repository": frozenset({"repository", "domain", "domainOwner"}),
    "aws:ssm/document:Document": frozenset({"name"}),
    "aws:sqs/queue:Queue": frozenset({"name", "namePrefix", "fifoQueue"}),
    "aws:lambda/permission:Permission": frozenset(
        {"action", "function", "principal", "sourceArn", "sourceAccount", "statementId", "qualifier"}
    ),
}

# Types not listed above: a change to one of these (the resource's physical name) replaces it, as it does for
# nearly every named AWS resource.
DEFAULT_FORCE_NEW = frozenset({"name", "namePrefix"})

_SDK_HINT = re.compile(
    r"(forces? (a )?new resource|forces replacement|creates a new resource|force.{0,20}to create)", re.IGNORECASE
)


_CONDITIONAL = re.compile(r"\b(if|when|unless|after|to an empty)\b", re.IGNORECASE)


def _segments(path: str) -> list[str]:
    return [part for part in path.split(".") if not part.isdigit()]


def rules_for(type_token: str) -> tuple[frozenset[str], bool]:
    """The force-new paths for a type and whether they come from the table (False: the default rule applies)."""
    known = FORCE_NEW.get(type_token)
    if known is not None:
        return known | sdk_replacement_hints(type_token), True
    return DEFAULT_FORCE_NEW | sdk_replacement_hints(type_token), False


def replaces(type_token: str, path: str) -> bool:
    """Whether changing the input at `path` (dotted, wire names, list indices allowed) replaces the resource."""
    segments = _segments(path)
    if not segments or segments[0] in UPDATABLE_EVERYWHERE:
        return False
    rules, _ = rules_for(type_token)
    if ALL in rules:
        return True
    for rule in rules:
        parts = rule.split(".")
        if segments[: len(parts)] == parts:
            return True
    return False


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@cache
def sdk_replacement_hints(type_token: str) -> frozenset[str]:
    """Top-level inputs whose docstring in the installed pulumi-aws SDK says a change replaces the resource."""
    import importlib
    import inspect

    try:
        _, module_part, class_name = type_token.split(":")
        service = module_part.split("/")[0]
    except ValueError:
        return frozenset()
    if not type_token.startswith("aws:"):
        return frozenset()
    service = "lambda_" if service == "lambda" else service
    try:
        # Through the service package: importing its submodules directly would defeat pulumi_aws's lazy loading.
        args_class = getattr(importlib.import_module(f"pulumi_aws.{service}"), f"{class_name}Args")
    except (ImportError, AttributeError):
        return frozenset()
    found: set[str] = set()
    for attribute, member in inspect.getmembers(args_class):
        if isinstance(member, property) and member.fget is not None:
            sentences = re.split(r"(?<=\.)\s+", member.fget.__doc__ or "")
            # Only unconditional statements: "If the type is X, changing this forces a new resource" is not one.
            if any(_SDK_HINT.search(s) and not _CONDITIONAL.search(s) for s in sentences):
                found.add(_camel(attribute))
    return frozenset(found)
