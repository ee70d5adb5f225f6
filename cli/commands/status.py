"""`mlinfra history | status`: what happened to a model, and what each stage pins, points to and runs."""

from __future__ import annotations

from typing import Any

import click

from mlinfra.options import (
    all_option,
    chosen_stages,
    complete_models,
    console,
    emit_json,
    json_option,
    stack_option,
    stage_option,
)
from mlinfra.stacks.project import Project


def _time(text: str) -> str:
    return text.replace("T", " ")[:19]


@click.command()
@click.argument("model", shell_complete=complete_models)
@stage_option("Only this stage (default: every stage).")
@json_option
def history(model: str, stage: str | None, as_json: bool) -> None:
    """Show MODEL's audit trail, newest first: registrations, promotions, approvals, rollbacks, deployments.

    A promotion into a stage delivered by pull request shows its pull request (or branch) under DETAIL; a `deploy`
    record (written when the apply of a commit is recorded) shows the commit and the run's URL. A record deleted out
    of band (hidden behind a delete marker) is still read and shown as DELETED (`deleted` in --json).

    \b
    Examples:
      mlinfra history churn
      mlinfra history churn --stack prod --json | jq '.[0]'
    """
    from rich.table import Table

    from mlinfra.registry import status as stagestatus

    notes: list[str] = []
    records = stagestatus.history(Project.find(), model, stage, notes=notes)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if as_json:
        emit_json(records)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("TIME (UTC)", "ACTION", "STAGE", "VERSION", "FROM", "ACTOR", "REASON", "DETAIL"):
        table.add_column(column)
    for r in records:
        previous = f"v{r['previous']}" if r.get("previous") else "-"
        forced = " (forced)" if r.get("forced") else ""
        forced += " (DELETED)" if r.get("deleted") else ""
        table.add_row(
            _time(r["time"]),
            r["action"] + forced,
            r["stage"],
            f"v{r['version']}",
            previous,
            r.get("actor", "-").rsplit("/", 1)[-1],
            r.get("reason") or "-",
            _detail(r),
        )
    console().print(table)


def _detail(record: dict[str, Any]) -> str:
    """Where a record's change went: its pull request or branch, or the deployed commit and run; or its deletion."""
    deleted = record.get("deleted")
    if isinstance(deleted, dict):
        return f"deleted out of band at {_time(str(deleted.get('time')))}; kept as a noncurrent object version"
    proposal = record.get("pullRequest")
    if isinstance(proposal, dict):
        return str(proposal.get("url") or f"branch {proposal.get('branch')}")
    if record.get("action") == "deploy":
        commit = str(record.get("commit") or "uncommitted")[:12]
        return " ".join(part for part in (f"commit {commit}", record.get("runUrl")) if part)
    return "-"


@click.command()
@stack_option
@all_option
@json_option
def status(stack: str | None, all_stacks: bool, as_json: bool) -> None:
    """Show per model and stage: the pinned version, the registry's pointer, the live endpoint, drift and alarms.

    DRIFT is the last MaxPSI the drift job published (two days back at most) and the drift alarm's state ("job
    silent" when the drift-silent alarm fires); `--json` rows carry it as `drift: {maxPsi, time, alarm, silentAlarm}`,
    and the endpoint's state as `endpoint` (SageMaker's EndpointStatus, null without an endpoint).

    PINNED is this checkout's stack file; POINTER the version the registry says the stage runs; DEPLOYED the
    version whose apply was recorded (`mlinfra record-deployment`) and since when; LIVE what the endpoint serves.
    A promotion waiting in a pull request, and every mismatch, is called out ("v7 proposed in <PR>, not deployed";
    "pinned v7, live v6: apply pending"); so is a model an apply no longer pins ("v7 undeployed at <time> by
    <commit>": DEPLOYED is then empty). The live version is read from SageMaker where an endpoint exists (never
    in local mode: the emulator has no endpoints).

    \b
    Examples:
      mlinfra status --all
      mlinfra status --stack prod --json
    """
    from rich.table import Table

    from mlinfra.registry import status as stagestatus
    from mlinfra.registry.driftstatus import describe

    project = Project.find()
    names = chosen_stages(project, stack, all_stacks)
    rows = stagestatus.status(project, names)
    if as_json:
        emit_json(rows)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("STAGE", "MODEL", "PINNED", "POINTER", "DEPLOYED", "LIVE", "DRIFT", "NOTES"):
        table.add_column(column)

    def v(value: Any) -> str:
        return f"v{value}" if value else "-"

    for row in rows:
        table.add_row(
            row["stage"],
            row["model"],
            v(row["pinned"]),
            v(row["pointer"]),
            f"v{row['deployed']['version']} since {_time(row['deployed']['since'])}" if row.get("deployed") else "-",
            v(row["live"]),
            describe(row.get("drift")),
            "; ".join(row["notes"]) or "ok",
        )
    console().print(table)
