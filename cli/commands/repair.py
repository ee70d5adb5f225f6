"""`mlinfra repair`: rebuild registry state that was changed out of band, from what the registry recorded."""

from __future__ import annotations

import click

from mlinfra.options import complete_models, emit_json, json_option, stage_option
from mlinfra.stacks.project import Project


@click.group()
def repair() -> None:
    """Rebuild registry state deleted out of band, from the stage's audit log.

    \b
    Examples:
      mlinfra repair pointer churn --stack dev
    """


@repair.command("pointer")
@click.argument("model", shell_complete=complete_models)
@stage_option("Stage whose pointer to rebuild.", required=True)
@json_option
def pointer(model: str, stage: str, as_json: bool) -> None:
    """Rebuild MODEL's stage pointer (stages/MODEL.json) from the stage's audit log.

    `status` reports a pointer that is missing while the audit log records moves of it, and promote, rollback,
    register and record-deployment refuse to act on it (exit 1). This command rebuilds it: the version and record of
    the newest register, promotion, rollback or deploy record, and the deployment of the newest deploy record. It
    writes only when the pointer is absent (an existing pointer is left as it is, exit 0) and adds a `repair` audit
    record. A stage with no recorded move has nothing to rebuild (exit 2).

    \b
    Examples:
      mlinfra repair pointer churn --stack dev
      mlinfra repair pointer churn --stack prod --json
    """
    from mlinfra.registry import repair as repairs

    project = Project.find()
    result = repairs.repair_pointer(project, model, stage)
    if as_json:
        emit_json(result)
        return
    if not result["rebuilt"]:
        click.echo(f"{model}: {stage}'s pointer is present (v{result['version']}); nothing to repair")
        return
    source = result["from"]
    click.echo(
        f"{model}: rebuilt {stage}'s pointer at v{result['version']} from the audit log "
        f"({source['action']} at {source['time']}); a repair record is in `mlinfra history {model} --stack {stage}`"
    )
    if result["pinned"] != result["version"]:
        pinned = f"v{result['pinned']}" if result["pinned"] else "nothing"
        click.echo(f"  note: {project.relative(project.stage_file(stage))} pins {pinned}: see `mlinfra status`")
