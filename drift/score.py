"""Scoring a window of captured traffic against a baseline, file by file in bounded memory.

`Scorer` reads every capture file of a window once (mlinfra_drift.scoring.score drives it over a capture),
decodes its records (mlinfra_drift.records), and folds each feature's values into counts: per numeric feature the
counts on the baseline's grid, per categorical feature the counts of known values and of unseen ones. Memory is one
file plus those counts, whatever the window's size. The statistics are in mlinfra_drift.stats.

PSI and Jensen-Shannon use the baseline's fixed bins (its distinct deciles, or its known categories plus one bin
for everything else) and one more bin for missing values, so a feature that stops arriving drifts too.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import stats
from .baseline import MISSING_TOKENS, PREDICTION, Baseline, Feature, Outputs, category_value
from .capture import CaptureFile
from .records import NON_NUMERIC, Batch, Decoder, Row
from .report import Bin, DriftReport, FeatureScore, OutputScore, PredictionDrift, Thresholds, Window

UNSEEN_NAMES_KEPT = 1000  # distinct unseen categories tracked by name; beyond that only counted
_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f]")  # control characters other than the rows' line break


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class NumericCounts:
    """A numeric feature's window as counts on the baseline's grid."""

    def __init__(self, feature: Feature) -> None:
        grid = feature.numeric_grid()
        self.feature = feature
        self.x, self.base_le, self.base_eq = grid.arrays()
        self.tolerance = grid.tolerance
        self.below = np.zeros(self.x.size + 1, dtype=np.int64)  # bin j: values with j grid points below them
        self.at = np.zeros(self.x.size, dtype=np.int64)  # values exactly at a grid point
        self.missing = 0
        self.total = 0.0  # the sum of the finite values (their mean, for prediction drift's sentence)

    def state(self) -> tuple[Any, ...]:
        """The counts, to merge elsewhere (another process's share of the window)."""
        return self.below, self.at, self.missing, self.total

    def merge(self, state: tuple[Any, ...]) -> None:
        """Add counts taken with `state()` from a scorer of the same baseline."""
        below, at, missing, total = state
        self.below += below
        self.at += at
        self.missing += missing
        self.total += total

    def reset(self) -> None:
        """Forget the counts."""
        self.below = np.zeros_like(self.below)
        self.at = np.zeros_like(self.at)
        self.missing = 0
        self.total = 0.0

    def add(self, values: NDArray[np.float64]) -> None:
        """Fold a batch of values (NaN or infinite = missing) into the counts."""
        finite = np.isfinite(values)
        self.missing += int(values.size - np.count_nonzero(finite))
        if not self.x.size:
            return
        # Sorting the batch and placing the grid in it is several times faster than placing each value on the
        # grid (numpy's vectorised sort against a binary search per value), with identical counts.
        ordered = np.sort(values if finite.all() else values[finite])
        if not ordered.size:
            return
        self.total += float(ordered.sum())
        le = np.searchsorted(ordered, self.x, side="right")  # values <= x_j
        self.at += le - np.searchsorted(ordered, self.x, side="left")  # values == x_j
        # below[j]: values with exactly j grid points below them, i.e. in (x_{j-1}, x_j]; the last bin: above all.
        self.below += np.diff(le, prepend=0, append=ordered.size)

    def score(self, rows: int) -> FeatureScore:
        """The feature's scores (values: non-missing in the window)."""
        n = int(self.below.sum())
        cur_le = np.cumsum(self.below)[: self.x.size]  # values <= x_j  ==  values with at most j points below
        base_n = self.feature.count
        ks = (
            stats.ks_statistic(
                base_le=self.base_le, base_eq=self.base_eq, base_n=base_n, cur_le=cur_le, cur_eq=self.at, cur_n=n
            )
            if self.x.size
            else math.nan
        )
        # Below the minimum: no grid point below and not at the first one; above the maximum: every point below.
        out_of_range = int(self.below[0] - self.at[0] + self.below[-1]) if self.x.size else 0
        edges = self.feature.bin_edges_for_psi()
        positions = np.searchsorted(self.x, np.asarray(edges, dtype=np.float64), side="left")
        base_cum = np.concatenate([[0], self.base_le[positions], [base_n]]).astype(np.float64)
        cur_cum = np.concatenate([[0], cur_le[positions] if n else np.zeros(len(edges)), [n]]).astype(np.float64)
        labels = _interval_labels(edges)
        base_rows = base_n + self.feature.missing
        base_shares = [*np.diff(base_cum) / max(base_rows, 1), self.feature.missing / max(base_rows, 1)]
        cur_shares = [*np.diff(cur_cum) / max(rows, 1), self.missing / max(rows, 1)]
        return _finish(
            self.feature,
            rows=rows,
            missing=self.missing,
            values=n,
            labels=labels,
            base_shares=base_shares,
            cur_shares=cur_shares,
            ks=ks,
            outside=out_of_range,
            numeric=self,
        )


class CategoricalCounts:
    """A categorical feature's window as counts of the baseline's known values, and of the others."""

    def __init__(self, feature: Feature) -> None:
        self.feature = feature
        self.known, self.base_other = feature.category_counts()
        self.counts: Counter[str] = Counter()
        self.unseen: Counter[str] = Counter()
        self.unseen_total = 0
        self.missing = 0

    def state(self) -> tuple[Any, ...]:
        """The counts, to merge elsewhere (another process's share of the window)."""
        return self.counts, self.unseen, self.unseen_total, self.missing

    def merge(self, state: tuple[Any, ...]) -> None:
        """Add counts taken with `state()` from a scorer of the same baseline."""
        counts, unseen, unseen_total, missing = state
        self.counts.update(counts)
        for value, n in unseen.items():
            self._name_unseen(value, n)
        self.unseen_total += unseen_total
        self.missing += missing

    def reset(self) -> None:
        """Forget the counts."""
        self.counts, self.unseen, self.unseen_total, self.missing = Counter(), Counter(), 0, 0

    def add(self, cells: Sequence[Any]) -> None:
        """Fold a batch of cells (strings, numbers or None) into the counts."""
        for raw, n in Counter(cells).items():
            value = _category(raw)
            if value is None:
                self.missing += n
            elif value in self.known:
                self.counts[value] += n
            else:
                self.unseen_total += n
                self._name_unseen(value, n)

    def _name_unseen(self, value: str, n: int) -> None:
        """Count an unseen value by name, keeping at most UNSEEN_NAMES_KEPT names (the total counts them all)."""
        if value in self.unseen or len(self.unseen) < UNSEEN_NAMES_KEPT:
            self.unseen[value] += n

    def score(self, rows: int) -> FeatureScore:
        """The feature's scores."""
        n = sum(self.counts.values()) + self.unseen_total
        base_rows = self.feature.count + self.feature.missing
        labels = [*self.known, "(other)"]
        base_shares = [*(c / max(base_rows, 1) for c in self.known.values()), self.base_other / max(base_rows, 1)]
        cur_shares = [*(self.counts[v] / max(rows, 1) for v in self.known), self.unseen_total / max(rows, 1)]
        base_shares.append(self.feature.missing / max(base_rows, 1))
        cur_shares.append(self.missing / max(rows, 1))
        return _finish(
            self.feature,
            rows=rows,
            missing=self.missing,
            values=n,
            labels=labels,
            base_shares=base_shares,
            cur_shares=cur_shares,
            ks=None,
            outside=self.unseen_total,
        )


def _finish(
    feature: Feature,
    *,
    rows: int,
    missing: int,
    values: int,
    labels: list[str],
    base_shares: Sequence[float],
    cur_shares: Sequence[float],
    ks: float | None,
    outside: int,
    numeric: NumericCounts | None = None,
) -> FeatureScore:
    bins = [
        Bin(label=label, baseline=b, current=c)
        for label, b, c in zip([*labels, "(missing)"], base_shares, cur_shares, strict=True)
    ]
    if not rows:
        return FeatureScore(name="", psi=None, kind=feature.type, bins=bins)
    b = np.asarray(base_shares)
    c = np.asarray(cur_shares)
    has_ks = ks is not None and not math.isnan(ks)
    return FeatureScore(
        name="",
        psi=stats.psi(b, c),
        ks=ks if has_ks else None,
        ks_pvalue=stats.ks_pvalue(ks, feature.count, values) if has_ks and ks is not None else None,
        js=stats.js_distance(b, c),
        missing_rate=missing / rows,
        out_of_range_rate=outside / values if values else None,
        kind=feature.type,
        ks_tolerance=numeric.tolerance if numeric is not None else None,
        bins=bins,
        values=values,
    )


def _interval_labels(edges: Sequence[float]) -> list[str]:
    if not edges:
        return ["(all values)"]
    labels = [f"≤ {_fmt(edges[0])}"]
    labels += [f"({_fmt(low)}, {_fmt(high)}]" for low, high in itertools.pairwise(edges)]
    return [*labels, f"> {_fmt(edges[-1])}"]


_category = category_value


def _to_float(cell: Any) -> float | None:
    """A cell as a float (NaN when missing), or None when it is not a number."""
    if cell is None:
        return math.nan
    if isinstance(cell, bool) or not isinstance(cell, int | float | str):
        return None
    if isinstance(cell, str) and cell.strip().lower() in MISSING_TOKENS:
        return math.nan
    try:
        return float(cell)
    except ValueError:
        return None


def _numbers(cells: Sequence[Any]) -> tuple[NDArray[np.float64], NDArray[np.bool_] | None]:
    """The cells as floats (missing = NaN) and a mask of non-numeric cells (None when all are numeric)."""
    try:
        return np.asarray(cells, dtype=np.float64), None
    except (ValueError, TypeError):
        pass
    parsed = [_to_float(cell) for cell in cells]
    bad = np.fromiter((value is None for value in parsed), dtype=bool, count=len(parsed))
    values = np.fromiter((math.nan if v is None else v for v in parsed), dtype=np.float64, count=len(parsed))
    return values, bad if bad.any() else None


class PredictionCounts:
    """The window's outputs as counts against the prediction baseline: its `prediction` and probability columns.

    Scalar entries are predictions; a list entry of one value per class is a row of probabilities. Entries of
    another shape, and values a numeric output cannot take, are counted as unreadable and left out.
    """

    def __init__(self, outputs: Outputs) -> None:
        self.outputs = outputs
        self.columns: dict[str, NumericCounts | CategoricalCounts] = {
            name: NumericCounts(f) if f.type == "numeric" else CategoricalCounts(f)
            for name, f in outputs.columns.items()
        }
        self.probability_columns = outputs.probability_columns()
        self.rows: Counter[str] = Counter()  # entries folded in, per output column; "unreadable": refused

    def state(self) -> tuple[Any, ...]:
        """The counts, to merge elsewhere."""
        return dict(self.rows), {name: column.state() for name, column in self.columns.items()}

    def merge(self, state: tuple[Any, ...]) -> None:
        """Add counts taken with `state()` from a scorer of the same baseline."""
        rows, columns = state
        self.rows.update(rows)
        for name, counts in columns.items():
            self.columns[name].merge(counts)

    def reset(self) -> None:
        """Forget the counts."""
        self.rows.clear()
        for column in self.columns.values():
            column.reset()

    def add(self, entries: Sequence[Any]) -> None:
        """Fold a file's output entries in."""
        predictions: list[Any] = []
        probabilities: list[Sequence[Any]] = []
        width = len(self.probability_columns)
        for entry in entries:
            if not isinstance(entry, list):
                predictions.append(entry)
            elif width and len(entry) == width:
                probabilities.append(entry)
            else:
                self.rows["unreadable"] += 1
        if predictions:
            self._fold(PREDICTION, predictions)
        for index, name in enumerate(self.probability_columns):
            if name is not None and probabilities:
                self._fold(name, [row[index] for row in probabilities])

    def _fold(self, name: str, cells: Sequence[Any]) -> None:
        column = self.columns.get(name)
        if column is None:  # the baseline has no such output (a model without plain predictions?)
            self.rows["unreadable"] += len(cells)
            return
        if isinstance(column, NumericCounts):
            values, bad = _numbers(cells)
            if bad is not None:
                self.rows["unreadable"] += int(bad.sum())
                values = values[~bad]
            column.add(values)
            self.rows[name] += int(values.size)
        else:
            column.add(cells)
            self.rows[name] += len(cells)

    def scores(self, thresholds: Thresholds) -> list[OutputScore]:
        """The scores of every output the window holds, most drifted first."""
        scored = []
        for name, column in self.columns.items():
            rows = self.rows[name]
            if not rows:
                continue
            base = column.score(rows)
            out = OutputScore(**{**dict(base), "name": name})
            out.drifted = _drifted(out, thresholds)
            out.measure, out.baseline_value, out.current_value = _measure(name, column, rows, self.outputs.classes)
            scored.append(out)
        scored.sort(key=lambda o: (-(o.psi if o.psi is not None else -1.0), o.name))
        return scored


def _measure(
    name: str, column: NumericCounts | CategoricalCounts, rows: int, classes: list[str] | None
) -> tuple[str, float, float] | tuple[None, None, None]:
    """What an analyst reads of an output's move: the share of the class that moved most, or the mean."""
    feature = column.feature
    if isinstance(column, NumericCounts):
        if feature.mean is None or not int(column.below.sum()):
            return None, None, None
        return f"mean {name}", feature.mean, column.total / int(column.below.sum())
    base_rows = max(feature.count + feature.missing, 1)
    shares = [(value, count / base_rows, column.counts[value] / max(rows, 1)) for value, count in column.known.items()]
    if not shares:
        return None, None, None
    if len(shares) == 2:  # two classes move together: say the positive one's (the model's second class)
        positive = [item for item in shares if classes and item[0] == classes[-1]]
        value, before, now = positive[0] if positive else max(shares, key=_class_key)
    else:
        value, before, now = max(shares, key=lambda item: abs(item[2] - item[1]))
    return f"share of class {value}", before, now


def _class_key(item: tuple[str, float, float]) -> tuple[int, float, str]:
    """Classes ordered as scikit-learn orders them: numbers by value, after them text."""
    try:
        return 0, float(item[0]), ""
    except ValueError:
        return 1, 0.0, item[0]


class Scorer:
    """Accumulates rows for every baseline feature; `report()` gives the scores."""

    def __init__(self, baseline: Baseline) -> None:
        self.baseline = baseline
        self.columns: list[NumericCounts | CategoricalCounts] = [
            NumericCounts(f) if f.type == "numeric" else CategoricalCounts(f)
            for f in (baseline.columns[name] for name in baseline.features)
        ]
        self.all_numeric = all(isinstance(column, NumericCounts) for column in self.columns)
        self.malformed: Counter[str] = Counter()
        self.predictions = PredictionCounts(baseline.outputs) if baseline.outputs is not None else None
        self.decoder = Decoder(baseline.features, self.malformed, outputs=self.predictions is not None)
        self.rows = 0
        self.files = 0

    def state(self) -> dict[str, Any]:
        """Everything counted so far, picklable, for `merge` in another scorer of the same baseline."""
        return {
            "rows": self.rows,
            "files": self.files,
            "malformed": dict(self.malformed),
            "outside": self.decoder.outside,
            "widths": dict(self.decoder.widths),
            "columns": [column.state() for column in self.columns],
            "output_records": dict(self.decoder.output_records),
            "predictions": self.predictions.state() if self.predictions is not None else None,
        }

    def merge(self, state: dict[str, Any]) -> None:
        """Add another scorer's `state()`."""
        self.rows += state["rows"]
        self.files += state["files"]
        self.malformed.update(state["malformed"])
        self.decoder.outside += state["outside"]
        self.decoder.widths.update(state["widths"])
        for column, counts in zip(self.columns, state["columns"], strict=True):
            column.merge(counts)
        self.decoder.output_records.update(state["output_records"])
        if self.predictions is not None:
            self.predictions.merge(state["predictions"])

    def reset(self) -> None:
        """Forget everything counted."""
        self.rows = self.files = self.decoder.outside = 0
        self.malformed.clear()
        self.decoder.widths.clear()
        self.decoder.output_records.clear()
        for column in self.columns:
            column.reset()
        if self.predictions is not None:
            self.predictions.reset()

    def add_file(self, file: CaptureFile, in_window: Any = None) -> None:
        """Decode one capture file and fold its rows in."""
        self.files += 1
        self.add_batch(self.decoder.decode(file.data, in_window if file.edge else None))

    def add_batch(self, batch: Batch) -> None:
        """Fold a decoded file in: plain numeric CSV rows parsed all at once, everything else cell by cell."""
        if batch.outputs and self.predictions is not None:
            self.predictions.add(batch.outputs)
            batch.outputs = []
        if batch.block_rows:
            matrix = self._all_numbers(batch.block, batch.block_rows)
            if matrix is None:  # not all numbers, or a row of the wrong width: row by row
                self.decoder.unpack(batch)
                self.add_rows([row.split(",") for row in batch.text_rows])
                batch.text_rows.clear()
            else:
                self._add_matrix(matrix)
        if batch.text_rows:
            text = "\n".join(batch.text_rows).encode()
            # Rows from the JSON parser may hold control characters (from \u escapes) that numpy's reader skips
            # and float() refuses: those go cell by cell, so a row counts the same whatever file it is in.
            matrix = None if _CONTROL.search(text) else self._all_numbers(text, len(batch.text_rows))
            if matrix is not None:
                self._add_matrix(matrix)
            else:
                self.add_rows([row.split(",") for row in batch.text_rows])
        self.add_rows(batch.rows)

    def _add_matrix(self, matrix: NDArray[np.float64]) -> None:
        for index, column in enumerate(self.columns):
            assert isinstance(column, NumericCounts)  # noqa: S101 - _all_numbers checked every column
            column.add(matrix[:, index])
        self.rows += matrix.shape[0]

    def _all_numbers(self, text: bytes, rows: int) -> NDArray[np.float64] | None:
        """`rows` newline-separated plain CSV rows as a (rows x features) float matrix, or None.

        None unless every feature is numeric, every row has every feature and every cell is a number: then the
        careful path decides, cell by cell.
        """
        if not self.all_numeric or not text.strip():  # (numpy warns on a text without rows)
            return None
        try:  # numpy's C reader; a missing token, a non-numeric cell or a ragged row raises
            matrix = np.loadtxt(
                io.BytesIO(text), dtype=np.float64, delimiter=",", comments=None, quotechar=None, ndmin=2
            )
        except ValueError:
            return None
        # loadtxt skips blank lines: an empty row (a missing single feature) changes the shape, and goes careful.
        return matrix if matrix.shape == (rows, len(self.columns)) else None

    def add_rows(self, rows: Sequence[Row]) -> None:
        """Fold rows of the baseline's width in (rows with a non-numeric cell in a numeric feature are counted)."""
        if not rows:
            return
        cells = list(zip(*rows, strict=True))
        numeric: dict[int, NDArray[np.float64]] = {}
        bad: NDArray[np.bool_] | None = None
        for index, column in enumerate(self.columns):
            if isinstance(column, NumericCounts):
                values, wrong = _numbers(cells[index])
                numeric[index] = values
                if wrong is not None:
                    bad = wrong if bad is None else bad | wrong
        keep: NDArray[np.bool_] | None = None
        if bad is not None:
            self.malformed[NON_NUMERIC] += int(bad.sum())
            keep = ~bad
        for index, column in enumerate(self.columns):
            if isinstance(column, NumericCounts):
                column.add(numeric[index] if keep is None else numeric[index][keep])
            else:
                column.add(cells[index] if keep is None else [c for c, k in zip(cells[index], keep, strict=True) if k])
        self.rows += len(rows) - (int(bad.sum()) if bad is not None else 0)

    def report(
        self, *, model: str, stage: str, version: int | None, start: datetime, end: datetime, thresholds: Thresholds
    ) -> DriftReport:
        """The drift report of everything added so far."""
        features = []
        for name, column in zip(self.baseline.features, self.columns, strict=True):
            scored = column.score(self.rows)
            scored.name = name
            scored.drifted = _drifted(scored, thresholds)
            features.append(scored)
        features.sort(key=lambda f: (-(f.psi if f.psi is not None else -1.0), f.name))
        psis = [f.psi for f in features if f.psi is not None]
        return DriftReport(
            model=model,
            stage=stage,
            version=version,
            window=Window(start=start, end=end),
            rows=self.rows,
            malformed=dict(sorted(self.malformed.items())),
            max_psi=max(psis) if psis and self.rows else None,
            features=features,
            thresholds=thresholds,
            files=self.files,
            outside_window=self.decoder.outside,
            refused_widths=dict(self.decoder.widths),
            width=len(self.baseline.features),
            predictions=self.prediction_drift(model=model, version=version, thresholds=thresholds),
        )

    def prediction_drift(self, *, model: str, version: int | None, thresholds: Thresholds) -> PredictionDrift:
        """Prediction drift of everything added so far, or the note saying why there is none."""
        if self.predictions is None:
            named = f"v{version}" if version is not None else "N"
            return PredictionDrift(
                status="no_baseline",
                note=(
                    f"No prediction drift: no prediction baseline ({model} {named}'s baseline has no outputs); "
                    f"re-attach it with the model directory to get one: `mlinfra baseline {model} --version "
                    f"{version if version is not None else 'N'} DATA --model-dir DIR`."
                ),
            )
        records = {k: v for k, v in sorted(self.decoder.output_records.items()) if v}
        if self.predictions.rows["unreadable"]:
            records["unreadableEntries"] = self.predictions.rows["unreadable"]
        outputs = self.predictions.scores(thresholds)
        if not outputs:
            return PredictionDrift(
                status="no_outputs",
                records=records,
                note=(
                    "No prediction drift: the capture has no outputs (endpointOutput holds no data); enable output "
                    "capture (DataCaptureConfig CaptureOptions Output, as mlinfra's endpoints do) to score it."
                ),
            )
        psis = [o.psi for o in outputs if o.psi is not None]
        return PredictionDrift(
            status="scored",
            rows=max(self.predictions.rows[name] for name in self.predictions.columns),
            records=records,
            max_psi=max(psis) if psis else None,
            drifted=any(o.drifted for o in outputs),
            outputs=outputs,
        )


def _drifted(feature: FeatureScore, thresholds: Thresholds) -> bool:
    if feature.psi is None:
        return False
    if feature.psi > thresholds.psi:
        return True
    if thresholds.js is not None and feature.js is not None and feature.js > thresholds.js:
        return True
    return (
        thresholds.ks_pvalue is not None and feature.ks_pvalue is not None and feature.ks_pvalue < thresholds.ks_pvalue
    )
