"""Comment-preserving, validated, atomic edits of a stage's stack file: pinning the model version a stage runs.

`mlinfra promote` ends by pinning the promoted version in `stacks/Pulumi.<stage>.yaml`. The edit goes through
ruamel.yaml's round-trip mode, so comments, key order, quoting and indentation survive and the diff a reviewer sees
is the pin alone; the result is validated with the same typed config the Pulumi program uses before a byte is
written; and the file is replaced atomically (temp file in the same directory, fsync, `os.replace`), so an
interrupted promotion leaves either the old file or the new one, never half of each.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlinfra.errors import BadInputError
from mlinfra.stacks.project import Project
from mlinfra.stacks.yamledit import (
    MODELS_KEY,
    PIN_KEY,
    block_mapping,
    dump_yaml,
    guess_indent,
    invalid_yaml,
    round_trip_yaml,
    same_pin,
    set_pin,
)

if TYPE_CHECKING:
    from mlinfra_infra.config import StackConfig


def _validate(project: Project, stage: str, source: str, text: str) -> StackConfig:
    """Validate the text about to be written exactly as `load_stage` will read it back."""
    from ruamel.yaml import YAML

    from mlinfra.stacks.files import raw_config_of, validate

    data = YAML(typ="safe", pure=True).load(text)
    try:
        return validate(project, stage, raw_config_of(project, data, source), source)
    except BadInputError as exc:
        raise BadInputError(f"{exc}; nothing was written") from None


def _write_atomically(path: Path, text: str, newline: str) -> None:
    """Replace `path` by `text`: temp file beside it, fsync, `os.replace`; the file's mode and line endings are kept."""
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(mode)
        tmp.replace(path)  # atomic (os.replace): readers see the old file or the new one
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # Make the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@dataclass
class _Document:
    """A stack file read for a round-trip edit: its text, line endings, indentation and parsed document."""

    path: Path
    source: str
    original: str
    newline: str
    yaml: Any
    document: Any
    prefix: str

    @classmethod
    def load(cls, project: Project, stage: str) -> _Document:
        """Read and parse `stacks/Pulumi.<stage>.yaml`; BadInputError naming the file if it cannot be edited."""
        path = project.stage_file(project.require_stage(stage))
        source = project.relative(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise BadInputError(f"{source}: cannot read ({exc.strerror})") from None
        return cls.parse(raw, path, source)

    @classmethod
    def parse(cls, raw: bytes, path: Path, source: str) -> _Document:
        """Parse a stack file's bytes (from disk or a git blob); BadInputError naming `source` if not editable."""
        from ruamel.yaml.comments import CommentedMap
        from ruamel.yaml.error import YAMLError

        try:
            original = raw.decode("utf-8").replace("\r\n", "\n")
        except UnicodeDecodeError as exc:
            raise BadInputError(f"{source}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        newline = "\r\n" if b"\r\n" in raw else "\n"
        yaml = round_trip_yaml(guess_indent(original))
        try:
            document = yaml.load(original)
        except YAMLError as exc:
            raise invalid_yaml(source, exc) from None
        prefix = ""
        if document is None:
            # Nothing but comments (or nothing at all): keep them above the new config block.
            prefix = original if not original or original.endswith("\n") else original + "\n"
            document = CommentedMap()
        if not isinstance(document, CommentedMap):
            raise BadInputError(f"{source}: must be a mapping with a `config:` block")
        return cls(path, source, original, newline, yaml, document, prefix)

    def text(self) -> str:
        """The document as it would be written now, model blocks one blank line apart (stacks/separate.py)."""
        from mlinfra.stacks.separate import separate_models

        return separate_models(dump_yaml(self.yaml, self.document, self.prefix))


def pin_version(project: Project, stage: str, model: str, pin: Mapping[str, Any]) -> bool:
    """Pin `model`'s version in `stacks/Pulumi.<stage>.yaml`; True if the file changed, False if already pinned.

    `pin` holds version, digest, image, artifact and (for a framework image) the handler's layout, which the
    endpoint turns into the container's environment. `mlinfra:models.<model>` is created if missing; the model's
    other settings and every comment are kept. The resulting stack is validated before anything is written, and the
    file is replaced atomically. Raises BadInputError (naming the file and key) for an unknown stage, a file that is
    not valid YAML, or a pin or stack that does not validate; the file is then left untouched.
    """
    doc = _Document.load(project, stage)
    text = _pinned(project, stage, model, pin, doc)
    if text is None:
        return False
    _write_atomically(doc.path, text, doc.newline)
    return True


def pinned_text(
    project: Project, stage: str, model: str, pin: Mapping[str, Any], *, raw: bytes, source: str
) -> str | None:
    """The stack file `raw` with `pin` set for `model` (validated; "\\n" line ends), or None if already pinned.

    The edit `pin_version` makes, on bytes from anywhere (a file, or a blob at another commit).
    """
    doc = _Document.parse(raw, project.stage_file(project.require_stage(stage)), source)
    return _pinned(project, stage, model, pin, doc)


def _pinned(project: Project, stage: str, model: str, pin: Mapping[str, Any], doc: _Document) -> str | None:
    """`doc`'s text with `pin` set for `model`, validated; None when the file already pins exactly that."""
    source = doc.source
    models = block_mapping(block_mapping(doc.document, "config", source, "config"), MODELS_KEY, source, MODELS_KEY)
    entry = block_mapping(models, model, source, f"{MODELS_KEY}.{model}")
    before = _plain(entry.get(PIN_KEY))
    set_pin(entry, pin)
    pinned = _validate(project, stage, source, doc.text()).models[model].pinned
    if pinned is None:  # pragma: no cover - a `pinned` block was just written and validated
        raise BadInputError(f"{source}: {MODELS_KEY}.{model}.{PIN_KEY}: not set; file not changed")
    canonical = pinned.model_dump(by_alias=True, exclude_none=True)
    if same_pin(before, canonical):
        return None  # already pinned: leave the file (and its mtime) alone
    if not same_pin(_plain(pin), canonical):
        set_pin(entry, canonical)  # write validated values in their canonical types: version "3" becomes 3
    text = doc.text()
    return None if text == doc.original else text


def _plain(value: Any) -> Any:
    """A snapshot of a mapping as a plain dict (the round-trip document is edited in place afterwards)."""
    return dict(value) if isinstance(value, Mapping) else value


def read_pin(project: Project, stage: str, model: str) -> dict[str, Any] | None:
    """The version pinned for `model` in `stage` (version, digest, image, artifact, handler), or None if none is.

    None also when the stage does not declare the model. The stack is read and validated like `load_stage`, so an
    invalid stack file raises BadInputError naming the file and key.
    """
    from mlinfra.stacks.files import load_stage

    settings = load_stage(project, stage).config.models.get(model)
    if settings is None or settings.pinned is None:
        return None
    return settings.pinned.model_dump(by_alias=True, exclude_none=True)


DECLARED_COMMENT = "inherits this stage's mlinfra:modelDefaults; add keys here to override them"


def declare_model(project: Project, stages: list[str], model: str) -> list[str]:
    """Declare `model` under `mlinfra:models` in each stage's stack file; the stages whose file changed.

    A stage that already declares it is left as it is. Every file is edited in round-trip mode (comments kept),
    and every edited stack is validated before any file is written, so a refusal writes nothing; each file is then
    replaced atomically. Re-running after an interruption declares what is still missing.
    """
    from ruamel.yaml.comments import CommentedMap

    pending: list[tuple[str, _Document, str]] = []
    for stage in stages:
        doc = _Document.load(project, stage)
        config = block_mapping(doc.document, "config", doc.source, "config")
        models = block_mapping(config, MODELS_KEY, doc.source, MODELS_KEY)
        if model in models:
            continue
        entry = CommentedMap()
        entry.fa.set_flow_style()  # `churn: {}`, as the shipped stack files declare models
        models[model] = entry
        models.yaml_add_eol_comment(DECLARED_COMMENT, model)
        text = doc.text()
        _validate(project, stage, doc.source, text)
        pending.append((stage, doc, text))
    for _stage, doc, text in pending:
        _write_atomically(doc.path, text, doc.newline)
    return [stage for stage, _doc, _text in pending]
