"""The drift report: what `mlinfra drift --json` prints and the drift job stores, and its HTML page.

The JSON has exactly these keys: `model`, `stage`, `version`, `window` ({`from`, `to`}, ISO 8601 UTC), `rows`
(data rows scored, every row of a multi-row request counted), `malformed` (count per reason, see
mlinfra_drift.records.REASONS), `maxPsi` (null when no rows), and `features`, sorted by drift (PSI, highest first):
`name`, `psi`, `ks`, `ksPvalue`, `js`, `missingRate`, `outOfRangeRate`, `drifted`. For a categorical feature
`ks`/`ksPvalue` are null and `outOfRangeRate` is the share of values the baseline never saw (unseen categories).
Statistics that cannot be computed (no rows, no values on one side) are null. `predictions` is prediction drift:
`status` (`scored`; `no_baseline` when the version's baseline has no outputs; `no_outputs` when the capture holds
none), `note` (why it was not scored), `rows` (output entries scored), `records` (capture records `with`, `without`
or with an `unreadable` output), `maxPsi`, `drifted`, and `outputs`, scored like features (`prediction`,
`probability of <class>`) plus `measure`, `baselineValue`, `currentValue`: the share of the class that moved most,
or the mean. What the HTML page needs besides (bins, thresholds, files read) is kept on the objects but not in the
JSON.
"""

from __future__ import annotations

import math
from datetime import datetime
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from .capture import utc

TEMPLATE_PACKAGE = "mlinfra_templates.reports"
TEMPLATE_NAME = "drift.html.j2"


class Thresholds(BaseModel):
    """When a feature counts as drifted: PSI above `psi`; optionally JS above `js` or KS p-value below `ks_pvalue`."""

    model_config = ConfigDict(frozen=True)

    psi: float = Field(default=0.2, gt=0)
    js: float | None = Field(default=None, gt=0, le=1)
    ks_pvalue: float | None = Field(default=None, gt=0, lt=1)


class Window(BaseModel):
    """The time window scored: [from, to)."""

    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")

    @field_serializer("start", "end")
    def _iso(self, value: datetime) -> str:
        return utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


class Bin(BaseModel):
    """One fixed bin of a feature: its label and the baseline's and the window's share of rows in it."""

    label: str
    baseline: float
    current: float


class FeatureScore(BaseModel):
    """The scores of one feature over the window."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    psi: float | None
    ks: float | None = None
    ks_pvalue: float | None = Field(default=None, alias="ksPvalue")
    js: float | None = None
    missing_rate: float | None = Field(default=None, alias="missingRate")
    out_of_range_rate: float | None = Field(default=None, alias="outOfRangeRate")
    drifted: bool = False
    # For the table and the HTML page only, not in the JSON:
    kind: Literal["numeric", "categorical"] = Field(default="numeric", exclude=True)
    ks_tolerance: float | None = Field(default=None, exclude=True)
    bins: list[Bin] = Field(default_factory=list, exclude=True)
    values: int = Field(default=0, exclude=True)  # non-missing values in the window


class OutputScore(FeatureScore):
    """The scores of one of the model's outputs, and the number an analyst reads: a class's share, or the mean."""

    measure: str | None = None  # "share of class 1", "mean prediction", "mean probability of 1"
    baseline_value: float | None = Field(default=None, alias="baselineValue")
    current_value: float | None = Field(default=None, alias="currentValue")

    def change(self) -> str:
        """`share of class 1 0.37 → 0.62, PSI 0.41`."""
        moved = (
            f"{self.measure} {self.baseline_value:.3g} → {self.current_value:.3g}, "
            if self.measure and self.baseline_value is not None and self.current_value is not None
            else ""
        )
        psi = f"PSI {self.psi:.2f}" if self.psi is not None else "PSI -"
        return f"{moved}{psi}" if moved else f"{self.name} {psi}"


class PredictionDrift(BaseModel):
    """Prediction drift: the capture's outputs against the version's prediction baseline, or why not scored."""

    model_config = ConfigDict(populate_by_name=True)

    status: Literal["scored", "no_baseline", "no_outputs"]
    note: str | None = None
    rows: int = 0
    records: dict[str, int] = Field(default_factory=dict)
    max_psi: float | None = Field(default=None, alias="maxPsi")
    drifted: bool = False
    outputs: list[OutputScore] = Field(default_factory=list)

    def sentence(self) -> str:
        """One line for the verdict: what drifted and by how much, that nothing did, or the note."""
        if self.status != "scored":
            return self.note or ""
        moved = [o for o in self.outputs if o.drifted]
        if moved:
            return "Predictions drifted: " + "; ".join(o.change() for o in moved) + "."
        top = max(self.outputs, key=lambda o: o.psi if o.psi is not None else -1.0, default=None)
        return f"Predictions within thresholds ({top.change()})." if top is not None else ""


class DriftReport(BaseModel):
    """One drift run: a model's captured traffic in a window against a version's baseline."""

    model_config = ConfigDict(populate_by_name=True)

    model: str
    stage: str
    version: int | None
    window: Window
    rows: int
    malformed: dict[str, int]
    max_psi: float | None = Field(alias="maxPsi")
    features: list[FeatureScore]
    predictions: PredictionDrift | None = None
    # For the table and the HTML page only, not in the JSON:
    thresholds: Thresholds = Field(default_factory=Thresholds, exclude=True)
    files: int = Field(default=0, exclude=True)
    outside_window: int = Field(default=0, exclude=True)
    refused_widths: dict[int, int] = Field(default_factory=dict, exclude=True)  # row width -> rows refused for it
    width: int = Field(default=0, exclude=True)  # the baseline's number of features
    source: str = Field(default="", exclude=True)
    workers: int = Field(default=1, exclude=True)  # processes that scored the files
    worker_peak_rss: int = Field(default=0, exclude=True)  # the largest worker process's peak RSS, bytes (Linux)

    @property
    def drifted(self) -> list[FeatureScore]:
        """The features over their threshold."""
        return [feature for feature in self.features if feature.drifted]

    def to_json_dict(self) -> dict[str, Any]:
        """The `--json` object."""
        return self.model_dump(mode="json", by_alias=True)

    def html(self) -> str:
        """A self-contained HTML page (inline SVG, no network assets) from model_templates/reports/drift.html.j2."""
        import jinja2

        template_text = resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")
        environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        environment.filters["num"] = _number
        environment.filters["pct"] = _percent
        outputs = self.predictions.outputs if self.predictions is not None else []
        return environment.from_string(template_text).render(
            report=self, charts=[_chart(f) for f in self.features], output_charts=[_chart(o) for o in outputs]
        )


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%"


CHART_WIDTH = 640
CHART_HEIGHT = 160
CHART_PAD = 24
LABEL_SPACE = 20  # room under the bars for two lines of bin labels


def _chart(feature: FeatureScore) -> dict[str, Any]:
    """Bar geometry of one feature's baseline-vs-window chart, for the template's inline SVG."""
    bins = feature.bins
    top = max([b.baseline for b in bins] + [b.current for b in bins] + [1e-9])
    slot = (CHART_WIDTH - 2 * CHART_PAD) / max(len(bins), 1)
    bar = max(slot / 2 - 2, 1.0)
    plot = CHART_HEIGHT - 2 * CHART_PAD
    bars = []
    labels = []
    for index, item in enumerate(bins):
        x = CHART_PAD + index * slot
        text = item.label if len(item.label) <= 18 else item.label[:17] + "…"
        # Neighbouring labels alternate between two lines so that interval labels do not overlap.
        label_y = CHART_HEIGHT - CHART_PAD + 14 + 12 * (index % 2)
        labels.append({"x": round(x + slot / 2, 1), "y": label_y, "text": text})
        for offset, kind, share in ((0.0, "baseline", item.baseline), (bar + 1, "current", item.current)):
            height = plot * share / top
            bars.append(
                {
                    "x": round(x + offset, 1),
                    "y": round(CHART_PAD + plot - height, 1),
                    "width": round(bar, 1),
                    "height": round(height, 1),
                    "kind": kind,
                    "title": f"{item.label}: {kind} {100 * share:.1f}%",
                }
            )
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT + LABEL_SPACE,
        "bars": bars,
        "labels": labels,
        "baseline_y": CHART_HEIGHT - CHART_PAD,
    }
