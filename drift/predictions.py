"""Prediction drift: the window's outputs (decoded by mlinfra_drift.outputs) against the prediction baseline.

`PredictionCounts` folds each capture file's output entries into the counts of the baseline's output columns (the
classes of mlinfra_drift.counts, as features are counted); `prediction_drift` scores them, or says why it cannot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from .baseline import PREDICTION, Outputs
from .counts import CategoricalCounts, NumericCounts, over_threshold, to_numbers
from .report import OutputScore, Thresholds


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
            values, bad = to_numbers(cells)
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
            out.drifted = over_threshold(out, thresholds)
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
