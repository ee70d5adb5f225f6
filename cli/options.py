"""Options shared by several commands, as decorators."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def complete_stages(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion: the stages with a stack file in this project (nothing outside a project)."""
    from .errors import MlinfraError
    from .project import Project

    try:
        return [stage for stage in Project.find().stages() if stage.startswith(incomplete)]
    except MlinfraError:
        return []


def complete_models(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion: the models declared under mlinfra:models in any stack file of this project."""
    from .errors import MlinfraError
    from .project import Project, read_yaml

    found: set[str] = set()
    try:
        project = Project.find()
        for stage in project.stages():
            config = (read_yaml(project.stage_file(stage)) or {}).get("config") or {}
            models = config.get("mlinfra:models") if isinstance(config, dict) else None
            found.update(str(name) for name in models or {} if isinstance(models, dict))
    except (MlinfraError, AttributeError):
        return []
    return sorted(name for name in found if name.startswith(incomplete))


def in_local_mode() -> bool:
    """Whether local mode is on (`mlinfra --local` or MLINFRA_LOCAL=1)."""
    from .aws import local_mode

    return local_mode()


def next_command(arguments: str) -> str:
    """A `Next:` hint's command as it runs here: `mlinfra --local ...` in local mode."""
    return f"mlinfra {'--local ' if in_local_mode() else ''}{arguments}"


stack_option: Callable[[F], F] = click.option(
    "--stack",
    "-s",
    "stack",
    metavar="STAGE",
    shell_complete=complete_stages,
    help="Stack (stage) to act on; default $MLINFRA_STACK, then the one chosen with `mlinfra stack select`.",
)
JSON_MODE = "mlinfra.json"  # ctx.meta key: the command prints JSON (errors too, see main.MlinfraGroup.invoke)


def _remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[JSON_MODE] = True
    return value


def stage_option(help_text: str, *, required: bool = False) -> Callable[[F], F]:
    """`--stack STAGE` (the one spelling for the stage a command acts on) into the `stage` argument.

    `--stage` is kept as a hidden alias for the spelling these commands had before. The alias is processed first
    when given (click handles given options before missing ones) and remembered in ctx.meta for `--stack`.
    """
    alias = "mlinfra.stage-alias"

    def remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.meta[alias] = value

    def resolve(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        value = value if value is not None else ctx.meta.get(alias)
        if value is None and required and not ctx.resilient_parsing:
            raise click.MissingParameter(ctx=ctx, param=param)
        return value

    def decorate(function: F) -> F:
        function = click.option(
            "--stage", "stage_alias", hidden=True, expose_value=False, callback=remember, metavar="STAGE"
        )(function)
        return click.option(
            "--stack",
            "-s",
            "stage",
            metavar="STAGE",
            help=help_text + (" [required]" if required else ""),
            callback=resolve,
            shell_complete=complete_stages,
        )(function)

    return decorate


json_option: Callable[[F], F] = click.option(
    "--json",
    "as_json",
    is_flag=True,
    callback=_remember_json,
    help="Print machine-readable JSON on stdout instead of a table.",
)


def emit_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def console() -> Any:
    """A rich console for tables and trees: the terminal's width, or a wide fixed one when piped (no cropping)."""
    import sys

    from rich.console import Console

    # highlight=False: no colouring of numbers or paths rich guesses at; NO_COLOR is honoured by rich itself.
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200, highlight=False)


all_option: Callable[[F], F] = click.option("--all", "all_stacks", is_flag=True, help="Every stack in stacks/.")


def chosen_stages(project: Any, stack: str | None, all_stacks: bool) -> list[str]:
    """The stages `--stack S` / `--all` (or the selection) name; a usage error when both are given."""
    from .errors import BadInputError

    if all_stacks and stack:
        raise click.UsageError("give --stack or --all, not both")
    stages: list[str] = project.stages() if all_stacks else [project.resolve_stack(stack)]
    if not stages:
        raise BadInputError(f"no stack files in {project.relative(project.stacks_dir)}/")
    return stages
