"""Readers for what `mlinfra register` records with a version: its metrics, a baseline of its data, its git commit.

Each reader raises BadInputError with one line that names the file and says how to fix it.
"""

from __future__ import annotations

import csv
import importlib
import itertools
import json
import math
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mlinfra.errors import BadInputError
from mlinfra_drift import baseline as baseline_schema

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

StrPath = str | os.PathLike[str]

BASELINE_SCHEMA = baseline_schema.SCHEMA
DEFAULT_MAX_ROWS = 1_000_000
# Cell values read as missing (compared stripped and case-insensitively), as pandas' CSV reader does by default.
MISSING_TOKENS = baseline_schema.MISSING_TOKENS
_EXACT_MISSING = (
    MISSING_TOKENS | {t.upper() for t in MISSING_TOKENS} | {t.capitalize() for t in MISSING_TOKENS} | {"NaN"}
)
PARQUET_SUFFIXES = (".parquet", ".pq")
PARQUET_BATCH_ROWS = 65_536
CSV_BATCH_ROWS = 65_536
GIT_TIMEOUT_SECONDS = 30

# ---------------------------------------------------------------------------------------------------------------
# Metrics


class _DuplicateKeyError(ValueError):
    pass


class _ConstantError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKeyError(key)
        seen[key] = value
    return seen


def _refuse_constant(name: str) -> float:
    raise _ConstantError(name)


def _json_kind(value: Any) -> str:
    """How JSON calls a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, str):
        return f"a string ({json.dumps(value)})"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _read_text(path: Path, shown: str) -> str:
    from mlinfra.stacks.yamlio import read_text

    return read_text(path, shown, encoding="utf-8-sig")


def read_metrics(path: StrPath) -> dict[str, float]:
    """A metrics file: one JSON object of metric name to number, e.g. `{"auc": 0.91, "rows": 12000}`.

    Numbers come back as floats, in file order. Booleans, strings, null, nested objects or arrays, NaN/Infinity and
    duplicate names are refused with BadInputError naming the file and the metric.
    """
    path = Path(path)
    shown = str(path)
    text = _read_text(path, shown)
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except _DuplicateKeyError as exc:
        raise BadInputError(f"{shown}: metric {exc.args[0]!r} appears twice; keep one") from None
    except _ConstantError as exc:
        raise BadInputError(
            f"{shown}: {exc.args[0]} is not a number JSON allows; metric values must be finite numbers"
        ) from None
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{shown}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise BadInputError(
            f'{shown}: must be a JSON object of metric name to number, e.g. {{"auc": 0.91}}, not {_json_kind(data)}'
        )
    metrics: dict[str, float] = {}
    for name, value in data.items():
        if not name.strip():
            raise BadInputError(f"{shown}: a metric has an empty name; name every metric")
        if isinstance(value, dict | list):
            raise BadInputError(
                f"{shown}: {name}: must be a number, not {_json_kind(value)}; nested metrics are not supported, "
                f'flatten them (e.g. "{name}.auc": 0.91)'
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadInputError(f"{shown}: {name}: must be a number, not {_json_kind(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise BadInputError(f"{shown}: {name}: {value} is too large for a metric; metric values must be finite")
        metrics[name] = number
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# Baseline


@dataclass
class _Column:
    """One column's running statistics: finite numbers for a numeric column, value counts for a categorical one."""

    name: str
    numeric: bool
    chunks: list[NDArray[np.float64]] = field(default_factory=list)
    categories: Counter[str] = field(default_factory=Counter)

    def summary(self, rows: int) -> dict[str, Any]:
        """The column's baseline entry (computed by mlinfra_drift.baseline)."""
        import numpy as np

        from mlinfra_drift.baseline import categorical_feature, numeric_feature

        if self.numeric:
            return numeric_feature(np.concatenate([np.empty(0), *self.chunks]), rows)
        return categorical_feature(self.categories, rows)


def _present(cells: Sequence[str]) -> list[str]:
    """The cells that are not missing values, stripped."""
    return [cell for cell in (c.strip() for c in cells) if cell.lower() not in MISSING_TOKENS]


def _numbers(cells: Sequence[str]) -> NDArray[np.float64] | None:
    """The non-missing cells as numbers (numpy parses what float() does, in C), or None if one is not a number.

    NaN spellings parse to NaN, which callers drop with the other non-finite values, so they need no filtering; the
    fast path only skips exact missing tokens and falls back to the stripped, case-insensitive check.
    """
    import numpy as np

    try:
        return np.asarray([c for c in cells if c not in _EXACT_MISSING], dtype=np.float64)
    except ValueError:
        pass
    try:
        return np.asarray(_present(cells), dtype=np.float64)
    except ValueError:
        return None


def _count_categories(counts: Counter[str], cells: Sequence[str]) -> None:
    """Add the non-missing cells to `counts`: counted raw in C, then stripped and filtered per distinct value."""
    for raw, n in Counter(cells).items():
        value = raw.strip()
        if value.lower() not in MISSING_TOKENS:
            counts[value] += n


def _csv_rows(path: Path, shown: str, max_rows: int) -> Iterator[list[str]]:
    """The header, then data rows (at most max_rows + 1, so a caller can tell there were more); blank lines skipped."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            width: int | None = None
            data_rows = 0
            for row in reader:
                if not row:
                    continue
                if width is None:
                    width = len(row)
                elif len(row) != width:
                    raise BadInputError(
                        f"{shown}: line {reader.line_num}: {len(row)} fields, the header has {width}; "
                        "fix the row (quote values that contain commas)"
                    )
                else:
                    data_rows += 1
                yield row
                if data_rows > max_rows:
                    return
    except FileNotFoundError:
        raise BadInputError(f"{shown}: file not found") from None
    except IsADirectoryError:
        raise BadInputError(f"{shown}: is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{shown}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except csv.Error as exc:
        raise BadInputError(f"{shown}: not a readable CSV file ({exc})") from None
    except OSError as exc:
        raise BadInputError(f"{shown}: cannot read ({exc.strerror})") from None


def _header(cells: list[str], shown: str) -> list[str]:
    names = [cell.strip() for cell in cells]
    for index, name in enumerate(names, start=1):
        if not name:
            raise BadInputError(f"{shown}: column {index} of the header has no name; name every column")
        if names.index(name) != index - 1:
            raise BadInputError(f"{shown}: column {name!r} appears twice in the header; rename one")
    return names


@dataclass
class _CsvScan:
    """One streaming read of a CSV file in batches of rows, each given column by column; at most `max_rows` rows."""

    path: Path
    shown: str
    max_rows: int
    names: list[str] = field(default_factory=list)
    rows: int = 0
    truncated: bool = False  # the file has more than max_rows rows

    def batches(self) -> Iterator[list[tuple[str, ...]]]:
        """Column-wise batches of data rows; `names` is set before the first one."""
        rows_in_file = _csv_rows(self.path, self.shown, self.max_rows)
        header = next(rows_in_file, None)
        if header is None:
            raise BadInputError(f"{self.shown}: empty file; a baseline needs a header row and data rows")
        self.names = _header(header, self.shown)
        while batch := list(itertools.islice(rows_in_file, CSV_BATCH_ROWS)):
            self.truncated = self.rows + len(batch) > self.max_rows
            batch = batch[: self.max_rows - self.rows]
            if batch:
                self.rows += len(batch)
                yield list(zip(*batch, strict=True))
            if self.truncated:
                return


def _read_csv(path: Path, shown: str, max_rows: int) -> tuple[list[_Column], int, bool]:
    """One streaming pass; a column is numeric until a non-missing cell is not a number.

    A column found not to be numeric after the first batch needs its earlier cells counted as categories: only then
    is the file read a second time, for those batches and columns. The file is never held in memory.
    """
    import numpy as np

    scan = _CsvScan(path, shown, max_rows)
    columns: list[_Column] = []
    late: dict[int, int] = {}  # column index -> number of batches read before it turned out categorical
    for number, batch in enumerate(scan.batches()):
        columns = columns or [_Column(name, numeric=True) for name in scan.names]
        for index, (column, cells) in enumerate(zip(columns, batch, strict=True)):
            if column.numeric:
                values = _numbers(cells)
                if values is not None:
                    column.chunks.append(values[np.isfinite(values)])
                    continue
                column.numeric = False
                column.chunks.clear()
                if number:
                    late[index] = number
            _count_categories(column.categories, cells)
    if not scan.rows:
        raise BadInputError(f"{shown}: a header but no data rows; give a sample of the model's input data")
    if late:
        for number, batch in enumerate(_CsvScan(path, shown, max_rows).batches()):
            if number >= max(late.values()):
                break
            for index, before in late.items():
                if number < before:
                    _count_categories(columns[index].categories, batch[index])
    return columns, scan.rows, scan.truncated


def _pyarrow(shown: str) -> tuple[ModuleType, ModuleType]:
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise BadInputError(
            f"{shown}: reading Parquet needs pyarrow: `pip install 'mlinfra[parquet]'`, or give a CSV sample instead"
        ) from None


def _category(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return json.dumps(value)
    return str(value)


def _read_parquet(path: Path, shown: str, max_rows: int) -> tuple[list[_Column], int, bool]:
    """One streaming pass over record batches; column types come from the Parquet schema."""
    import numpy as np

    pa, pq = _pyarrow(shown)
    try:
        handle = pq.ParquetFile(path)
    except FileNotFoundError:
        raise BadInputError(f"{shown}: file not found") from None
    except (pa.ArrowException, OSError) as exc:
        raise BadInputError(f"{shown}: not a readable Parquet file ({exc})") from None
    schema = handle.schema_arrow
    names = _header(list(schema.names), shown)
    if not names:
        raise BadInputError(f"{shown}: no columns; a baseline needs a sample of the model's input data")
    types = pa.types
    columns = [
        _Column(name, types.is_integer(kind) or types.is_floating(kind) or types.is_decimal(kind))
        for name, kind in zip(names, schema.types, strict=True)
    ]
    total = int(handle.metadata.num_rows)
    rows = 0
    try:
        for batch in handle.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            take = min(batch.num_rows, max_rows - rows)
            for column, data in zip(columns, batch.slice(0, take).columns, strict=True):
                if column.numeric:
                    values = np.asarray(data.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False))
                    column.chunks.append(values[np.isfinite(values)])  # nulls arrive as NaN
                else:
                    column.categories.update(_category(v) for v in data.to_pylist() if v is not None)
            rows += take
            if rows >= max_rows:
                break
    except (pa.ArrowException, OSError) as exc:
        raise BadInputError(f"{shown}: not a readable Parquet file ({exc})") from None
    if not rows:
        raise BadInputError(f"{shown}: no data rows; give a sample of the model's input data")
    return columns, rows, total > rows


def read_baseline(path: StrPath, *, max_rows: int = DEFAULT_MAX_ROWS) -> dict[str, Any]:
    """A baseline summary (JSON-able) of a data sample: a CSV file with a header row, or Parquet (needs pyarrow).

    Per column: `type` (numeric when every non-missing value is a number, else categorical), `count` (non-missing
    values), `missing` and `missing_rate`; numeric columns add mean, std (sample, ddof=1), min, max, `quantiles` at
    0.1..0.9 and the 11 `bin_edges` of 10 equal-frequency bins, plus (schema 2) the distribution `grid` and
    `psi_edges` drift scores against; categorical columns add `distinct`, the `top` 20 values with count and
    frequency and (schema 2) every value's count up to 1,000 (`categories`). See mlinfra_drift.baseline.
    Missing: in a CSV, empty cells and NA/N/A/NaN/null/None (any case, padded or not); in Parquet, nulls;
    non-finite numbers in either. The CSV is streamed in batches, never held in memory; only its first `max_rows`
    rows are summarized, and `truncated` and `note` say when there were more.
    """
    path = Path(path)
    shown = str(path)
    if max_rows < 1:
        raise BadInputError(f"max_rows must be at least 1 (got {max_rows})")
    is_parquet = path.suffix.lower() in PARQUET_SUFFIXES
    reader = _read_parquet if is_parquet else _read_csv
    columns, rows, truncated = reader(path, shown, max_rows)
    return baseline_schema.summary(
        {column.name: column.summary(rows) for column in columns},
        rows=rows,
        source=path.name,
        fmt="parquet" if is_parquet else "csv",
        truncated=truncated,
        max_rows=max_rows,
    )


# ---------------------------------------------------------------------------------------------------------------
# Lineage


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
            # Read-only: `git status` must not take the index lock under someone else's running git command.
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_sha(path: StrPath | None = None) -> str | None:
    """The commit checked out where `path` lives (default: the working directory), with `-dirty` if it has changes.

    `-dirty` is added when `git status --porcelain` lists anything (untracked files included) or fails. None
    outside a git repository, in a repository without commits, when `path` does not exist or git is not installed.
    """
    where = Path(path) if path is not None else Path.cwd()
    if where.is_file():
        where = where.parent
    if shutil.which("git") is None or not where.is_dir():
        return None
    head = _git(["rev-parse", "--verify", "--quiet", "HEAD"], where)
    if not head or not head.strip():
        return None
    status = _git(["status", "--porcelain"], where)
    return head.strip() + ("-dirty" if status is None or status.strip() else "")
