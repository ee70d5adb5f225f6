"""Reading a stage's stack file into validated config, with errors that name the file and the key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlinfra.errors import BadInputError
from mlinfra.stacks.project import Project
from mlinfra.stacks.yamlio import read_yaml

if TYPE_CHECKING:
    from mlinfra_infra.config import StackConfig


@dataclass(frozen=True)
class Stage:
    """One stage's stack: where its file is, its flat config (secrets as placeholders) and the typed config."""

    project: Project
    name: str
    raw: dict[str, Any]
    config: StackConfig

    @property
    def source(self) -> str:
        """The stack file, relative to the project root, as errors name it."""
        return self.project.relative(self.project.stage_file(self.name))


STACK_FILE_KEYS = frozenset({"config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"})


def raw_config(project: Project, stage: str) -> dict[str, Any]:
    """Project-level config overlaid by the stack file's `config:` block, secrets replaced by placeholders."""
    path = project.stage_file(project.require_stage(stage))
    source = project.relative(path)
    return raw_config_of(project, read_yaml(path, source), source)


def raw_config_of(project: Project, data: Any, source: str) -> dict[str, Any]:
    """The flat config of a parsed stack file (`data`), merged over Pulumi.yaml's project-level config."""
    from mlinfra_infra.config import ConfigError, split_config

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadInputError(f"{source}: must be a mapping with a `config:` block")
    unknown = set(data) - STACK_FILE_KEYS
    if unknown:
        raise BadInputError(f"{source}: {sorted(unknown)[0]}: unknown top-level key (expected config:)")
    block = data.get("config") or {}
    if not isinstance(block, dict):
        raise BadInputError(f"{source}: config: must be a mapping of keys to values")
    merged = {**project.config_defaults(), **{str(k): v for k, v in block.items()}}
    try:
        ours, others, _ = split_config(merged, source)
    except ConfigError as exc:
        raise BadInputError(str(exc)) from None
    return {**others, **{f"mlinfra:{key}": value for key, value in ours.items()}}


def validate(project: Project, stage: str, raw: dict[str, Any], source: str) -> StackConfig:
    """Validate flat config into a StackConfig; BadInputError (exit 2) names the file and key."""
    from mlinfra_infra.config import ConfigError, load_stack_config

    try:
        return load_stack_config(raw, project=project.name, stage=stage, source=source)
    except ConfigError as exc:
        raise BadInputError(str(exc)) from None


def load_stage(project: Project, stage: str) -> Stage:
    """Read and validate one stage; BadInputError (exit 2) names the file and key of the first problem."""
    raw = raw_config(project, stage)
    source = project.relative(project.stage_file(stage))
    return Stage(project=project, name=stage, raw=raw, config=validate(project, stage, raw, source))


def check_chain(project: Project, stages: list[str]) -> None:
    """Refuse (exit 2) cross-account settings that break promotion into or out of `stages`.

    Loads each stage's neighbours in promotion order, so `mlinfra preview --stack prod` also checks staging's
    `registry.readerRoleArns` against prod's `access.roleArn` (mlinfra_infra.accounts.check_promotion_chain).
    """
    from mlinfra_infra.accounts import check_promotion_chain

    order = project.stages()
    wanted = {n for s in stages if s in order for n in order[max(0, order.index(s) - 1) : order.index(s) + 2]}
    configs = {name: load_stage(project, name).config for name in order if name in wanted}
    problems = check_promotion_chain(configs)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BadInputError(problems[0] + more)
