"""Round-trip YAML edits of a stack file's text: the model pins, with comments, quoting and indentation kept.

Pure text in, text out: nothing here validates the config or writes a file (mlinfra.stacks.edit does both).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from mlinfra.errors import BadInputError

MODELS_KEY = "mlinfra:models"
PIN_KEY = "pinned"
PIN_FIELDS = ("version", "digest", "image", "artifact", "handler")
# Indentation of the shipped stack files: mappings by 2, sequence dashes 2 in from their key, items 4 in.
DEFAULT_INDENT = (2, 4, 2)


def round_trip_yaml(indent: tuple[int, int, int]) -> Any:
    """A round-trip YAML instance that writes back what it read: quotes kept, no line re-wrapping."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt", pure=True)
    yaml.preserve_quotes = True
    mapping, sequence, offset = indent
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.width = 4096  # never fold a long value (image URIs, comments in flow collections) onto two lines
    return yaml


def guess_indent(text: str) -> tuple[int, int, int]:
    """The file's (mapping, sequence, offset) indentation, as ruamel's `indent()` takes it; shipped defaults if unsure.

    Mapping indent: how far the first nested key sits in from its parent `key:` line. Sequence: where the first
    block sequence's dash (offset) and its item (sequence) sit relative to the parent key.
    """
    mapping: int | None = None
    sequence: int | None = None
    offset: int | None = None
    parent: int | None = None  # column of the previous line if it was a bare `key:` opening a block
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        column = len(line) - len(line.lstrip(" "))
        if parent is not None:
            if stripped.startswith("- ") and column >= parent and sequence is None:
                offset = column - parent
                item = line[column + 1 :]
                sequence = column + 1 + len(item) - len(item.lstrip(" ")) - parent
            elif not stripped.startswith("- ") and column > parent and mapping is None:
                mapping = column - parent
        parent = column if stripped.endswith(":") and not stripped.startswith("- ") else None
        if mapping is not None and sequence is not None:
            break
    if mapping is None and sequence is None:
        return DEFAULT_INDENT
    mapping = mapping or DEFAULT_INDENT[0]
    if sequence is None or offset is None:
        return mapping, mapping + DEFAULT_INDENT[2], DEFAULT_INDENT[2]
    return mapping, sequence, offset


def invalid_yaml(source: str, exc: Exception) -> BadInputError:
    """The one-line error for a stack file that is not YAML (same shape as project.read_yaml's)."""
    from mlinfra.stacks.yamlio import yaml_error

    return BadInputError(f"{yaml_error(source, exc)} (fix the file by hand, then re-run)")


def block_mapping(parent: Any, key: str, source: str, where: str) -> Any:
    """`parent[key]` as a block-style round-trip mapping, created if absent or null; BadInputError if not a mapping."""
    from ruamel.yaml.comments import CommentedMap

    value = parent.get(key)
    if value is None:
        value = CommentedMap()
        parent[key] = value
    elif not isinstance(value, CommentedMap):
        kind = "a list" if isinstance(value, list) else repr(value)
        raise BadInputError(f"{source}: {where}: must be a mapping, not {kind}; fix it by hand")
    # `churn: {}` is a flow mapping; once it holds a pin it reads better (and diffs better) as a block.
    value.fa.set_block_style()
    return value


def yaml_kind(value: Any) -> type:
    """The YAML kind of a value (a quoted string read back is still a str; True is not 1; mappings are mappings)."""
    for kind in (bool, int, float, str, Mapping):
        if isinstance(value, kind):
            return kind
    return type(value)


def same_pin(current: Any, wanted: Mapping[str, Any]) -> bool:
    """Whether the pin in the file already is `wanted`, kinds included (version 3 is not "3")."""
    if not isinstance(current, Mapping) or set(current) != set(wanted):
        return False
    return all(yaml_kind(current[k]) is yaml_kind(wanted[k]) and current[k] == wanted[k] for k in wanted)


def set_pin(entry: Any, pin: Mapping[str, Any]) -> None:
    """Write `pin` into the model's mapping; an existing `pinned` block is updated in place, keeping its comments."""
    from ruamel.yaml.comments import CommentedMap

    current = entry.get(PIN_KEY)
    if not isinstance(current, CommentedMap):
        current = CommentedMap()
        entry[PIN_KEY] = current
    for key in [k for k in current if k not in pin]:
        del current[key]
    for key in (*[k for k in PIN_FIELDS if k in pin], *[k for k in pin if k not in PIN_FIELDS]):
        current[key] = pin[key]


def dump_yaml(yaml: Any, document: Any, prefix: str) -> str:
    stream = io.StringIO()
    yaml.dump(document, stream)
    return prefix + stream.getvalue()


def with_pins(text: str, pins: Mapping[str, Mapping[str, Any]]) -> str:
    """`text` (a stack file) with `pins` (model -> pin) set for the models it declares; not validated here.

    Local mode uses it to carry its scratch pins over when the real stack file changes (mlinfra.stacks.workspace).
    """
    yaml = round_trip_yaml(guess_indent(text))
    document = yaml.load(text)
    if not isinstance(document, Mapping) or not pins:
        return text
    models = (document.get("config") or {}).get(MODELS_KEY)
    if not isinstance(models, Mapping):
        return text
    for model, pin in pins.items():
        entry = models.get(model)
        if model in models and (entry is None or isinstance(entry, Mapping)):
            set_pin(block_mapping(models, model, "", model), pin)
    return dump_yaml(yaml, document, "")


def pins_of(text: str) -> dict[str, dict[str, Any]]:
    """The `pinned` block of every model a stack file declares (unvalidated), {} when it has none or is not YAML."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        document = YAML(typ="safe", pure=True).load(text)
    except YAMLError:
        return {}
    models = ((document or {}).get("config") or {}).get(MODELS_KEY) if isinstance(document, dict) else None
    if not isinstance(models, dict):
        return {}
    return {
        str(model): dict(entry["pinned"])
        for model, entry in models.items()
        if isinstance(entry, dict) and isinstance(entry.get("pinned"), dict)
    }
