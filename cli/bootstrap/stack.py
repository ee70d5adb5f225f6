"""The bootstrap stack's files, its typed config and its offline render (Pulumi's mock runtime, no credentials)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlinfra.errors import BadInputError, MlinfraError, ToolMissingError
from mlinfra.stacks.project import Project
from mlinfra.stacks.yamlio import read_yaml

if TYPE_CHECKING:
    from mlinfra.stacks.render import RenderedStack
    from mlinfra_infra.bootstrap.config import BootstrapConfig

BOOTSTRAP_DIR = Path("infra") / "bootstrap"
INSTALL_HINT = (
    "install it (https://www.pulumi.com/docs/install/) and run again; `mlinfra bootstrap preview` works without it"
)
STACK = "bootstrap"


@dataclass(frozen=True)
class Bootstrap:
    """The bootstrap stack of a project: its directory, flat config and validated config."""

    project: Project
    raw: dict[str, Any]
    config: BootstrapConfig

    @property
    def directory(self) -> Path:
        """infra/bootstrap/ of the checkout: the Pulumi project of the bootstrap stack."""
        return self.project.root / BOOTSTRAP_DIR

    @property
    def source(self) -> str:
        """The stack file as errors name it."""
        return str(BOOTSTRAP_DIR / f"Pulumi.{STACK}.yaml")


def find_project() -> Project:
    """The platform repository, also from inside infra/bootstrap/ (whose own Pulumi.yaml is the bootstrap's)."""
    project = Project.find()
    if (project.root / f"Pulumi.{STACK}.yaml").is_file() and project.root.parent.name == BOOTSTRAP_DIR.parts[0]:
        return Project.find(project.root.parent.parent)
    return project


def stack_file(project: Project) -> Path:
    """infra/bootstrap/Pulumi.bootstrap.yaml of the checkout."""
    return project.root / BOOTSTRAP_DIR / f"Pulumi.{STACK}.yaml"


def load(project: Project) -> Bootstrap:
    """Read and validate the bootstrap stack file; BadInputError (exit 2) names the file and key of a problem."""
    from mlinfra_infra.bootstrap.config import load_bootstrap_config
    from mlinfra_infra.config import ConfigError

    path = stack_file(project)
    source = project.relative(path)
    if not path.is_file():
        raise BadInputError(f"{source}: file not found; copy it from the mlinfra repository and set your accounts")
    data = read_yaml(path, source) or {}
    block = data.get("config") if isinstance(data, dict) else None
    if not isinstance(block, dict):
        raise BadInputError(f"{source}: must be a mapping with a `config:` block")
    raw = {str(key): value for key, value in block.items()}
    try:
        config = load_bootstrap_config(raw, project=project.name, source=source)
    except ConfigError as exc:
        raise BadInputError(str(exc)) from None
    check_stages(project, config, source)
    return Bootstrap(project=project, raw=raw, config=config)


def check_stages(project: Project, config: BootstrapConfig, source: str) -> None:
    """Refuse (exit 2) a bootstrap stack that disagrees with the stage stacks it serves.

    Every stage with a stack file needs an entry (its roles); a stage's `mlinfra:accountId`, registry bucket and
    `mlinfra:access.roleArn` (the promotion role mlinfra assumes) must be the ones the bootstrap derives.
    """
    from mlinfra.stacks.files import load_stage
    from mlinfra_infra.bootstrap import names

    key = "bootstrap:stages"
    for stage in project.stages():
        stage_file = project.relative(project.stage_file(stage))
        if stage not in config.stages:
            raise BadInputError(
                f"{source}: {key}: no entry for stage {stage!r} ({stage_file}); add it with its accountId"
            )
        stage_config = load_stage(project, stage).config
        account = config.stages[stage].account_id
        if stage_config.account_id is not None and stage_config.account_id != account:
            raise BadInputError(
                f"{source}: {key}.{stage}.accountId: {account} but {stage_file} says mlinfra:accountId "
                f"{stage_config.account_id}; make them the same"
            )
        bucket = stage_config.registry.bucket_name
        if bucket is not None and bucket != config.registry_bucket(stage):
            raise BadInputError(
                f"{source}: {key}.{stage}.registryBucket: {config.registry_bucket(stage)} but {stage_file} names "
                f"the registry {bucket}; set registryBucket: {bucket}"
            )
        _check_source_roles(config, stage, stage_file, stage_config.access)
        promotion = names.role_arn(account, names.role(config.project, stage, "promotion"))
        role = stage_config.access.role_arn
        if role is not None and role != promotion:
            raise BadInputError(
                f"{stage_file}: mlinfra:access.roleArn: {role} is not the bootstrap's promotion role of {stage}; "
                f"set it to {promotion}"
            )


def _check_source_roles(config: BootstrapConfig, stage: str, stage_file: str, access: Any) -> None:
    """A stage's `access.sourceRoleArn` / `approvalRoleArn` are the roles the bootstrap lends its next stage."""
    following = config.next_stage(stage)
    for key, given, expected in (
        ("sourceRoleArn", access.source_role_arn, config.source_role_arn(stage)),
        ("approvalRoleArn", access.approval_role_arn, config.approval_role_arn(stage)),
    ):
        if given is None or given == expected:
            continue
        if expected is None:
            why = f"{following} shares its account" if following else "no stage is promoted from it"
            raise BadInputError(
                f"{stage_file}: mlinfra:access.{key}: {given}, but the bootstrap creates no such role for {stage} "
                f"({why}); remove it"
            )
        raise BadInputError(
            f"{stage_file}: mlinfra:access.{key}: {given} is not the bootstrap's role for {following} to use "
            f"{stage} as its source; set it to {expected}"
        )


def render(bootstrap: Bootstrap) -> RenderedStack:
    """Render the bootstrap program offline; a failing program exits 1 in one line."""
    from mlinfra.stacks.render import render_program
    from mlinfra_infra.bootstrap import program

    try:
        return render_program(
            bootstrap.raw,
            project=f"{bootstrap.project.name}-bootstrap",
            stack=STACK,
            declare=lambda: program.build(bootstrap.config),
        )
    except Exception as exc:  # the program failed under the mock runtime: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MlinfraError(f"{bootstrap.source}: rendering the bootstrap program failed: {first}") from exc


def require_pulumi_cli() -> str:
    """The `pulumi` CLI's path; ToolMissingError (exit 1) saying how to install it otherwise."""
    found = shutil.which("pulumi")
    if found is None:
        raise ToolMissingError(f"the pulumi CLI is not installed (needed to apply the bootstrap stack): {INSTALL_HINT}")
    return found


def up(bootstrap: Bootstrap, on_output: Callable[[str], None]) -> str:
    """`pulumi up` of the bootstrap stack in infra/bootstrap/ through the Automation API; the update's result.

    The stack is created on first use in whatever backend `pulumi login` points at (its own state cannot live in
    the bucket it creates). Pulumi's failure is one line (exit 1).
    """
    from pulumi import automation as auto

    try:
        selected = auto.create_or_select_stack(stack_name=STACK, work_dir=str(bootstrap.directory))
        result = selected.up(on_output=on_output)
    except auto.errors.CommandError as exc:
        raise MlinfraError(f"pulumi up failed for the bootstrap stack: {str(exc).strip().splitlines()[-1]}") from None
    return str(result.summary.result)
