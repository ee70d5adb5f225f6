"""The Pulumi program: read the stage's typed config and wire the four components together."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from . import naming, outputs
from .components.endpoint import ModelEndpoint, ModelEndpointArgs
from .components.monitoring import DriftMonitoring, DriftMonitoringArgs, MonitoredEndpoint
from .components.registry import ModelRegistry, ModelRegistryArgs
from .components.sandbox import SandboxVM, SandboxVMArgs
from .config import CONFIG_NAMESPACE, ConfigError, StackConfig, load_stack_config

# Top-level mlinfra keys whose values are structured (Pulumi hands the program structured config as JSON text).
STRUCTURED_KEYS = ("stages", "access", "registry", "modelDefaults", "models", "monitoring", "sandbox", "policy")


def build(cfg: StackConfig) -> dict[str, Any]:
    """Declare every resource of one stage; return the stack outputs by their shared names."""
    account_id: pulumi.Input[str] = (
        cfg.account_id if cfg.account_id is not None else aws.get_caller_identity_output().account_id
    )
    bucket_name: pulumi.Input[str] = (
        cfg.registry.bucket_name
        if cfg.registry.bucket_name is not None
        else pulumi.Output.from_input(account_id).apply(
            lambda account: naming.registry_bucket(cfg.project, cfg.stage, cfg.region, account)
        )
    )
    common = {"project": cfg.project, "stage": cfg.stage, "owner": cfg.owner, "region": cfg.region}
    if cfg.workload_boundary:
        bound_roles(
            account_id, naming.workload_boundary(cfg.project, cfg.stage), naming.iam_path(cfg.project, cfg.stage)
        )

    registry = ModelRegistry(
        "registry",
        ModelRegistryArgs(
            **common,
            account_id=account_id,
            bucket_name=bucket_name,
            models=sorted(cfg.models),
            settings=cfg.registry,
        ),
    )

    endpoints: dict[str, ModelEndpoint] = {}
    for model, model_cfg in cfg.pinned_models.items():
        endpoints[model] = ModelEndpoint(
            f"{model}-endpoint",
            ModelEndpointArgs(
                **common,
                account_id=account_id,
                model=model,
                settings=model_cfg,
                registry_bucket=registry.bucket_name,
                registry_bucket_arn=registry.bucket_arn,
                registry_key_arn=registry.key_arn,
            ),
        )

    exported: dict[str, Any] = {
        outputs.REGISTRY_BUCKET: registry.bucket_name,
        outputs.REGISTRY_KEY_ARN: registry.key_arn,
        outputs.PACKAGE_GROUPS: registry.package_groups,
        outputs.ENDPOINT_NAMES: {model: endpoint.endpoint_name for model, endpoint in endpoints.items()},
        # What each endpoint should run now: the clean-up after an apply keeps these (mlinfra.stacks.retained).
        outputs.ENDPOINT_RESOURCES: {
            model: {"model": endpoint.model_name, "config": endpoint.endpoint_config_name}
            for model, endpoint in endpoints.items()
        },
    }

    if cfg.monitoring.enabled:
        monitoring = DriftMonitoring(
            "monitoring",
            DriftMonitoringArgs(
                **common,
                account_id=account_id,
                settings=cfg.monitoring,
                endpoints=[
                    MonitoredEndpoint(
                        model=model,
                        endpoint_name=endpoint.endpoint_name,
                        health_alarm_names=endpoint.alarm_names,
                        settings=cfg.models[model],
                    )
                    for model, endpoint in endpoints.items()
                ],
                registry_bucket=registry.bucket_name,
                registry_bucket_arn=registry.bucket_arn,
                registry_key_arn=registry.key_arn,
            ),
        )
        exported[outputs.ALERT_TOPIC_ARN] = monitoring.topic_arn
        exported[outputs.DASHBOARD_NAME] = monitoring.dashboard_name

    if cfg.sandbox.enabled:
        sandbox = SandboxVM(
            "sandbox",
            SandboxVMArgs(
                **common,
                account_id=account_id,
                settings=cfg.sandbox,
                registry_bucket=registry.bucket_name,
                registry_bucket_arn=registry.bucket_arn,
                registry_key_arn=registry.key_arn,
                object_lock=cfg.registry.object_lock is not None,
            ),
        )
        exported[outputs.SANDBOX_INSTANCE_ID] = sandbox.instance_id
        exported[outputs.SANDBOX_ANALYST_POLICY_ARN] = sandbox.analyst_policy_arn
        exported[outputs.SANDBOX_SESSION_DOCUMENT] = sandbox.session_document_name

    return exported


def bound_roles(account_id: pulumi.Input[str], policy_name: str, path: str) -> None:
    """Give every IAM role declared from here on the stage's boundary `policy_name`, and every identity its `path`.

    The bootstrap stack's deploy role may create or change a role only when it carries this boundary, and may change
    only identities under the stage's path, so neither the deploy role nor any role it passes to SageMaker, Lambda,
    Scheduler or EC2 can hold more than the boundary allows, and no tag it sets reaches another identity. One stack
    transformation covers every component, present and future.
    """
    boundary = pulumi.Output.from_input(account_id).apply(
        lambda account: f"arn:aws:iam::{account}:policy/{policy_name}"
    )
    pathed = {"aws:iam/role:Role", "aws:iam/policy:Policy", "aws:iam/instanceProfile:InstanceProfile"}

    def transform(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        if args.type_ not in pathed:
            return None
        props = {**args.props, "path": path}
        if args.type_ == "aws:iam/role:Role":
            props["permissions_boundary"] = boundary
        return pulumi.ResourceTransformationResult(props, args.opts)

    pulumi.runtime.register_stack_transformation(transform)


def raw_config_from_engine() -> dict[str, Any]:
    """All config the engine passed this run, structured values decoded from their JSON text."""
    from pulumi.runtime import config as runtime_config  # noqa: PLC0415 - engine internals, only under the engine

    raw: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    structured = {f"{CONFIG_NAMESPACE}:{key}" for key in STRUCTURED_KEYS}
    return {
        key: json.loads(value) if key in structured and isinstance(value, str) else value for key, value in raw.items()
    }


def main() -> None:
    """Entry point under the Pulumi engine: validate config first, then declare and export."""
    stack = pulumi.get_stack()
    try:
        cfg = load_stack_config(
            raw_config_from_engine(), project=pulumi.get_project(), stage=stack, source=f"stacks/Pulumi.{stack}.yaml"
        )
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    for name, value in build(cfg).items():
        pulumi.export(name, value)
