"""ModelEndpoint: one pinned model version served by SageMaker, with its role, alarms, rollback and autoscaling."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from mlinfra_infra import naming
from mlinfra_infra.config import ModelConfig

from .common import TYPE_PREFIX


@dataclass
class ModelEndpointArgs:
    """One model's pinned version in one stage, and the registry it reads from."""

    project: str
    stage: str
    owner: str
    region: str
    account_id: pulumi.Input[str]
    model: str
    settings: ModelConfig
    registry_bucket: pulumi.Input[str]
    registry_bucket_arn: pulumi.Input[str]
    registry_key_arn: pulumi.Input[str]


class ModelEndpoint(pulumi.ComponentResource):
    """STUB (being written)."""

    endpoint_name: pulumi.Output[str]
    alarm_names: pulumi.Output[list[str]]

    def __init__(self, name: str, args: ModelEndpointArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:ModelEndpoint", name, None, opts)
        self.endpoint_name = pulumi.Output.from_input(naming.endpoint(args.project, args.stage, args.model))
        self.alarm_names = pulumi.Output.from_input([])
        self.register_outputs({"endpointName": self.endpoint_name})
