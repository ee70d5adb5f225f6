"""Data that would be packed by mistake: `register` names it and asks for .mlinfraignore or --include-data.

A model directory next to a notebook tends to hold the notebook's data too (train.csv, a Parquet extract, a
DataFrame pickled for later). Packed into model.tar.gz it would be copied into every stage's registry and onto every
endpoint. What counts as data: tables by suffix (CSV, TSV, Parquet, Feather/Arrow, Excel, JSON Lines) and pickles
whose first MiB names pandas' DataFrame or Series class (a pickled model does not, unless it holds one). A file the
directory's .mlinfraignore re-includes with a `!pattern` was kept on purpose and is not flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlinfra.errors import BadInputError

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".feather", ".arrow", ".xlsx", ".xls", ".jsonl", ".ndjson")
PICKLE_SUFFIXES = (".pkl", ".pickle")
_PANDAS_MARKERS = (b"pandas.core.frame", b"pandas.core.series")
_SNIFF_BYTES = 1 << 20


@dataclass(frozen=True)
class DataFile:
    """A packed file that looks like data: its path in the archive, its size, and why."""

    path: str
    size: int
    why: str


def _why(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(TABLE_SUFFIXES):
        return "a table"
    if name.endswith(PICKLE_SUFFIXES):
        try:
            with path.open("rb") as stream:
                head = stream.read(_SNIFF_BYTES)
        except OSError:
            return None
        if any(marker in head for marker in _PANDAS_MARKERS):
            return "a pickled DataFrame"
    return None


def _kept_on_purpose(root: Path) -> object | None:
    """A spec of the `!pattern` lines of the directory's .mlinfraignore (files re-included deliberately)."""
    import pathspec

    from mlinfra.models.directory import IGNORE_FILE

    ignore = root / IGNORE_FILE
    if not ignore.is_file():
        return None
    try:
        lines = ignore.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    negated = [line.strip()[1:] for line in lines if line.strip().startswith("!")]
    return pathspec.GitIgnoreSpec.from_lines(negated) if negated else None


def data_files(root: Path) -> list[DataFile]:
    """The files `register` would pack from `root` that look like data (and were not re-included on purpose)."""
    from mlinfra.models.directory import skipper
    from mlinfra.models.packaging import collect_files

    kept = _kept_on_purpose(root)
    found = []
    for relative, path in collect_files(root, skipper(root)):
        why = _why(path)
        if why is None or (kept is not None and kept.match_file(relative)):  # type: ignore[attr-defined]
            continue
        found.append(DataFile(relative, path.stat().st_size, why))
    return found


def refuse_data(root: Path, model: str) -> None:
    """BadInputError naming every data-looking file `register` would pack from `root`, and the two ways on."""
    found = data_files(root)
    if not found:
        return
    listed = ", ".join(f"{f.path} ({_size(f.size)}, {f.why})" for f in found[:8])
    more = f" and {len(found) - 8} more" if len(found) > 8 else ""
    raise BadInputError(
        f"{root} would pack data with the model: {listed}{more}; list them in {root / '.mlinfraignore'} "
        f"(gitignore syntax, e.g. `*.csv`) or move them out, or pass --include-data to pack them anyway "
        f"(`mlinfra register {root} -m {model} --dry-run` lists every file it packs)"
    )


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
