"""The platform repository mlinfra works in: its root, Pulumi.yaml, the stack files and the selected stack."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from mlinfra.errors import BadInputError
from mlinfra.stacks.yamlio import read_text, read_yaml

PROJECT_FILE = "Pulumi.yaml"
STATE_DIR = ".mlinfra"
SELECTION_FILE = "selected-stack"
STACK_ENV = "MLINFRA_STACK"
ROOT_ENV = "MLINFRA_PROJECT"


def _config_value(entry: Any) -> Any:
    """A project-level config entry is a plain value or a mapping with `value` (or `default`)."""
    if isinstance(entry, dict) and ("value" in entry or "default" in entry):
        return entry.get("value", entry.get("default"))
    return entry


@dataclass(frozen=True)
class Project:
    """A checkout of the platform repository, found by walking up to Pulumi.yaml."""

    root: Path

    @classmethod
    def find(cls, start: Path | None = None) -> Project:
        """The project containing `start` (default: $MLINFRA_PROJECT or the working directory)."""
        here = (start or Path(os.environ.get(ROOT_ENV) or Path.cwd())).resolve()
        for candidate in (here, *here.parents):
            if (candidate / PROJECT_FILE).is_file():
                return cls(candidate)
        raise BadInputError(
            f"no {PROJECT_FILE} in {here} or any parent: run mlinfra inside a clone of the platform repo"
        )

    @cached_property
    def settings(self) -> dict[str, Any]:
        """Pulumi.yaml, parsed."""
        data = read_yaml(self.root / PROJECT_FILE, PROJECT_FILE)
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise BadInputError(f"{PROJECT_FILE}: name: required key is missing")
        return data

    @property
    def name(self) -> str:
        """The Pulumi project name (the prefix of every derived resource name)."""
        return str(self.settings["name"])

    @property
    def stacks_dir(self) -> Path:
        """Where the stack files live (Pulumi.yaml's stackConfigDir, default the root).

        In local mode, the scratch copy under .mlinfra/local/workspace/ (mlinfra.stacks.workspace): emulator pins
        never reach the real stack files.
        """
        from mlinfra.aws import local_mode

        if local_mode():
            from mlinfra.stacks.workspace import workspace_stacks

            return workspace_stacks(self.root, self.real_stacks_dir)
        return self.real_stacks_dir

    @property
    def real_stacks_dir(self) -> Path:
        """The checkout's own stack files, whatever the mode."""
        return self.root / str(self.settings.get("stackConfigDir") or ".")

    def config_defaults(self) -> dict[str, Any]:
        """Project-level config from Pulumi.yaml's `config:` block, as flat `ns:key` → value."""
        block = self.settings.get("config") or {}
        if not isinstance(block, dict):
            raise BadInputError(f"{PROJECT_FILE}: config: must be a mapping")
        return {str(key): _config_value(value) for key, value in block.items()}

    def stage_file(self, stage: str) -> Path:
        """The stack file of a stage (it may not exist)."""
        return self.stacks_dir / f"Pulumi.{stage}.yaml"

    def stages(self) -> list[str]:
        """Stages with a stack file, in the project's promotion order, then any others alphabetically."""
        found = {p.name[len("Pulumi.") : -len(".yaml")] for p in self.stacks_dir.glob("Pulumi.*.yaml") if p.is_file()}
        order = self.config_defaults().get("mlinfra:stages") or []
        ordered = [stage for stage in order if stage in found]
        return ordered + sorted(found - set(ordered))

    def relative(self, path: Path) -> str:
        """A path as shown in messages: relative to the project root."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    # Selection -------------------------------------------------------------------------------------------------

    @property
    def selection_file(self) -> Path:
        """Where the selected stack is remembered for this checkout."""
        return self.root / STATE_DIR / SELECTION_FILE

    def selected(self) -> str | None:
        """The stack selected in this checkout, if any."""
        if not self.selection_file.exists():
            return None
        return read_text(self.selection_file, self.relative(self.selection_file)).strip() or None

    def select(self, stage: str) -> None:
        """Remember `stage` as this checkout's stack (atomic write)."""
        self.require_stage(stage)
        self.selection_file.parent.mkdir(exist_ok=True)
        tmp = self.selection_file.with_suffix(".tmp")
        tmp.write_text(stage + "\n", encoding="utf-8")
        tmp.replace(self.selection_file)

    def require_stage(self, stage: str) -> str:
        """`stage` if it has a stack file; BadInputError with a suggestion otherwise."""
        path = self.stage_file(stage)
        if path.is_file():
            return stage
        if path.exists():
            raise BadInputError(f"{self.relative(path)} is a directory, not a stack file: remove or rename it")
        from mlinfra_infra.config import suggest

        known = self.stages()
        raise BadInputError(
            f"unknown stage {stage!r}: no {self.relative(self.stage_file(stage))}"
            f"{suggest(stage, known)} (known: {', '.join(known) or 'none'})"
        )

    def resolve_stack(self, option: str | None) -> str:
        """The stack a command acts on: --stack, else $MLINFRA_STACK, else the selection."""
        stage = option or os.environ.get(STACK_ENV) or self.selected()
        if not stage:
            raise BadInputError("no stack selected: pass --stack STAGE or run `mlinfra stack select STAGE`")
        return self.require_stage(stage)
