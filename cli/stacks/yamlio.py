"""Reading YAML and text files with one-line errors that name the file: shared by everything that reads stacks."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from mlinfra.errors import BadInputError

# Stack files are a few KiB; a bound keeps a runaway file (50,000 subscriptions) from costing minutes and gigabytes.
MAX_YAML_BYTES = 256 * 1024


def read_yaml(path: Path, shown: str | None = None) -> Any:
    """Parse a YAML file (safe loader); malformed YAML or a missing file raises BadInputError naming the file.

    `shown` is how messages name the file (default: the path as given).
    """
    shown = shown or str(path)
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    with contextlib.suppress(OSError):  # a missing or unreadable file is named by read_text
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise BadInputError(
                f"{shown}: {size / 1024:,.0f} KiB is more than a stack or project file may be "
                f"({MAX_YAML_BYTES // 1024} KiB); keep long lists (subscriptions, models) within their limits"
            )
    text = read_text(path, shown)
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise BadInputError(yaml_error(shown, exc)) from None


def read_text(path: Path, shown: str | None = None, *, encoding: str = "utf-8") -> str:
    """A UTF-8 text file; a missing, unreadable or non-UTF-8 file raises BadInputError naming the file (exit 2).

    `encoding="utf-8-sig"` also drops a byte-order mark (what spreadsheet tools put before JSON and CSV).
    """
    shown = shown or str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"{shown}: file not found") from None
    except IsADirectoryError:
        raise BadInputError(f"{shown}: is a directory, not a file") from None
    except OSError as exc:
        raise BadInputError(f"{shown}: cannot read ({exc.strerror})") from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{shown}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


_DUPLICATE_KEY = re.compile(r'found duplicate key "(?P<key>.*?)" with value')


def yaml_error(shown: str, exc: Exception) -> str:
    """One line for a YAML error: the file, the line, and what is wrong (a duplicate key named as such)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    duplicate = _DUPLICATE_KEY.match(str(problem))
    if duplicate:
        context = getattr(exc, "context_mark", None)
        first = f" (in the mapping that starts at line {context.line + 1})" if context is not None else ""
        return f"{shown}:{where}: duplicate key {duplicate['key']!r}{first}; keep one of them"
    return f"{shown}:{where}: invalid YAML: {problem}"
