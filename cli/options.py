"""Options shared by several commands, as decorators."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def complete_stages(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion: the stages with a stack file in this project (nothing outside a project)."""
    from mlinfra.errors import MlinfraError
    from mlinfra.stacks.project import Project

    try:
        return [stage for stage in Project.find().stages() if stage.startswith(incomplete)]
    except MlinfraError:
        return []


def complete_models(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion: the models declared under mlinfra:models in any stack file of this project."""
    from mlinfra.errors import MlinfraError
    from mlinfra.stacks.project import Project
    from mlinfra.stacks.yamlio import read_yaml

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
    from mlinfra.aws import local_mode

    return local_mode()


def next_command(arguments: str) -> str:
    """A `Next:` hint's command as it runs here: `mlinfra --local ...` in local mode."""
    from .aws import mlinfra_command

    return mlinfra_command(arguments)


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


JSON_EMITTED = "mlinfra.json-emitted"  # ctx.meta key: the command already printed its JSON document


def emit_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[JSON_EMITTED] = True


def console() -> Any:
    """A rich console for tables and trees.

    On a terminal, output fits its width without cutting a value: a table that fits is printed as it is; one that
    does not is printed vertically, one record at a time (`COLUMN  value` lines, long values wrapped under
    themselves, a blank line between records), so an 80-column terminal still shows every digest and note whole.
    Other lines stay on one line and end in an ellipsis instead of wrapping mid-word. Piped, the width is a fixed
    200 columns and nothing is cropped, so `grep` sees whole values. No automatic highlighting of numbers or paths;
    NO_COLOR is honoured by rich itself.
    """
    import sys

    from rich.console import Console

    if not sys.stdout.isatty():
        return Console(soft_wrap=True, width=200, highlight=False)
    return _make_fitting_console()(highlight=False)


def vertical_lines(headers: list[str], rows: list[list[str]], width: int) -> list[str]:
    """A table as records, one `HEADER  value` line per cell, values wrapped to `width` under themselves."""
    import textwrap

    label = max((len(h) for h in headers), default=0) + 2
    room = max(width - label, 20)
    lines: list[str] = []
    for number, row in enumerate(rows):
        if number:
            lines.append("")
        for header, cell in zip(headers, row, strict=False):
            pieces = textwrap.wrap(cell, room, break_long_words=True, break_on_hyphens=False) or [""]
            lines.append(f"{header:<{label}}{pieces[0]}")
            lines += [" " * label + piece for piece in pieces[1:]]
    return lines


def _plain(cell: Any) -> str:
    return str(getattr(cell, "plain", cell))


def _make_fitting_console() -> Any:
    from rich.console import Console

    class FittingConsole(Console):
        """A terminal console: tables that fit print as they are, others vertically (see `console`)."""

        def print(self, *objects: Any, **options: Any) -> None:
            from rich.table import Table

            for item in objects:
                if isinstance(item, Table) and not self._fits(item):
                    headers = [_plain(c.header) for c in item.columns]
                    cells = [[_plain(cell) for cell in c.cells] for c in item.columns]
                    rows = [list(row) for row in zip(*cells, strict=False)]
                    for line in vertical_lines(headers, rows, self.width):
                        super().print(line, no_wrap=True, overflow="ignore", crop=False, highlight=False)
                    continue
                options.setdefault("no_wrap", True)
                options.setdefault("overflow", "ellipsis")
                super().print(item, **options)

        def _fits(self, table: Any) -> bool:
            columns = table.columns
            natural = [max([len(_plain(c.header)), *(len(_plain(cell)) for cell in c.cells)]) for c in columns]
            padding = 2 * max(len(columns) - 1, 0)
            return sum(natural) + padding <= self.width

    return FittingConsole


all_option: Callable[[F], F] = click.option("--all", "all_stacks", is_flag=True, help="Every stack in stacks/.")


def chosen_stages(project: Any, stack: str | None, all_stacks: bool) -> list[str]:
    """The stages `--stack S` / `--all` (or the selection) name; a usage error when both are given."""
    from mlinfra.errors import BadInputError

    if all_stacks and stack:
        raise click.UsageError("give --stack or --all, not both")
    stages: list[str] = project.stages() if all_stacks else [project.resolve_stack(stack)]
    if not stages:
        raise BadInputError(f"no stack files in {project.relative(project.stacks_dir)}/")
    return stages
