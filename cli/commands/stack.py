"""`mlinfra stack list | select | show`: the stages of this repository and what each one runs."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import click

from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.options import complete_stages, console, emit_json, json_option, stack_option
from mlinfra.stacks.files import Stage, load_stage
from mlinfra.stacks.project import Project

ACCOUNT_PLACEHOLDER = "<account>"


def _summary(stage: Stage) -> dict[str, Any]:
    cfg = stage.config
    return {
        "stage": stage.name,
        "models": {
            name: {"pinned": model.pinned.version if model.pinned else None}
            for name, model in sorted(cfg.models.items())
        },
    }


def _pins_text(models: dict[str, Any]) -> str:
    if not models:
        return "-"
    return ", ".join(
        f"{name} v{info['pinned']}" if info["pinned"] else f"{name} (not pinned)" for name, info in models.items()
    )


@click.group()
def stack() -> None:
    """List, select and inspect the stacks (one per stage) in stacks/.

    \b
    Examples:
      mlinfra stack list
      mlinfra stack select staging
      mlinfra stack show --stack prod --json
    """


@stack.command("list")
@json_option
def list_stacks(as_json: bool) -> None:
    """List the stages found in stacks/, the selected one marked, with their models and pinned versions.

    A stack file that does not validate is listed with its error, and the command exits 2.

    \b
    Examples:
      mlinfra stack list
      mlinfra stack list --json | jq '.[] | select(.selected)'
    """
    project = Project.find()
    selected = project.selected()
    rows: list[dict[str, Any]] = []
    first_error: MlinfraError | None = None
    for name in project.stages():
        try:
            row = _summary(load_stage(project, name))
        except MlinfraError as exc:
            first_error = first_error or exc
            row = {"stage": name, "models": {}, "error": str(exc)}
        row["selected"] = name == selected
        rows.append(row)
    if as_json:
        emit_json(rows)
    else:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        table.add_column("", width=1)
        table.add_column("STAGE")
        table.add_column("MODELS")
        for row in rows:
            text = f"[red]{row['error']}[/red]" if "error" in row else _pins_text(row["models"])
            table.add_row("*" if row["selected"] else "", row["stage"], text)
        console().print(table)
    if first_error is not None:
        raise BadInputError(str(first_error))


@stack.command("select")
@click.argument("stage")
@json_option
def select(stage: str, as_json: bool) -> None:
    """Select STAGE for the commands that follow in this checkout.

    The choice is kept in .mlinfra/selected-stack; --stack and $MLINFRA_STACK override it. When the `pulumi` CLI is
    installed, its stack is selected too.

    \b
    Examples:
      mlinfra stack select dev
      MLINFRA_STACK=prod mlinfra stack show      # one-off override
    """
    project = Project.find()
    project.select(stage)
    pulumi_selected = False
    pulumi_bin = shutil.which("pulumi")
    if pulumi_bin is not None:
        result = subprocess.run(
            [pulumi_bin, "stack", "select", stage, "--create=false"],
            cwd=project.root,
            capture_output=True,
            text=True,
            check=False,
        )
        pulumi_selected = result.returncode == 0
        if not pulumi_selected:
            detail = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
            click.echo(f"warning: selected {stage} for mlinfra, but `pulumi stack select` failed: {detail}", err=True)
    if as_json:
        emit_json({"stage": stage, "pulumiSelected": pulumi_selected})
    else:
        click.echo(f"Selected stack {stage}." + (" (pulumi too)" if pulumi_selected else ""))


@stack.command("show")
@click.argument("stage", required=False, shell_complete=complete_stages)
@stack_option
@json_option
def show(stage: str | None, stack: str | None, as_json: bool) -> None:
    """Show a stage's settings: region, registry bucket, and per model how it is served and what is pinned.

    The stage is --stack (or STAGE, the older spelling), else the selected stack.

    \b
    Examples:
      mlinfra stack show
      mlinfra stack show prod --json
    """
    from mlinfra_infra import naming

    project = Project.find()
    if stage and stack and stage != stack:
        raise click.UsageError(f"STAGE {stage} and --stack {stack} disagree; give one of them")
    loaded = load_stage(project, project.resolve_stack(stack or stage))
    cfg = loaded.config
    bucket = cfg.registry.bucket_name or naming.registry_bucket(
        cfg.project, cfg.stage, cfg.region, cfg.account_id or ACCOUNT_PLACEHOLDER
    )
    if as_json:
        data = cfg.model_dump(mode="json", by_alias=True, exclude={"model_defaults"})
        data["registryBucket"] = bucket
        data["file"] = loaded.source
        data["delivery"] = cfg.delivery_mode
        emit_json(data)
        return
    from rich.table import Table

    out = console()
    out.print(f"[bold]{cfg.stage}[/bold]  ({loaded.source})")
    out.print(f"  region      {cfg.region}")
    out.print(f"  account     {cfg.account_id or 'caller identity at deploy time'}")
    out.print(f"  registry    s3://{bucket}")
    out.print(f"  monitoring  {'on' if cfg.monitoring.enabled else 'off'}{' + drift' if cfg.monitoring.drift else ''}")
    out.print(f"  sandbox VM  {'yes' if cfg.sandbox.enabled else 'no'}")
    out.print(f"  delivery    {cfg.delivery_mode}{'' if cfg.delivery else ' (default for this stage)'}")
    table = Table(box=None, pad_edge=False)
    for column in ("MODEL", "PINNED", "DIGEST", "SERVING", "DEPLOYMENT", "GATES"):
        table.add_column(column)
    for name, model in sorted(cfg.models.items()):
        serving = (
            f"serverless {model.serverless_memory_mb} MB"
            if model.mode == "serverless"
            else f"{model.instance_count}x {model.instance_type}"
        )
        gates = [f"from {model.gates.from_stage}"] if model.gates.from_stage else []
        gates += ["approval"] if model.gates.require_approval else []
        gates += [f"soak {model.gates.min_soak_hours:g}h"] if model.gates.min_soak_hours else []
        gates += [f"{metric}" for metric in model.gates.metrics]
        table.add_row(
            name,
            f"v{model.pinned.version}" if model.pinned else "-",
            model.pinned.digest[:19] if model.pinned else "-",
            serving,
            model.deployment.strategy,
            ", ".join(gates) or "-",
        )
    out.print(table)
