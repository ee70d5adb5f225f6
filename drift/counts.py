"""A feature's window as counts against its baseline, and the scores of those counts (mlinfra_drift.score folds).

Per numeric feature the counts on the baseline's grid, per categorical feature the counts of known values and of
unseen ones. PSI and Jensen-Shannon use the baseline's fixed bins (its distinct deciles, or its known categories plus
one bin for everything else) and one more bin for missing values, so a feature that stops arriving drifts too. The
model's outputs (prediction drift, mlinfra_drift.predictions) are counted by the same classes.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import stats
from .baseline import MISSING_TOKENS, Feature, category_value
from .report import Bin, FeatureScore, Thresholds

UNSEEN_NAMES_KEPT = 1000  # distinct unseen categories tracked by name; beyond that only counted


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


def to_numbers(cells: Sequence[Any]) -> tuple[NDArray[np.float64], NDArray[np.bool_] | None]:
    """The cells as floats (missing = NaN) and a mask of non-numeric cells (None when all are numeric)."""
    try:
        return np.asarray(cells, dtype=np.float64), None
    except (ValueError, TypeError):
        pass
    parsed = [_to_float(cell) for cell in cells]
    bad = np.fromiter((value is None for value in parsed), dtype=bool, count=len(parsed))
    values = np.fromiter((math.nan if v is None else v for v in parsed), dtype=np.float64, count=len(parsed))
    return values, bad if bad.any() else None


def over_threshold(feature: FeatureScore, thresholds: Thresholds) -> bool:
    if feature.psi is None:
        return False
    if feature.psi > thresholds.psi:
        return True
    if thresholds.js is not None and feature.js is not None and feature.js > thresholds.js:
        return True
    return (
        thresholds.ks_pvalue is not None and feature.ks_pvalue is not None and feature.ks_pvalue < thresholds.ks_pvalue
    )
