"""Baselines: what a model's training data looked like, summarized finely enough to score drift against it.

A baseline (`baseline.json`, stored with each registered version) holds the sample's `header` (feature names in
column order: headerless CSV captures map by position) and, per feature:

- numeric features: the summary statistics of schema 1 (mean, std, min, max, deciles, 11 `bin_edges`) and, since
  schema 2, a `grid`: up to GRID_RESOLUTION + 1 sorted points of the sample with the exact number of values at or
  below each point (`le`) and exactly at it (`eq`). A sample with at most GRID_EXACT_LIMIT distinct values keeps
  them all, so its empirical distribution function is stored exactly; otherwise the points are the sample's
  quantiles at k/GRID_RESOLUTION, so no more than 1/GRID_RESOLUTION of the sample lies strictly between two
  neighbouring points. `tolerance` records that largest gap (0 when exact): it bounds the error of the
  Kolmogorov-Smirnov statistic computed against the grid (see mlinfra_drift.stats). `psi_edges` are the interior
  edges of the fixed bins PSI and Jensen-Shannon use: the distinct deciles, bins closed on the right.
- categorical features: `distinct`, the `top` 20 values (schema 1) and, since schema 2, `categories`: the count of
  each value, all of them up to CATEGORY_LIMIT (`categories_complete` says whether every value is there).

Optionally (schema 2, `outputs`), the prediction baseline: what the model answered for the sample, summarized by
the same builders as the inputs (`outputs_summary`): `prediction` (the predicted label, categorical, for a
classifier; the number, numeric, for a regressor or a model that answers probabilities by default) and, for a model
that gives class probabilities, `probability of <class>` (numeric; the positive class only for two classes). The
drift engine scores the capture's endpointOutput against it (prediction drift). It lives inside baseline.json, so
it is stored, attached, audited and read exactly as the baseline is; a baseline without it scores inputs only.

Schema 1 baselines (deciles only) stay readable: their grid is the 11 decile edges, so KS against them is only
good to 0.1, their PSI assumes exact deciles and their column order is the stored key order; re-attach a
baseline (`mlinfra baseline M --version N DATA`) to get schema 2. This module does the computation; reading CSV
or Parquet files is the CLI's (mlinfra.models.inputs).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_V1 = "mlinfra.baseline/1"
SCHEMA = "mlinfra.baseline/2"
SCHEMAS = (SCHEMA_V1, SCHEMA)
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
QUANTILE_BINS = 10
GRID_RESOLUTION = 1000  # quantile points: KS against the grid is within 1/1000 of ks_2samp on the raw sample
GRID_EXACT_LIMIT = 2000  # up to this many distinct values, the grid is the whole empirical distribution
TOP_CATEGORIES = 20
CATEGORY_LIMIT = 1000
# Cell values read as missing (compared stripped and case-insensitively), as pandas' CSV reader does by default.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "#n/a"})


class Grid(BaseModel):
    """A numeric feature's empirical distribution function at sorted points: counts at or below, and exactly at."""

    model_config = ConfigDict(extra="forbid")

    x: list[float]
    le: list[int]
    eq: list[int]
    tolerance: float = Field(ge=0, le=1)  # the largest share of the sample strictly between two neighbouring points

    def arrays(self) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
        """The points and counts as numpy arrays."""
        return np.asarray(self.x, dtype=np.float64), np.asarray(self.le, dtype=np.int64), np.asarray(self.eq, np.int64)


class TopCategory(BaseModel):
    """One of the most frequent values of a categorical feature."""

    value: str
    count: int
    frequency: float


class Feature(BaseModel):
    """One column of the sample: schema 1 fields, plus the grid or the category counts of schema 2."""

    model_config = ConfigDict(extra="allow")

    type: Literal["numeric", "categorical"]
    count: int = Field(ge=0)
    missing: int = Field(ge=0)
    missing_rate: float
    # numeric
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    quantiles: dict[str, float] | None = None
    bin_edges: list[float] | None = None
    grid: Grid | None = None
    psi_edges: list[float] | None = None
    # categorical
    distinct: int | None = None
    top: list[TopCategory] | None = None
    other_frequency: float | None = None
    categories: dict[str, int] | None = None
    categories_complete: bool | None = None

    def numeric_grid(self) -> Grid:
        """The grid to score against: stored (schema 2) or built from the 11 decile edges (schema 1)."""
        if self.grid is not None:
            return self.grid
        edges = self.bin_edges or []
        if not edges:
            return Grid(x=[], le=[], eq=[], tolerance=1.0)
        # Schema 1 knows only that about k/10 of the values lie at or below the k-th edge.
        x = sorted(set(edges))
        le = [round(self.count * max(k for k, e in enumerate(edges) if e == point) / QUANTILE_BINS) for point in x]
        return Grid(x=x, le=le, eq=[0] * len(x), tolerance=1.0 / QUANTILE_BINS)

    def bin_edges_for_psi(self) -> list[float]:
        """Interior edges of the PSI/JS bins, (-inf, e1], (e1, e2], ..., (ek, inf)."""
        if self.psi_edges is not None:
            return self.psi_edges
        return sorted(set((self.bin_edges or [])[1:-1])) or sorted(set(self.bin_edges or []))

    def category_counts(self) -> tuple[dict[str, int], int]:
        """Known values with their counts, and how many values fall outside them (schema 1: beyond the top 20)."""
        if self.categories is not None:
            return self.categories, self.count - sum(self.categories.values())
        known = {item.value: item.count for item in self.top or []}
        return known, self.count - sum(known.values())


PREDICTION = "prediction"


def probability_name(label: str) -> str:
    """The output column of one class's probability."""
    return f"probability of {label}"


class Outputs(BaseModel):
    """The prediction baseline: one Feature per output of the model on the baseline sample (see the module doc)."""

    model_config = ConfigDict(extra="allow")

    rows: int = Field(ge=0)  # sample rows predicted
    source: str = ""  # how the outputs were obtained
    classes: list[str] | None = None  # the probability columns' classes, in the model's order (None: no probabilities)
    columns: dict[str, Feature]

    def probability_columns(self) -> list[str | None]:
        """Per probability column (class index): the output column it is scored as, or None (not kept)."""
        classes = self.classes or []
        return [probability_name(c) if probability_name(c) in self.columns else None for c in classes]


class Baseline(BaseModel):
    """A version's baseline: the sample it summarizes and one Feature per column, in the sample's column order."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_: Literal["mlinfra.baseline/1", "mlinfra.baseline/2"] = Field(alias="schema")
    source: str = ""
    format: str = ""
    rows: int = Field(ge=0)
    truncated: bool = False
    note: str | None = None
    # The sample's header, in order (schema 2): JSON objects do not keep key order once stored with sorted keys.
    header: list[str] | None = None
    columns: dict[str, Feature]
    outputs: Outputs | None = None  # the prediction baseline, when the model's outputs on the sample are known

    @model_validator(mode="after")
    def _header_names_columns(self) -> Baseline:
        if self.header is not None and sorted(self.header) != sorted(self.columns):
            raise ValueError("header must name each column exactly once")
        return self

    @property
    def features(self) -> list[str]:
        """Feature names in the order of the sample's header: how headerless CSV captures map by position.

        Schema 1 did not record the header, so its order is the stored key order (alphabetical when written by
        `mlinfra register`): `ordered` is False then.
        """
        return list(self.header) if self.header is not None else list(self.columns)

    @property
    def ordered(self) -> bool:
        """Whether the header order is known (schema 2)."""
        return self.header is not None

    @classmethod
    def from_json(cls, text: str | bytes) -> Baseline:
        """A baseline from its JSON (schema 1 or 2); pydantic's ValidationError names what is wrong."""
        return cls.model_validate_json(text)

    def to_json(self) -> str:
        """Strict JSON, keys as stored."""
        return json.dumps(self.model_dump(by_alias=True, exclude_none=True), allow_nan=False)


# ---------------------------------------------------------------------------------------------------------------
# Computing a baseline from a sample


def _grid(values: NDArray[np.float64]) -> Grid:
    """The grid of a sorted, finite, non-empty sample."""
    unique, counts = np.unique(values, return_counts=True)
    if unique.size <= GRID_EXACT_LIMIT:
        le = np.cumsum(counts)
        return Grid(x=unique.tolist(), le=le.tolist(), eq=counts.tolist(), tolerance=0.0)
    n = values.size
    # Quantiles at k/R by the inverted empirical distribution function: always sample values, never interpolated.
    positions = np.ceil(np.arange(0, GRID_RESOLUTION + 1) * (n / GRID_RESOLUTION)).astype(np.int64) - 1
    points = np.unique(values[np.clip(positions, 0, n - 1)])
    le = np.searchsorted(values, points, side="right")
    below = np.searchsorted(values, points, side="left")
    between = below[1:] - le[:-1]  # values strictly between neighbouring points
    tolerance = float(between.max()) / n if between.size else 0.0
    return Grid(x=points.tolist(), le=le.tolist(), eq=(le - below).tolist(), tolerance=tolerance)


def _deciles(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """The 0.1..0.9 quantiles as sample values (inverted empirical distribution function)."""
    n = values.size
    positions = np.ceil(np.asarray(QUANTILES) * n).astype(np.int64) - 1
    deciles: NDArray[np.float64] = values[np.clip(positions, 0, n - 1)]
    return deciles


def numeric_feature(values: NDArray[np.float64], rows: int) -> dict[str, Any]:
    """The baseline entry of a numeric column from its finite values (any order) and the sample's row count."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    count = int(values.size)
    if not count:
        return categorical_feature(Counter(), rows)
    edges = np.quantile(values, np.linspace(0.0, 1.0, QUANTILE_BINS + 1))
    return {
        "type": "numeric",
        "count": count,
        "missing": rows - count,
        "missing_rate": (rows - count) / rows if rows else 0.0,
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if count > 1 else 0.0,
        "min": float(values[0]),
        "max": float(values[-1]),
        "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)},
        "bin_edges": [float(v) for v in edges],
        "grid": _grid(values).model_dump(),
        "psi_edges": sorted({float(v) for v in _deciles(values)}),
    }


def category_value(raw: Any) -> str | None:
    """A cell as the category it counts as (None: missing): how baselines and scores name categorical values."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        text = "true" if raw else "false"
    elif isinstance(raw, float) and raw.is_integer():
        text = str(raw)
    else:
        text = str(raw).strip()
    return None if text.lower() in MISSING_TOKENS else text


def categorical_feature(counts: Counter[str], rows: int) -> dict[str, Any]:
    """The baseline entry of a categorical column from its value counts and the sample's row count."""
    count = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    top = ranked[:TOP_CATEGORIES]
    return {
        "type": "categorical",
        "count": count,
        "missing": rows - count,
        "missing_rate": (rows - count) / rows if rows else 0.0,
        "distinct": len(counts),
        "top": [{"value": value, "count": n, "frequency": n / count} for value, n in top],
        "other_frequency": (count - sum(n for _, n in top)) / count if count else 0.0,
        "categories": dict(ranked[:CATEGORY_LIMIT]),
        "categories_complete": len(ranked) <= CATEGORY_LIMIT,
    }


def summary(
    columns: dict[str, dict[str, Any]], *, rows: int, source: str, fmt: str, truncated: bool, max_rows: int
) -> dict[str, Any]:
    """The JSON-able baseline document (schema 2) from per-column entries in header order."""
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "source": source,
        "format": fmt,
        "rows": rows,
        "truncated": truncated,
        "header": list(columns),
        "columns": columns,
    }
    if truncated:
        out["note"] = f"summarizes the first {max_rows:,} rows only; the sample has more"
    Baseline.model_validate(out)  # what is written is always readable
    return out


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _class_order(labels: Counter[str], width: int) -> list[str]:
    """The classes of `width` probability columns, in the model's order.

    The predicted labels sorted as scikit-learn sorts `classes_` when there are as many of them, else the column
    numbers.
    """
    if len(labels) != width:
        return [str(index) for index in range(width)]
    numbers = {label: _as_float(label) for label in labels}
    if all(value is not None for value in numbers.values()):
        return sorted(labels, key=lambda label: numbers[label] or 0.0)
    return sorted(labels)


def outputs_summary(
    predictions: Sequence[Any], probabilities: Sequence[Sequence[Any]] | None = None, *, source: str
) -> dict[str, Any]:
    """The prediction baseline (a baseline's `outputs`) of a model's outputs on the sample, one per sample row.

    `predictions` as the endpoint answers them by default; `probabilities` (rows of class probabilities, as it
    answers `output=probabilities`) or None. Predictions are categorical (labels) when the model gives probabilities
    or any prediction is not a number, else numeric. Probabilities of one column per row are the prediction again
    (an XGBoost binary:logistic model answers probabilities by default) and are not kept twice.
    """
    rows = len(predictions)
    if not rows:
        raise ValueError("no predictions: a prediction baseline needs the model's outputs on at least one row")
    numbers = [_as_float(value) for value in predictions]
    width = len(probabilities[0]) if probabilities else 0
    if probabilities is not None and (len(probabilities) != rows or any(len(row) != width for row in probabilities)):
        raise ValueError("probabilities: one row of the same width per prediction")
    columns: dict[str, dict[str, Any]] = {}
    classes: list[str] | None = None
    if width > 1 or any(value is None for value in numbers):
        labels: Counter[str] = Counter()
        for value in predictions:
            label = category_value(value)
            if label is not None:
                labels[label] += 1
        columns[PREDICTION] = categorical_feature(labels, rows)
        if width > 1 and probabilities is not None:
            classes = _class_order(labels, width)
            kept = range(1, 2) if width == 2 else range(width)  # two classes: the positive one says it all
            for index in kept:
                values = np.asarray([_as_float(row[index]) for row in probabilities], dtype=np.float64)
                columns[probability_name(classes[index])] = numeric_feature(values[np.isfinite(values)], rows)
    else:
        values = np.asarray(numbers, dtype=np.float64)
        columns[PREDICTION] = numeric_feature(values[np.isfinite(values)], rows)
    out: dict[str, Any] = {"rows": rows, "source": source, "columns": columns}
    if classes is not None:
        out["classes"] = classes
    Outputs.model_validate(out)  # what is written is always readable
    return out
