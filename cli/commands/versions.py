"""`mlinfra versions | show | diff`: a model's versions across stages, one version in full, two side by side."""

from __future__ import annotations

from typing import Any

import click

from mlinfra.options import complete_models, console, emit_json, json_option, stage_option
from mlinfra.stacks.project import Project


def _time(text: Any) -> str:
    return str(text or "-").replace("T", " ")[:19]


def _metrics(metrics: Any) -> str:
    if not metrics:
        return "-"
    return " ".join(f"{name}={value:g}" for name, value in sorted(metrics.items()))


def _who(arn: Any) -> str:
    return str(arn).rsplit("/", 1)[-1] if arn else "-"


def _approval(status: str) -> str:
    """SageMaker's approval status, short: PendingManualApproval -> pending."""
    return {"PendingManualApproval": "pending", "Approved": "approved", "Rejected": "rejected"}.get(status, status)


def _short(digest: Any) -> str:
    return str(digest)[7:19] if digest else "-"


@click.command()
@click.argument("model", shell_complete=complete_models)
@stage_option("Only versions in this stage's registry.")
@json_option
def versions(model: str, stage: str | None, as_json: bool) -> None:
    """List MODEL's versions, newest first: digest, when and by whom, metrics, image, commit, approval, where it runs.

    RUNS is the stages whose registry pointer is the version, PINNED those whose stack file pins it, LIVE those
    whose SageMaker endpoint serves it (never in local mode: the emulator has no endpoints); APPROVAL is the state
    of its model package in each stage that holds it. A version record of the wrong shape (changed out of band) is
    left out with a warning on stderr naming its key; the other versions are listed.

    \b
    Examples:
      mlinfra versions churn
      mlinfra versions churn --stack staging
      mlinfra versions churn --json | jq '.[0].metrics'
    """
    from rich.table import Table

    from mlinfra.registry.versions import list_versions

    notes: list[str] = []
    rows = list_versions(Project.find(), model, stage, notes=notes)
    for note in notes:
        click.echo(f"warning: left out: {note}", err=True)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(f"no versions of {model} yet; register one with `mlinfra register DIR --model {model} ...`")
        return
    table = Table(box=None, pad_edge=False)
    columns = ("VERSION", "DIGEST", "REGISTERED (UTC)", "BY", "METRICS", "COMMIT", "APPROVAL", "RUNS", "PINNED", "LIVE")
    for column in columns:
        table.add_column(column, overflow="ellipsis", no_wrap=column in {"VERSION", "DIGEST", "COMMIT"})
    for row in rows:
        approval = " ".join(f"{s}:{_approval(v)}" for s, v in row["approval"].items()) or "-"
        table.add_row(
            f"v{row['version']}",
            _short(row["digest"]),
            _time(row["registered"]),
            _who(row["registeredBy"]),
            _metrics(row["metrics"]),
            str(row["gitSha"] or "-")[:12],
            approval,
            ", ".join(row["runningIn"]) or "-",
            ", ".join(row["pinnedIn"]) or "-",
            ", ".join(row["liveIn"]) or "-",
        )
    console().print(table)


@click.command()
@click.argument("model", shell_complete=complete_models)
@click.option("--version", "-v", "version", type=int, required=True, help="The version to show.")
@json_option
def show(model: str, version: int, as_json: bool) -> None:
    """Show one version of MODEL in full: its record, its copy in each stage, its lineage and its model card.

    \b
    Examples:
      mlinfra show churn --version 3
      mlinfra show churn -v 3 --json | jq '.lineage'
    """
    from mlinfra.registry.versions import show_version

    data = show_version(Project.find(), model, version)
    if as_json:
        emit_json(data)
        return
    echo = click.echo
    echo(f"{model} v{version}  {data['digest']}")
    echo(f"  registered   {_time(data['registered'])} by {_who(data['registeredBy'])} in {data['registeredIn']}")
    echo(f"  image        {data['image']}")
    echo(f"  framework    {data['framework'] or '-'} {data['frameworkVersion'] or ''}".rstrip())
    echo(f"  size         {data['size']:,} bytes" if data.get("size") else "  size         -")
    echo(f"  git commit   {data['gitSha'] or '-'}")
    echo(f"  metrics      {_metrics(data['metrics'])}")
    if data.get("description"):
        echo(f"  description  {data['description']}")
    baseline = data.get("baseline")
    summary = f"{baseline['rows']} rows: {', '.join(baseline['features'])}" if baseline else "-"
    echo(f"  baseline     {summary}")
    if baseline:
        outputs = baseline.get("outputs")
        echo(
            f"  predictions  {', '.join(outputs)}"
            if outputs
            else f"  predictions  - (no prediction baseline: `mlinfra baseline {model} --version {version} DATA "
            "--model-dir DIR` adds one)"
        )
    echo("  stages")
    for entry in data["stages"]:
        marks = [
            m for m, on in (("runs", entry["running"]), ("pinned", entry["pinned"]), ("live", entry["live"])) if on
        ]
        origin = f" from {entry['from']}" if entry["from"] else ""
        echo(f"    {entry['stage']:<10} {entry['approval'] or '-':<22} {' '.join(marks) or '-':<12}{origin}")
    echo("  lineage")
    for step in data["lineage"] or []:
        source = f" from {step['source']}" if step.get("source") and step["source"] != step["stage"] else ""
        forced = " (forced)" if step.get("forced") else ""
        echo(f"    {_time(step['time'])}  {step['action']}{forced} {step['stage']}{source} by {_who(step['actor'])}")
    if data.get("card"):
        echo("  card")
        for line in data["card"].splitlines():
            echo(f"    {line}")


@click.command()
@click.argument("model", shell_complete=complete_models)
@click.argument("first", metavar="A", type=int)
@click.argument("second", metavar="B", type=int)
@json_option
def diff(model: str, first: int, second: int, as_json: bool) -> None:
    """Compare versions A and B of MODEL: metrics, image, framework, files in the artifact and baseline.

    Files are listed from both artifacts (streamed from the registry, hashed, nothing written to disk) as added,
    removed, changed or the same.

    \b
    Examples:
      mlinfra diff churn 3 4
      mlinfra diff churn 3 4 --json | jq '.metrics'
    """
    from rich.table import Table

    from mlinfra.registry.versions import diff_versions

    data = diff_versions(Project.find(), model, first, second)
    if as_json:
        emit_json(data)
        return
    a, b = f"v{first}", f"v{second}"

    def table(*columns: str) -> Any:
        t = Table(box=None, pad_edge=False)
        for column in columns:
            t.add_column(column, overflow="ellipsis")
        return t

    out = console()
    fields = table("", a, b, "")
    for row in data["fields"]:
        fields.add_row(row["field"], str(row["a"]), str(row["b"]), "changed" if row["changed"] else "")
    out.print(fields)
    metrics = table("METRIC", a, b, "DELTA")
    for row in data["metrics"]:
        delta = f"{row['delta']:+g}" if row["delta"] is not None else "-"
        metrics.add_row(row["metric"], _num(row["a"]), _num(row["b"]), delta)
    out.print(metrics)
    files = table("FILE", a, b, "")
    for row in data["files"]:
        files.add_row(row["file"], _size(row["a"]), _size(row["b"]), row["change"])
    out.print(files)
    baseline = data["baseline"]
    if baseline["features"]:
        rows = table("FEATURE", "STAT", a, b, "")
        for row in baseline["features"]:
            rows.add_row(
                row["feature"], row["stat"], _num(row["a"]), _num(row["b"]), "changed" if row["changed"] else ""
            )
        out.print(rows)
    else:
        out.print(f"baseline: {a} {'yes' if baseline['a'] else 'none'}, {b} {'yes' if baseline['b'] else 'none'}")


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _size(value: Any) -> str:
    return "-" if value is None else f"{value:,}"
