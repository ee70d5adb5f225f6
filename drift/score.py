"""Scoring a window of captured traffic against a baseline, file by file in bounded memory.

`Scorer` reads every capture file of a window once (mlinfra_drift.scoring.score drives it over a capture),
decodes its records (mlinfra_drift.records), and folds each feature's values into counts (mlinfra_drift.counts):
per numeric feature the counts on the baseline's grid, per categorical feature the counts of known values and of
unseen ones, and the model's outputs into the prediction baseline's (mlinfra_drift.predictions). Memory is one file
plus those counts, whatever the window's size. The statistics are in mlinfra_drift.stats.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .baseline import Baseline
from .capture import CaptureFile
from .counts import CategoricalCounts, NumericCounts, over_threshold, to_numbers
from .predictions import PredictionCounts
from .records import NON_NUMERIC, Batch, Decoder, Row
from .report import DriftReport, PredictionDrift, Thresholds, Window

__all__ = ["CategoricalCounts", "NumericCounts", "Scorer"]

_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f]")  # control characters other than the rows' line break


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
                values, wrong = to_numbers(cells[index])
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
            scored.drifted = over_threshold(scored, thresholds)
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
