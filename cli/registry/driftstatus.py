"""What `mlinfra status` shows of drift: the last MaxPSI published for a model, and its drift alarms' states.

The score is whatever the drift job (or `mlinfra drift --publish`) last put under the names the alarms watch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mlinfra_drift import metrics
from mlinfra_infra import naming

# How far back `status` looks for the last drift score: two daily runs.
LOOKBACK = timedelta(days=2)


def latest_drift(
    cloudwatch: Any, project: str, stage: str, model: str, alarms: dict[str, str | None], *, now: datetime | None = None
) -> dict[str, Any]:
    """`{"maxPsi", "time", "alarm", "silentAlarm"}`: the newest MaxPSI datapoint (None when none in LOOKBACK)."""
    end = now or datetime.now(UTC)
    response = cloudwatch.get_metric_statistics(
        Namespace=metrics.NAMESPACE,
        MetricName=metrics.MAX_PSI,
        Dimensions=[
            {"Name": metrics.STAGE_DIMENSION, "Value": stage},
            {"Name": metrics.MODEL_DIMENSION, "Value": model},
        ],
        StartTime=end - LOOKBACK,
        EndTime=end + timedelta(minutes=1),
        Period=3600,
        Statistics=["Maximum"],
    )
    points = sorted(response.get("Datapoints", []), key=lambda p: p["Timestamp"])
    latest = points[-1] if points else None
    return {
        "maxPsi": latest["Maximum"] if latest else None,
        "time": latest["Timestamp"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if latest else None,
        "alarm": alarms.get(naming.alarm(project, stage, model, naming.ALARM_DRIFT)),
        "silentAlarm": alarms.get(naming.alarm(project, stage, model, naming.ALARM_DRIFT_SILENT)),
    }


def describe(drift: dict[str, Any] | None) -> str:
    """One cell for the status table: `0.31 (ALARM)`, `- (OK)`, or `-`."""
    if not drift:
        return "-"
    score = f"{drift['maxPsi']:.3f}" if drift.get("maxPsi") is not None else "-"
    state = drift.get("alarm")
    if drift.get("silentAlarm") == "ALARM":
        state = "job silent"
    return f"{score} ({state})" if state else score
