"""The `mlinfra` command: a click group that loads each command module only when that command runs.

Importing this module costs only click: heavy libraries (pulumi, pulumi_aws, boto3, moto) are imported inside the
commands that use them, so `mlinfra --help` stays instant.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from mlinfra.errors import MlinfraError

# Command name -> "module:attribute", grouped by subject (one module per subject under mlinfra.commands).
COMMANDS = {
    "stack": "mlinfra.commands.stack:stack",
    "preview": "mlinfra.commands.preview:preview",
    "check": "mlinfra.commands.check:check",
    "up": "mlinfra.commands.deploy:up",
    "destroy": "mlinfra.commands.deploy:destroy",
    "record-deployment": "mlinfra.commands.deploy:record_deployment",
    "register": "mlinfra.commands.register:register",
    "attach": "mlinfra.commands.attach:attach",
    "baseline": "mlinfra.commands.attach:baseline",
    "promote": "mlinfra.commands.promotion:promote",
    "approve": "mlinfra.commands.promotion:approve",
    "rollback": "mlinfra.commands.promotion:rollback",
    "history": "mlinfra.commands.status:history",
    "status": "mlinfra.commands.status:status",
    "local": "mlinfra.commands.local:local",
    "bootstrap": "mlinfra.commands.bootstrap:bootstrap",
    "drift": "mlinfra.commands.drift:drift",
    "serve": "mlinfra.commands.serve:serve",
    "versions": "mlinfra.commands.versions:versions",
    "show": "mlinfra.commands.versions:show",
    "diff": "mlinfra.commands.versions:diff",
    "init-model": "mlinfra.commands.models:init_model",
    "init-model-repo": "mlinfra.commands.models:init_model_repo",
    "model": "mlinfra.commands.models:model",
    "card": "mlinfra.commands.card:card",
    "ui": "mlinfra.commands.ui:ui",
    "repair": "mlinfra.commands.repair:repair",
}


class MlinfraGroup(click.Group):
    """Loads commands lazily and turns project errors into one-line messages with documented exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)  # noqa: S101 - a wiring mistake, caught by the help tests
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else None
        if name is not None and name not in COMMANDS and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.6)
            ctx.fail(f"No such command {name!r}" + (f" (did you mean {close[0]!r}?)." if close else "."))
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MlinfraError as exc:
            click.echo(f"error: {exc}", err=True)
            from mlinfra.errors import RefusedError
            from mlinfra.options import JSON_EMITTED, JSON_MODE

            if isinstance(exc, RefusedError) and ctx.meta.get(JSON_MODE) and not ctx.meta.get(JSON_EMITTED):
                # (A command that printed its own JSON report before refusing, like `check`, keeps stdout one document.)
                # A script asked for JSON: the refusal and every failing gate, on stdout, still with exit 3.
                import json

                refusal = {"refused": True, "exitCode": exc.exit_code, "error": str(exc), "failed": exc.failed}
                click.echo(json.dumps(refusal, indent=2))
            ctx.exit(exc.exit_code)


@click.group(cls=MlinfraGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mlinfra")
@click.option(
    "--local",
    is_flag=True,
    help="Use the local AWS emulator (`mlinfra local start`); same as MLINFRA_LOCAL=1. Never falls back to AWS.",
)
@click.option(
    "--project",
    "project",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="The platform repository's clone (holding Pulumi.yaml); same as MLINFRA_PROJECT. Default: found upwards.",
)
def cli(local: bool, project: str | None) -> None:
    """Move ML models from a notebook to a monitored SageMaker endpoint, one stage at a time.

    mlinfra works inside a clone of the platform repository (it finds Pulumi.yaml by walking up), or on the one
    --project / MLINFRA_PROJECT names. Each stage
    (sandbox, dev, staging, prod) is a Pulumi stack configured in stacks/Pulumi.<stage>.yaml.

    \b
    Examples:
      mlinfra stack list                 stages, their models and pinned versions
      mlinfra stack select dev           act on dev from now on (or pass --stack / set MLINFRA_STACK)
      mlinfra preview --all              render every stack offline: no engine, no credentials
      mlinfra up --stack dev             apply a stack through Pulumi's Automation API
      mlinfra local up                   try it all without AWS: an emulator with every stage's registry
      mlinfra --project ~/platform --local status --all

    Exit codes: 0 ok, 1 operation failed, 2 bad usage or input, 3 refused by a gate, policy, budget or threshold.
    """
    if local:
        import os

        from mlinfra.aws import LOCAL_ENV

        os.environ[LOCAL_ENV] = "1"
    if project:
        _use_project(project)


def _use_project(project: str) -> None:
    """`--project DIR`: the clone every command of this invocation works on (as MLINFRA_PROJECT, restored after)."""
    import os
    from pathlib import Path

    from mlinfra.stacks.project import ROOT_ENV

    previous = os.environ.get(ROOT_ENV)
    os.environ[ROOT_ENV] = str(Path(project).resolve())

    def restore() -> None:
        if previous is None:
            os.environ.pop(ROOT_ENV, None)
        else:
            os.environ[ROOT_ENV] = previous

    click.get_current_context().call_on_close(restore)
