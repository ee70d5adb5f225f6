"""The prediction baseline: the model's answers on the baseline sample, from the handler the endpoint runs.

`sample_outputs` (and `for_place`, its form for a handler's recorded place) loads the model directory through the
very handler `mlinfra serve` runs (mlinfra.serving.handler: the framework container's defaults around the model's
own inference.py), sends it the sample's first PREDICTION_ROWS rows in batches, once as the endpoint is called by
default (`Accept: application/json`) and once for class probabilities (`application/json; output=probabilities`; a
handler that refuses that gives none), decodes the answers with the parser the drift engine reads captured outputs
with (mlinfra_drift.outputs) and summarizes them with mlinfra_drift.baseline.outputs_summary. What the baseline
holds is therefore what the endpoint answers for the same rows; drift compares the capture's endpointOutput with it.

Rows go as JSON records by feature name when the model directory has an input schema (only the schema's features:
a sample that also holds the label is fine), else as CSV rows in the sample's column order. A missing cell is sent
as NaN, which a model that cannot take it refuses, as its endpoint would.

Running the handler needs the model's libraries here (scikit-learn, XGBoost, PyTorch as the model needs);
`PredictionError` says what failed, and `register` turns it into a note (the version is registered without a
prediction baseline), `mlinfra baseline --model-dir` into an error. The registry does not import this module (serving
depends on the registry): the commands and the notebook API hand `for_place` to it.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlinfra.errors import MlinfraError
from mlinfra_drift.baseline import MISSING_TOKENS  # the cells the drift engine reads as missing

PREDICTION_ROWS = 10_000  # sample rows predicted: plenty for the output's distribution, seconds for most models
BATCH_ROWS = 500  # rows per invocation
JSON = "application/json"
PROBABILITIES = "application/json; output=probabilities"
SCHEMA_FILE = "input_schema.json"


class PredictionError(MlinfraError):
    """The model's outputs on the sample could not be computed here; the message says why, in one line."""


def _sample_rows(path: Path, limit: int) -> tuple[list[str], list[list[Any]]]:
    """The sample's header and its first `limit` rows (CSV cells as text; Parquet values as they are)."""
    from mlinfra.models import inputs

    shown = str(path)
    if path.suffix.lower() in inputs.PARQUET_SUFFIXES:
        _, pq = inputs._pyarrow(shown)
        handle = pq.ParquetFile(path)
        names = list(handle.schema_arrow.names)
        rows: list[list[Any]] = []
        for batch in handle.iter_batches(batch_size=min(limit, 65_536)):
            rows += [[record[name] for name in names] for record in batch.to_pylist()]
            if len(rows) >= limit:
                break
        return names, rows[:limit]
    cells: Iterator[list[str]] = inputs._csv_rows(path, shown, limit)
    header = next(cells, None)
    if header is None:
        raise PredictionError(f"{shown}: empty file")
    return [name.strip() for name in header], list(itertools.islice(cells, limit))


def _schema_names(model_dir: Path, directory: str | None) -> list[str] | None:
    path = model_dir / (directory if directory is not None else "code") / SCHEMA_FILE
    try:
        features = json.loads(path.read_text(encoding="utf-8")).get("features")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(features, list):
        return None
    return [str(f.get("name")) for f in features if isinstance(f, dict)] or None


def _cell(value: Any) -> Any:
    """A cell as sent: numbers and text as they are, a missing one as NaN."""
    if value is None:
        return math.nan
    if isinstance(value, str) and value.strip().lower() in MISSING_TOKENS:
        return math.nan
    return value


def _bodies(header: list[str], rows: list[list[Any]], names: list[str] | None) -> Iterator[tuple[bytes, str, int]]:
    """(body, content type, rows) per batch: records by name with a schema, else CSV rows."""
    if names is not None:
        absent = [name for name in names if name not in header]
        if absent:
            raise PredictionError(
                f"the sample has no column {', '.join(absent[:5])} of the model's input schema; give a sample of its "
                "inputs"
            )
        positions = [header.index(name) for name in names]
    for start in range(0, len(rows), BATCH_ROWS):
        batch = rows[start : start + BATCH_ROWS]
        if names is not None:
            records = [{name: _cell(row[p]) for name, p in zip(names, positions, strict=True)} for row in batch]
            yield json.dumps(records, default=str).encode(), JSON, len(batch)
        else:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows([[_cell(c) for c in row] for row in batch])
            yield out.getvalue().encode(), "text/csv", len(batch)


def _answers(handler: Any, bodies: list[tuple[bytes, str, int]], accept: str) -> list[Any]:
    """Every batch through the handler, its answers decoded as the drift engine decodes captured outputs."""
    from mlinfra.serving.handler import InvocationError
    from mlinfra_drift.outputs import parse_output_data

    entries: list[Any] = []
    for body, content_type, count in bodies:
        try:
            response = handler.invoke(body, content_type, accept)
        except InvocationError as exc:
            raise PredictionError(f"the handler answered {exc.status}: {exc.message}") from None
        encoding = "CSV" if response.content_type.split(";")[0].strip() == "text/csv" else "JSON"
        try:
            text = response.body.decode("utf-8")
        except UnicodeDecodeError:
            raise PredictionError(f"the handler answered {response.content_type} that is not text") from None
        decoded = parse_output_data(text, encoding, response.content_type)
        if decoded is None or len(decoded) != count:
            raise PredictionError(
                f"the handler's answer to {count} row(s) is not one prediction per row ({response.content_type})"
            )
        entries += decoded
    return entries


def sample_outputs(
    model_dir: Path,
    framework: str | None,
    sample: Path,
    *,
    program: str | None = None,
    directory: str | None = None,
    limit: int = PREDICTION_ROWS,
) -> dict[str, Any]:
    """The prediction baseline (a baseline's `outputs`) of the model in `model_dir` on `sample`'s first rows.

    PredictionError (one line) when the handler does not load or refuses the sample.
    """
    from mlinfra.serving.handler import load_handler
    from mlinfra_drift.baseline import outputs_summary

    header, rows = _sample_rows(sample, limit)
    if not rows:
        raise PredictionError(f"{sample}: no data rows")
    bodies = list(_bodies(header, rows, _schema_names(model_dir, directory)))
    try:
        handler = load_handler(model_dir, framework, program=program, directory=directory)
    except MlinfraError as exc:
        raise PredictionError(f"the handler did not load here: {exc}") from None
    predictions = _answers(handler, bodies, JSON)
    try:
        probabilities = _answers(handler, bodies, PROBABILITIES)
    except PredictionError:
        probabilities = None  # a regressor, or a handler without `output=probabilities`
    if any(isinstance(entry, list) for entry in predictions):
        raise PredictionError("the handler answers a list of values per row by default; one prediction per row needed")
    rows_of = [entry if isinstance(entry, list) else [entry] for entry in probabilities or []]
    try:
        return outputs_summary(
            predictions,
            rows_of if probabilities is not None and any(len(r) > 1 for r in rows_of) else None,
            source=f"the model's answers on the first {len(rows):,} row(s) of {sample.name}, through its handler",
        )
    except ValueError as exc:
        raise PredictionError(str(exc)) from None


def for_place(model_dir: Path, framework: str | None, sample: Path, place: dict[str, Any]) -> dict[str, Any]:
    """`sample_outputs` for a handler where `register` records it (`{"program", "directory"}`)."""
    return sample_outputs(model_dir, framework, sample, program=place.get("program"), directory=place.get("directory"))
