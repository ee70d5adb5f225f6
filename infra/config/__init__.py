"""Typed stack configuration: every stage's settings, validated before any resource is declared.

The same model validates a stack file read by the CLI (offline, no Pulumi engine) and the config the Pulumi engine
hands the program, so a mistake found by `mlinfra preview` is exactly the mistake `pulumi up` would hit. Limits
checked here are AWS's documented ones (name lengths and patterns, instance families, valid combinations), so the
first real deployment does not fail on something a test could have caught.

The package splits it by subject: types.py (domain types and the block base), models.py (per-model settings),
stage.py (stage-wide blocks and StackConfig), loading.py (reading a stack file's config). Import from here.
"""

from __future__ import annotations

from .loading import load_stack_config, split_config, suggest
from .models import (
    AlarmSettings,
    AutoscalingSettings,
    CaptureSettings,
    DeploymentSettings,
    GateSettings,
    HandlerLayout,
    MetricThreshold,
    ModelConfig,
    ModelSettings,
    Pin,
)
from .stage import (
    PULL_REQUEST_STAGES,
    TOP_LEVEL_KEYS,
    AccessSettings,
    CostAssumptions,
    Delivery,
    MonitoringSettings,
    NetworkSettings,
    Notification,
    ObjectLockSettings,
    PolicySettings,
    RegistrySettings,
    SandboxSettings,
    StackConfig,
)
from .types import (
    CONFIG_NAMESPACE,
    PASSTHROUGH_NAMESPACES,
    SECRET_PLACEHOLDER,
    AccountId,
    BucketName,
    ConfigError,
    Cron,
    Digest,
    Ec2InstanceType,
    ImageUri,
    ModelName,
    OwnerTag,
    ProcessingInstanceType,
    Region,
    RoleArn,
    S3Uri,
    SageMakerInstanceType,
    Settings,
    StageName,
)

__all__ = [
    "CONFIG_NAMESPACE",
    "PASSTHROUGH_NAMESPACES",
    "PULL_REQUEST_STAGES",
    "SECRET_PLACEHOLDER",
    "TOP_LEVEL_KEYS",
    "AccessSettings",
    "AccountId",
    "AlarmSettings",
    "AutoscalingSettings",
    "BucketName",
    "CaptureSettings",
    "ConfigError",
    "CostAssumptions",
    "Cron",
    "Delivery",
    "DeploymentSettings",
    "Digest",
    "Ec2InstanceType",
    "GateSettings",
    "HandlerLayout",
    "ImageUri",
    "MetricThreshold",
    "ModelConfig",
    "ModelName",
    "ModelSettings",
    "MonitoringSettings",
    "NetworkSettings",
    "Notification",
    "ObjectLockSettings",
    "OwnerTag",
    "Pin",
    "PolicySettings",
    "ProcessingInstanceType",
    "Region",
    "RegistrySettings",
    "RoleArn",
    "S3Uri",
    "SageMakerInstanceType",
    "SandboxSettings",
    "Settings",
    "StackConfig",
    "StageName",
    "load_stack_config",
    "split_config",
    "suggest",
]
