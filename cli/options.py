"""Options shared by several commands, as decorators."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

stack_option: Callable[[F], F] = click.option(
    "--stack",
    "-s",
    "stack",
    metavar="STAGE",
    help="Stack (stage) to act on; default $MLINFRA_STACK, then the one chosen with `mlinfra stack select`.",
)
json_option: Callable[[F], F] = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout instead of a table."
)


def emit_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def console() -> Any:
    """A rich console for tables and trees: the terminal's width, or a wide fixed one when piped (no cropping)."""
    import sys

    from rich.console import Console

    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


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
