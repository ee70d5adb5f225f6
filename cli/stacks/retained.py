"""Clean-up of the SageMaker Models and EndpointConfigurations a stage's applies left behind.

The program declares them with `retain_on_delete`: when a new pin replaces them, Pulumi forgets the old ones but
leaves them in the account. An automatically rolled-back endpoint keeps running on the old pair (SageMaker lets a
config in use be deleted, and then scale-out and instance recovery have nothing to launch), so deleting them is
this module's job, after a successful apply, and only for those no endpoint references.

Kept: every config an endpoint of the stage runs or is deploying (DescribeEndpoint: EndpointConfigName and the
pending deployment's), every config the stack declares now (its outputs), and every model those configs name.
Deleted: the rest of the stage's own (named `<project>-<stage>-<model>-c-<hex>` / `-m-<hex>`). Nothing is deleted
while an endpoint of the stage is being created, updated or rolled back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

SETTLED = {"InService", "Failed", "OutOfService"}


@dataclass
class CleanUp:
    """What a clean-up kept and deleted, and why it did nothing (if it did nothing)."""

    deleted_configs: list[str] = field(default_factory=list)
    deleted_models: list[str] = field(default_factory=list)
    kept_configs: list[str] = field(default_factory=list)
    kept_models: list[str] = field(default_factory=list)
    skipped: str = ""

    def lines(self) -> list[str]:
        if self.skipped:
            return [f"retained SageMaker models and configs: not cleaned up ({self.skipped})"]
        deleted = self.deleted_configs + self.deleted_models
        if not deleted:
            return []
        return [f"deleted retained SageMaker resource no endpoint references: {name}" for name in deleted]


def _pages(client: Any, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
    return [item for page in client.get_paginator(operation).paginate(**params) for item in page.get(key, [])]


def clean_up(sagemaker: Any, project: str, stage: str, declared: set[str] | None = None) -> CleanUp:
    """Delete the stage's retained Models and EndpointConfigurations that nothing references (see the module doc)."""
    prefix = f"{project}-{stage}-"
    ours = re.compile(rf"^{re.escape(prefix)}[a-z0-9-]+-(?P<kind>[mc])-[0-9a-f]{{7}}$")
    result = CleanUp()
    endpoints = _pages(sagemaker, "list_endpoints", "Endpoints", NameContains=prefix)
    keep_configs = set(declared or ())
    for summary in endpoints:
        name = str(summary["EndpointName"])
        if not name.startswith(prefix):
            continue
        described = sagemaker.describe_endpoint(EndpointName=name)
        status = str(described.get("EndpointStatus", ""))
        if status not in SETTLED:
            result.skipped = f"endpoint {name} is {status}"
            return result
        keep_configs.add(str(described["EndpointConfigName"]))
        pending = described.get("PendingDeploymentSummary") or {}
        if pending.get("EndpointConfigName"):
            keep_configs.add(str(pending["EndpointConfigName"]))
    configs = [str(c["EndpointConfigName"]) for c in
               _pages(sagemaker, "list_endpoint_configs", "EndpointConfigs", NameContains=prefix)]  # fmt: skip
    keep_models = set(declared or ())
    for config in configs:
        if config in keep_configs:
            described = sagemaker.describe_endpoint_config(EndpointConfigName=config)
            keep_models |= {str(v["ModelName"]) for v in described.get("ProductionVariants", [])}
    for config in configs:
        match = ours.match(config)
        if match is None or match["kind"] != "c" or config in keep_configs:
            result.kept_configs.append(config)
            continue
        sagemaker.delete_endpoint_config(EndpointConfigName=config)
        result.deleted_configs.append(config)
    for summary in _pages(sagemaker, "list_models", "Models", NameContains=prefix):
        model = str(summary["ModelName"])
        match = ours.match(model)
        if match is None or match["kind"] != "m" or model in keep_models:
            result.kept_models.append(model)
            continue
        sagemaker.delete_model(ModelName=model)
        result.deleted_models.append(model)
    return result


def declared_names(stack_outputs: dict[str, Any]) -> set[str]:
    """The model and config names the stack declares now, from its `endpointResources` output."""
    from mlinfra_infra import outputs

    declared = stack_outputs.get(outputs.ENDPOINT_RESOURCES) or {}
    return {str(name) for entry in declared.values() if isinstance(entry, dict) for name in entry.values() if name}


def after_apply(project: Any, config: Any, stack_outputs: dict[str, Any]) -> CleanUp:
    """`mlinfra up`'s clean-up after a successful apply, through the stage's AWS access."""
    from mlinfra.aws import StageAws, aws_errors

    with aws_errors(f"cleaning up retained SageMaker models and configs of {config.stage}"):
        sagemaker = StageAws(config, project.root).client("sagemaker")
        return clean_up(sagemaker, config.project, config.stage, declared_names(stack_outputs))
