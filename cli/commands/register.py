"""`mlinfra register`: a model directory or model.tar.gz becomes an immutable version in the entry stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlinfra.models import frameworks
from mlinfra.options import complete_models, emit_json, json_option, next_command
from mlinfra.stacks.project import Project

FRAMEWORKS = frameworks.names()  # each registers its serving contract in mlinfra.models.frameworks


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--model", "-m", required=True, shell_complete=complete_models, help="Model name, as declared under mlinfra:models."
)
@click.option("--framework", type=click.Choice(FRAMEWORKS), help="Framework of the prebuilt inference image.")
@click.option("--framework-version", help="Framework version of the inference image, e.g. 1.2-1 for sklearn.")
@click.option(
    "--image",
    help="Inference image URI, instead of --framework-version; with --framework, an image built on that framework's "
    "container (its handler contract is checked and the endpoint set up for it).",
)
@click.option("--metrics", "metrics_path", type=click.Path(path_type=Path), help="JSON object: metric name -> number.")
@click.option(
    "--baseline", "baseline_path", type=click.Path(path_type=Path), help="Training data sample, .csv/.parquet."
)
@click.option(
    "--git-sha",
    default="auto",
    show_default=True,
    help="Commit the model was built from; 'auto' reads the commit of PATH's own directory (not the platform's).",
)
@click.option("--description", help="One line saying what this version is; shown by `mlinfra card`.")
@click.option(
    "--card",
    "card_path",
    type=click.Path(path_type=Path),
    help="The authors' model card (Markdown), stored with the version; default: card.md in the model directory.",
)
@click.option(
    "--dry-run", is_flag=True, help="Check, and list the files it would pack (size, digest, path); write nothing."
)
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
    description: str | None,
    card_path: Path | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Register PATH (a model directory or a model.tar.gz) as a new immutable version in the entry stage.

    The directory is packed reproducibly (same files, same digest), hashed while it streams to S3 (multipart, each
    part checksummed), stored under its digest, and given a SageMaker model package whose version number becomes
    the model's version in every stage. Everything that can be checked (inputs, image, the model's package group)
    is checked before the upload, and the bytes are hashed first: the same bytes registered again are not uploaded
    and return the existing version; new --metrics or --baseline given with them are attached to it (audited, as
    `mlinfra attach` does); another image is refused (exit 2), since stages pin a version's image. A registration
    cut off after its version record is finished by the re-run (its audit record, the entry stage's pointer:
    "finished": true), and a stored artifact that no longer matches its digest is uploaded again from these bytes.

    With --framework, the handler must be code/inference.py and define what that framework's container calls
    (model_fn at least); it is checked statically, before anything is uploaded (`mlinfra init-model` writes one).
    __pycache__/, .ipynb_checkpoints/, .DS_Store, .git and the patterns in the directory's .mlinfraignore
    (gitignore syntax) are never packed.

    \b
    Examples:
      mlinfra register ./model --model churn --framework sklearn --framework-version 1.2-1 --metrics metrics.json
      mlinfra register ./model -m churn --framework sklearn --framework-version 1.2-1 --dry-run
      mlinfra register model.tar.gz -m churn --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/churn:1.4
      mlinfra --local register ./model -m churn --framework xgboost --framework-version 1.7-1 --json
    """
    from mlinfra.models import inputs
    from mlinfra.registry import register as registration

    project = Project.find()
    if dry_run:
        plan = registration.dry_run(project, path, model, framework)
        if as_json:
            emit_json(plan)
            return
        for item in plan["files"]:
            click.echo(f"{item['size']:>12}  {item['digest']}  {item['path']}")
        totals = f"{len(plan['files'])} files, model.tar.gz {plan['size']} bytes, {plan['digest']}"
        click.echo(f"dry run: {totals}; nothing written", err=True)
        return
    explicit = [name for name, value in (("--description", description), ("--card", card_path)) if value is not None]
    if card_path is None and path.is_dir() and (path / "card.md").is_file():
        card_path = path / "card.md"
    sha = inputs.git_sha(path) if git_sha == "auto" else (git_sha or None)
    with _Progress(as_json) as (advance, set_total):
        record = registration.register(
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
            description=description,
            card_path=card_path,
        )
    if git_sha == "auto" and sha is None and not record.get("existing"):
        click.echo(
            f"note: {path} is not in a git repository (or one without commits): no git commit recorded; "
            "pass --git-sha SHA to record one",
            err=True,
        )
    summary = {k: record[k] for k in ("model", "version", "digest", "artifact", "image")}
    if record.get("existing") and explicit:
        click.echo(
            f"note: {' and '.join(explicit)} ignored: stored with new versions only, and these bytes are already "
            f"v{record['version']} (`mlinfra card {model} --version {record['version']}` shows what it has)",
            err=True,
        )
    finished = bool(record.get("finished"))
    repaired = bool(record.get("repaired"))
    if as_json:
        existing = bool(record.get("existing"))
        attached = record.get("attached", [])
        emit_json({**summary, "existing": existing, "attached": attached, "finished": finished, "repaired": repaired})
        return
    if record.get("attached"):
        click.echo(
            f"{model} already registered as v{record['version']}; attached {', '.join(record['attached'])} "
            f"(audited: mlinfra history {model} --stack {record['stage']})"
        )
    else:
        verb = "already registered as" if record.get("existing") else "registered"
        click.echo(f"{model} {verb} v{record['version']} ({record['digest'][:19]}...) in {record['stage']}")
    if repaired:
        click.echo(
            "  the stored artifact no longer matched its digest (changed or deleted out of band): "
            "uploaded these genuine bytes again"
        )
    if finished:
        click.echo(
            f"  finished its interrupted registration: wrote the register audit record and moved "
            f"{record['stage']}'s pointer"
        )
    click.echo(f"  artifact {record['artifact']}")
    click.echo(f"  image    {record['image']}")
    promote = f"promote {model} --version {record['version']} --to {record.get('nextStage') or 'STAGE'}"
    click.echo(f"Next: {next_command(promote)}")


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
