"""Builders for drift tests: baselines from arrays, capture records in SageMaker's shape, reports from rows."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlinfra_drift.baseline import Baseline, categorical_feature, numeric_feature, summary
from mlinfra_drift.report import DriftReport, Thresholds
from mlinfra_drift.score import Scorer

START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
END = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def baseline_of(columns: dict[str, Sequence[Any]]) -> Baseline:
    """A schema-2 baseline of columns given as lists (None = missing); numeric when every value is a number."""
    rows = len(next(iter(columns.values())))
    entries: dict[str, dict[str, Any]] = {}
    for name, values in columns.items():
        present = [v for v in values if v is not None]
        if all(isinstance(v, int | float) for v in present):
            array = np.asarray(present, dtype=np.float64)
            entries[name] = numeric_feature(array[np.isfinite(array)], rows)
        else:
            entries[name] = categorical_feature(Counter(str(v) for v in present), rows)
    doc = summary(entries, rows=rows, source="test.csv", fmt="csv", truncated=False, max_rows=rows)
    return Baseline.from_json(json.dumps(doc, allow_nan=False))


def report_of(baseline: Baseline, rows: Sequence[Sequence[Any]], thresholds: Thresholds | None = None) -> DriftReport:
    """Score rows (cells by position) against a baseline."""
    scorer = Scorer(baseline)
    scorer.add_rows(rows)
    return scorer.report(
        model="churn", stage="staging", version=1, start=START, end=END, thresholds=thresholds or Thresholds()
    )


def record(
    data: str | bytes,
    *,
    encoding: str = "CSV",
    content_type: str = "text/csv",
    time: str = "2026-11-26T10:30:00Z",
) -> str:
    """One capture line as a SageMaker endpoint writes it (input and output)."""
    if encoding == "BASE64":
        raw = data.encode() if isinstance(data, str) else data
        data = base64.b64encode(raw).decode()
    assert isinstance(data, str)
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": content_type,
                    "mode": "INPUT",
                    "data": data,
                    "encoding": encoding,
                },
                "endpointOutput": {
                    "observedContentType": "text/csv; charset=utf-8",
                    "mode": "OUTPUT",
                    "data": "0.5",
                    "encoding": "CSV",
                },
            },
            "eventMetadata": {"eventId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "inferenceTime": time},
            "eventVersion": "0",
        },
        separators=(",", ":"),
    )
