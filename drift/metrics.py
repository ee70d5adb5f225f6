"""The CloudWatch names drift is published under, shared by the publisher and the alarms that watch it.

The DriftMonitoring component's alarms and `mlinfra drift --publish` (and the scheduled drift job) both read these,
so the metric a job puts and the metric an alarm watches can never drift apart.
"""

from __future__ import annotations

NAMESPACE = "mlinfra/Drift"
MAX_PSI = "MaxPSI"  # the largest per-feature PSI of one run, dimensions Stage and Model
STAGE_DIMENSION = "Stage"
MODEL_DIMENSION = "Model"
FEATURE_DIMENSION = "Feature"
FEATURE_PSI = "FeaturePSI"  # one feature's PSI, dimensions Stage, Model and Feature
ROWS = "ScoredRows"  # data rows scored by one run, dimensions Stage and Model (a run with zero rows puts nothing)
PREDICTION_PSI = "PredictionPSI"  # the largest PSI over the model's outputs (prediction drift), Stage and Model
MALFORMED = "MalformedRecords"  # malformed capture records and rows of one run, dimensions Stage and Model
MAX_DATUMS_PER_CALL = 500  # PutMetricData takes up to 1,000 datums per request; stay well inside
