"""SandboxVM: the analyst's private, SSM-only VM, stopped every evening."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from mlinfra_infra.config import SandboxSettings

from .common import TYPE_PREFIX


@dataclass
class SandboxVMArgs:
    """The sandbox settings and the registry the analyst works against."""

    project: str
    stage: str
    owner: str
    region: str
    account_id: pulumi.Input[str]
    settings: SandboxSettings
    registry_bucket: pulumi.Input[str]
    registry_bucket_arn: pulumi.Input[str]
    registry_key_arn: pulumi.Input[str]


class SandboxVM(pulumi.ComponentResource):
    """STUB (being written)."""

    instance_id: pulumi.Output[str]

    def __init__(self, name: str, args: SandboxVMArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:SandboxVM", name, None, opts)
        self.instance_id = pulumi.Output.from_input("")
        self.register_outputs({"instanceId": self.instance_id})
