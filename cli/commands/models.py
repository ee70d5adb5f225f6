"""`mlinfra register | promote | approve | rollback`: moving model versions into and between stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlinfra.options import console, emit_json, json_option
from mlinfra.project import Project

FRAMEWORKS = ("sklearn", "xgboost", "pytorch")


def _gates_text(result: dict[str, Any]) -> str:
    return ", ".join(f"{g['gate']} {'ok' if g['passed'] else 'FORCED'}" for g in result.get("gates", []))


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--model", "-m", required=True, help="Model name, as declared under mlinfra:models.")
@click.option("--framework", type=click.Choice(FRAMEWORKS), help="Framework of the prebuilt inference image.")
@click.option("--framework-version", help="Framework version of the inference image, e.g. 1.2-1 for sklearn.")
@click.option("--image", help="Inference image URI, instead of --framework/--framework-version.")
@click.option("--metrics", "metrics_path", type=click.Path(path_type=Path), help="JSON object: metric name -> number.")
@click.option(
    "--baseline", "baseline_path", type=click.Path(path_type=Path), help="Training data sample, .csv/.parquet."
)
@click.option("--git-sha", default="auto", show_default=True, help="Commit the model was built from; 'auto' asks git.")
@json_option
def register(
    path: Path,
    model: str,
    framework: str | None,
    framework_version: str | None,
    image: str | None,
    metrics_path: Path | None,
    baseline_path: Path | None,
    git_sha: str,
    as_json: bool,
) -> None:
    """Register PATH (a model directory or a model.tar.gz) as a new immutable version in the entry stage.

    The directory is packed reproducibly (same files, same digest), hashed while it streams to S3 (multipart, each
    part checksummed), stored under its digest, and given a SageMaker model package whose version number becomes
    the model's version in every stage. Registering the same bytes again returns the existing version.

    \b
    Examples:
      mlinfra register ./model --model churn --framework sklearn --framework-version 1.2-1 --metrics metrics.json
      mlinfra register model.tar.gz -m churn --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/churn:1.4
      mlinfra --local register ./model -m churn --framework xgboost --framework-version 1.7-1 --json
    """
    from mlinfra import inputs, promotion

    project = Project.find()
    sha = inputs.git_sha(Path.cwd()) if git_sha == "auto" else (git_sha or None)
    with _Progress(as_json) as (advance, set_total):
        record = promotion.register(
            project,
            path,
            model,
            framework=framework,
            framework_version=framework_version,
            image=image,
            metrics_path=metrics_path,
            baseline_path=baseline_path,
            git_sha=sha,
            progress=advance,
            on_total=set_total,
        )
    summary = {k: record[k] for k in ("model", "version", "digest", "artifact", "image")}
    if as_json:
        emit_json(summary)
        return
    verb = "already registered as" if record.get("existing") else "registered"
    click.echo(f"{model} {verb} v{record['version']} ({record['digest'][:19]}...) in {record['stage']}")
    click.echo(f"  artifact {record['artifact']}")
    click.echo(f"  image    {record['image']}")
    click.echo(f"Next: mlinfra promote {model} --version {record['version']} --to <next stage>")


class _Progress:
    """A rich progress bar of bytes read (on stderr), or nothing when printing JSON."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> tuple[Any, Any]:
        if self.quiet:
            return (lambda n: None), (lambda n: None)
        import sys

        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
            disable=not sys.stderr.isatty(),
        )
        self.bar.__enter__()
        self.task = self.bar.add_task("uploading", total=None)
        return (lambda n: self.bar.advance(self.task, n)), (lambda n: self.bar.update(self.task, total=n))

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


@click.command()
@click.argument("model")
@click.option("--to", "to", required=True, metavar="STAGE", help="Stage to promote into.")
@click.option("--version", "version", type=click.IntRange(min=1), help="Version; default: what the source stage runs.")
@click.option("--from", "source", metavar="STAGE", help="Promote from this stage instead of the preceding one.")
@click.option("--reason", help="Why; recorded in the audit trail (required with --force).")
@click.option("--force", is_flag=True, help="Skip the gates (needs --reason; the audit record says so).")
@click.option("--apply", "apply_now", is_flag=True, help="Run `pulumi up` for the stage right after.")
@json_option
def promote(
    model: str,
    to: str,
    version: int | None,
    source: str | None,
    reason: str | None,
    force: bool,
    apply_now: bool,
    as_json: bool,
) -> None:
    """Promote MODEL into a stage: verify, gate, copy, record, pin.

    Verifies the artifact's digest (S3 checksum, nothing downloaded); evaluates the stage's gates (source stage,
    approval, metric thresholds, no source alarm firing, soak time), listing every failing gate (exit 3); copies the
    artifact server-side into the stage's registry; registers its model package with lineage; moves the stage
    pointer (If-Match; a concurrent promotion makes this one exit 1 with "conflict"); pins the version in
    stacks/Pulumi.<STAGE>.yaml; writes the audit record. Re-running a promotion that failed converges.

    \b
    Examples:
      mlinfra promote churn --to dev
      mlinfra promote churn --to prod --version 7 --reason "Q3 retrain" --apply
      mlinfra promote churn --to staging --force --reason "hotfix, soak waived by CTO" --json
    """
    from mlinfra import promotion

    project = Project.find()
    result = promotion.promote(project, model, to, version=version, source=source, reason=reason, force=force)
    _report(result, as_json, project)
    if apply_now:
        from mlinfra.commands.deploy import run_up

        run_up(project, to, yes=True)


def _report(result: dict[str, Any], as_json: bool, project: Project) -> None:
    if as_json:
        emit_json({k: result[k] for k in ("model", "stage", "version", "previous", "digest")})
        return
    model, stage = result["model"], result["stage"]
    previous = f"v{result['previous']}" if result["previous"] else "nothing"
    done = " (already done; caught up)" if result["alreadyDone"] else ""
    click.echo(f"{model}: {stage} now runs v{result['version']} (was {previous}){done}")
    if result.get("forced"):
        click.echo("  gates were skipped with --force; the audit record says so")
    click.echo(f"  pinned in {project.relative(project.stage_file(stage))}")
    click.echo(f"Next: commit the stack file; CI applies it on merge (or `mlinfra up --stack {stage}`).")


@click.command()
@click.argument("model")
@click.option("--version", "version", type=click.IntRange(min=1), required=True, help="Version to approve.")
@click.option("--stage", "stage", required=True, metavar="STAGE", help="Stage the version is approved to enter.")
@click.option("--reason", required=True, help="Why; recorded with the approver's identity.")
@json_option
def approve(model: str, version: int, stage: str, reason: str, as_json: bool) -> None:
    """Approve version N of MODEL for promotion into STAGE.

    Marks the version's model package in the preceding stage Approved (SageMaker's approval status, which the
    target stage's approval gate reads) and writes an audit record naming who approved.

    \b
    Examples:
      mlinfra approve churn --version 7 --stage prod --reason "reviewed model card and drift report"
    """
    from mlinfra import promotion

    result = promotion.approve(Project.find(), model, version, stage, reason)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{model} v{version} approved for {stage} (package in {result['approvedIn']}) by {result['actor']}")


@click.command()
@click.argument("model")
@click.option("--stage", "stage", required=True, metavar="STAGE", help="Stage to roll back.")
@click.option("--to", "to", type=click.IntRange(min=1), help="Version to return to; default: the one it ran before.")
@click.option("--reason", required=True, help="Why; recorded in the audit trail.")
@json_option
def rollback(model: str, stage: str, to: int | None, reason: str, as_json: bool) -> None:
    """Return MODEL in STAGE to the version it ran before (or --to N), through the promotion path.

    The artifact's integrity is checked; metric gates are skipped; the rollback is audited and pinned.

    \b
    Examples:
      mlinfra rollback churn --stage prod --reason "p99 latency regression"
      mlinfra rollback churn --stage prod --to 5 --reason "back to the last known good" --json
    """
    from mlinfra import promotion

    project = Project.find()
    _report(promotion.rollback(project, model, stage, to=to, reason=reason), as_json, project)


def _time(text: str) -> str:
    return text.replace("T", " ")[:19]


@click.command()
@click.argument("model")
@click.option("--stage", "stage", metavar="STAGE", help="Only this stage (default: every stage).")
@json_option
def history(model: str, stage: str | None, as_json: bool) -> None:
    """Show MODEL's audit trail, newest first: registrations, promotions, approvals, rollbacks.

    \b
    Examples:
      mlinfra history churn
      mlinfra history churn --stage prod --json | jq '.[0]'
    """
    from rich.table import Table

    from mlinfra import promotion

    records = promotion.history(Project.find(), model, stage)
    if as_json:
        emit_json(records)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("TIME (UTC)", "ACTION", "STAGE", "VERSION", "FROM", "ACTOR", "REASON"):
        table.add_column(column)
    for r in records:
        previous = f"v{r['previous']}" if r.get("previous") else "-"
        forced = " (forced)" if r.get("forced") else ""
        table.add_row(
            _time(r["time"]),
            r["action"] + forced,
            r["stage"],
            f"v{r['version']}",
            previous,
            r.get("actor", "-").rsplit("/", 1)[-1],
            r.get("reason") or "-",
        )
    console().print(table)


@click.command()
@click.option("--stack", "-s", "stack", metavar="STAGE", help="Stage to show (default: the selected one).")
@click.option("--all", "all_stacks", is_flag=True, help="Every stage.")
@json_option
def status(stack: str | None, all_stacks: bool, as_json: bool) -> None:
    """Show per model and stage: the pinned version, the registry's pointer, the live endpoint and its alarms.

    Mismatches are called out ("pinned v7, live v6: apply pending"). The live version is read from SageMaker where
    an endpoint exists (never in local mode: the emulator has no endpoints).

    \b
    Examples:
      mlinfra status --all
      mlinfra status --stack prod --json
    """
    from rich.table import Table

    from mlinfra import promotion

    if stack and all_stacks:
        raise click.UsageError("give --stack or --all, not both")
    project = Project.find()
    names = project.stages() if all_stacks else [project.resolve_stack(stack)]
    rows = promotion.status(project, names)
    if as_json:
        emit_json(rows)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("STAGE", "MODEL", "PINNED", "POINTER", "LIVE", "NOTES"):
        table.add_column(column)

    def v(value: Any) -> str:
        return f"v{value}" if value else "-"

    for row in rows:
        table.add_row(row["stage"], row["model"], v(row["pinned"]), v(row["pointer"]), v(row["live"]),
                      "; ".join(row["notes"]) or "ok")  # fmt: skip
    console().print(table)
