"""Publishing a drift report to CloudWatch: the metrics the DriftMonitoring alarms watch.

Puts, in namespace metrics.NAMESPACE: MaxPSI and ScoredRows and MalformedRecords by Stage and Model, FeaturePSI
by Stage, Model and Feature (one custom metric per feature), and PredictionPSI by Stage and Model when the report
scored prediction drift (the largest PSI over the model's outputs; not part of MaxPSI, which stays the inputs').
A report with zero rows puts nothing, so an empty window can never look like "no drift" (the drift job then puts
ScoredRows = 0, the heartbeat its drift-silent alarm counts, so a quiet endpoint is not a silent job).
"""

from __future__ import annotations

from typing import Any

from . import metrics
from .report import DriftReport


def datums(report: DriftReport, *, stage: str, model: str) -> list[dict[str, Any]]:
    """The PutMetricData datums of a report (empty when it scored no rows)."""
    if not report.rows or report.max_psi is None:
        return []
    base = [{"Name": metrics.STAGE_DIMENSION, "Value": stage}, {"Name": metrics.MODEL_DIMENSION, "Value": model}]
    out: list[dict[str, Any]] = [
        {"MetricName": metrics.MAX_PSI, "Dimensions": base, "Value": report.max_psi, "Unit": "None"},
        {"MetricName": metrics.ROWS, "Dimensions": base, "Value": float(report.rows), "Unit": "Count"},
        {
            "MetricName": metrics.MALFORMED,
            "Dimensions": base,
            "Value": float(sum(report.malformed.values())),
            "Unit": "Count",
        },
    ]
    predictions = report.predictions
    if predictions is not None and predictions.status == "scored" and predictions.max_psi is not None:
        out.append(
            {"MetricName": metrics.PREDICTION_PSI, "Dimensions": base, "Value": predictions.max_psi, "Unit": "None"}
        )
    for feature in report.features:
        if feature.psi is None:
            continue
        dimensions = [*base, {"Name": metrics.FEATURE_DIMENSION, "Value": feature.name[:1024]}]
        out.append({"MetricName": metrics.FEATURE_PSI, "Dimensions": dimensions, "Value": feature.psi, "Unit": "None"})
    return out


def publish(cloudwatch_client: Any, report: DriftReport, *, stage: str, model: str) -> int:
    """Put the report's metrics; the number of datums put (0 when the report scored no rows)."""
    data = datums(report, stage=stage, model=model)
    for start in range(0, len(data), metrics.MAX_DATUMS_PER_CALL):
        cloudwatch_client.put_metric_data(
            Namespace=metrics.NAMESPACE, MetricData=data[start : start + metrics.MAX_DATUMS_PER_CALL]
        )
    return len(data)
