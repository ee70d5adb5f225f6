"""What the scheduled drift job is told to do, and what it remembers between runs (the registry's schema).

The Pulumi program writes a `JobSpec` as the input of the stage's EventBridge Scheduler schedule; the Lambda handler
(`mlinfra_drift.job`) reads it from its event. Each monitored model's `Checkpoint` lives in the registry at
`monitoring/<model>/checkpoint.json`. Both are plain pydantic models with a schema version, importable without numpy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

CHECKPOINT_NAME = "checkpoint.json"
REPORTS_DIR = "reports"


class _Record(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ModelJob(_Record):
    """One monitored model: the version it runs in the stage, where its capture and baseline are, its threshold."""

    model: str
    version: Annotated[int, Field(ge=1)]
    capture_prefix: str  # capture/<model>/<endpoint>/<variant>/ (SageMaker adds yyyy/mm/dd/hh/<file>.jsonl)
    baseline_key: str  # models/<model>/versions/<n>/baseline.json
    monitoring_prefix: str  # monitoring/<model>/: checkpoint and reports
    drift_psi: Annotated[float, Field(gt=0)]  # the stage's alarms.driftPsi for this model
    drift_js: Annotated[float, Field(gt=0, le=1)] | None = None  # alarms.driftJs (optional verdict)
    drift_ks_pvalue: Annotated[float, Field(gt=0, lt=1)] | None = None  # alarms.driftKsPvalue (optional verdict)
    # alarms.driftMinRows: a run that scored fewer rows publishes no drift score (only that it ran).
    drift_min_rows: Annotated[int, Field(ge=1)] = 1

    @property
    def checkpoint_key(self) -> str:
        """The model's checkpoint object."""
        return f"{self.monitoring_prefix}{CHECKPOINT_NAME}"


class JobSpec(_Record):
    """Everything one run needs: the stage, its registry bucket, the schedule period and the monitored models."""

    schema_version: Literal[1] = 1
    stage: str
    bucket: str
    period_seconds: Annotated[int, Field(ge=60)]
    # Capture files younger than this are left for the next run: SageMaker uploads a file a little after naming it,
    # and several instances upload concurrently, so only objects older than this are sure to be listed complete.
    settle_seconds: Annotated[int, Field(ge=0, le=3600)] = 300
    # The first run of a model (no checkpoint) scores this far back; later runs resume from their checkpoint.
    first_lookback_seconds: Annotated[int, Field(ge=60)] = 3600
    # A run reads at most this much history (a job that was off for a week does not try to read the whole week).
    max_lookback_seconds: Annotated[int, Field(ge=60)] = 86_400
    models: list[ModelJob]


class Checkpoint(_Record):
    """What a model's drift job has read: every capture object last modified before `watermark` was scored once."""

    schema_version: Literal[1] = 1
    model: str
    version: int  # the model version the last run compared against
    watermark: datetime
    updated: datetime
    files: int = 0  # capture files scored by the last run
    rows: int = 0  # rows scored by the last run
    report_key: str | None = None  # the last run's JSON report
