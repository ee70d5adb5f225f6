"""Type tokens and shared lookups the rules use (Pulumi type tokens of pulumi-aws 7)."""

from __future__ import annotations

import hashlib

from .engine import Index, Resource

BUCKET = "aws:s3/bucket:Bucket"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
PUBLIC_ACCESS = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
LOGGING = "aws:s3/bucketLogging:BucketLogging"
OBJECT_LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
KEY = "aws:kms/key:Key"
MODEL = "aws:sagemaker/model:Model"
ENDPOINT_CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
SCALING_TARGET = "aws:appautoscaling/target:Target"
INSTANCE = "aws:ec2/instance:Instance"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SUBNET = "aws:ec2/subnet:Subnet"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
POLICY = "aws:iam/policy:Policy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
COMPOSITE_ALARM = "aws:cloudwatch/compositeAlarm:CompositeAlarm"
TOPIC = "aws:sns/topic:Topic"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
FUNCTION = "aws:lambda/function:Function"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"

REQUIRED_TAGS = ("managed-by", "stage", "owner")
# ECR repositories of SageMaker's prebuilt framework inference images (sagemaker-core's image config) and the
# framework each serves; tests/infra/test_policy.py resolves every framework mlinfra registers to one of them.
FRAMEWORK_REPOSITORIES = {
    "sagemaker-scikit-learn": "scikit-learn",
    "sagemaker-xgboost": "XGBoost",
    "pytorch-inference": "PyTorch",
}
# What the framework containers need to find the handler (ModelEndpoint sets them from the pin's handler layout).
HANDLER_VARIABLES = ("SAGEMAKER_PROGRAM", "SAGEMAKER_SUBMIT_DIRECTORY")
# Types that take `tags` and that the program declares; a new taggable type belongs here.
TAGGED_TYPES = (
    BUCKET,
    KEY,
    MODEL,
    ENDPOINT_CONFIG,
    ENDPOINT,
    INSTANCE,
    SECURITY_GROUP,
    ROLE,
    METRIC_ALARM,
    COMPOSITE_ALARM,
    TOPIC,
    LOG_GROUP,
    "aws:sagemaker/modelPackageGroup:ModelPackageGroup",
    "aws:ec2/vpc:Vpc",
    SUBNET,
    "aws:ec2/vpcEndpoint:VpcEndpoint",
    FUNCTION,
)
ADMIN_POLICIES = ("AdministratorAccess", "PowerUserAccess", "IAMFullAccess")
CAPTURE_STAGES = ("staging", "prod")
OPEN_CIDRS = ("0.0.0.0/0", "::/0")


def bucket_id(resource: Resource) -> str:
    """The bucket's name as other resources reference it: its `bucket` input, else its prefix or auto-name.

    Offline, with the render's deterministic suffix (mlinfra.stacks.render.mock_bucket).
    """
    name = resource.inputs.get("bucket")
    if isinstance(name, str) and name:
        return name
    suffix = hashlib.sha256(resource.name.encode()).hexdigest()[:7]
    prefix = resource.inputs.get("bucketPrefix")
    return f"{prefix}{suffix}" if isinstance(prefix, str) and prefix else f"{resource.name}-{suffix}"


def _by_bucket(index: Index, type_token: str) -> dict[str, Resource]:
    return {str(r.inputs.get("bucket")): r for r in index.of(type_token)}


def _log_targets(index: Index) -> set[str]:
    return {str(r.inputs.get("targetBucket")) for r in index.of(LOGGING)}
