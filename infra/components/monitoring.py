"""DriftMonitoring: a stage's alert topic, drift alarms, Model Monitor schedules and dashboard."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from mlinfra_infra import naming
from mlinfra_infra.config import ModelConfig, MonitoringSettings

from .common import TYPE_PREFIX


@dataclass
class MonitoredEndpoint:
    """An endpoint DriftMonitoring watches: its model, name, health alarms and settings."""

    model: str
    endpoint_name: pulumi.Input[str]
    health_alarm_names: pulumi.Input[list[str]]
    settings: ModelConfig


@dataclass
class DriftMonitoringArgs:
    """The stage's monitoring settings and the endpoints to watch."""

    project: str
    stage: str
    owner: str
    region: str
    account_id: pulumi.Input[str]
    settings: MonitoringSettings
    endpoints: Sequence[MonitoredEndpoint]
    registry_bucket: pulumi.Input[str]
    registry_bucket_arn: pulumi.Input[str]
    registry_key_arn: pulumi.Input[str]


class DriftMonitoring(pulumi.ComponentResource):
    """STUB (being written)."""

    topic_arn: pulumi.Output[str]
    dashboard_name: pulumi.Output[str]

    def __init__(self, name: str, args: DriftMonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:DriftMonitoring", name, None, opts)
        self.topic_arn = pulumi.Output.from_input("")
        self.dashboard_name = pulumi.Output.from_input(naming.dashboard(args.project, args.stage))
        self.register_outputs({"topicArn": self.topic_arn})
