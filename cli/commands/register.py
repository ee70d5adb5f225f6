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
@click.option(
    "--framework-version",
    help="Version of the framework's inference image, e.g. 1.9-0 for sklearn. Default: the newest image of the "
    "library version that wrote the model file (scikit-learn, XGBoost); PyTorch: "
    f"{frameworks.get('pytorch').default_version}. One whose library differs "
    "in major.minor from the model's is refused.",
)
@click.option(
    "--image",
    help="Inference image URI, instead of --framework-version; with --framework, an image built on that framework's "
    "container (its handler contract is checked and the endpoint set up for it).",
)
@click.option("--metrics", "metrics_path", type=click.Path(path_type=Path), help="JSON object: metric name -> number.")
@click.option(
    "--baseline",
    "baseline_path",
    type=click.Path(path_type=Path),
    help="Training data sample, .csv/.parquet: the drift baseline (and the model's answers on it, when it runs here).",
)
@click.option(
    "--no-prediction-baseline",
    "skip_predictions",
    is_flag=True,
    help="Do not run the model's handler on the --baseline sample (a model too large to load here, say): "
    "drift then scores the inputs only.",
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
    "--vendor",
    is_flag=True,
    help="Download the wheels code/requirements.txt needs beyond the image into code/wheels/ (for the image's "
    "Python) and point pip there, so the endpoint installs them without network; writes into PATH.",
)
@click.option(
    "--include-data",
    is_flag=True,
    help="Pack data-looking files (tables, pickled DataFrames) found in PATH; without it register refuses them.",
)
@click.option(
    "--dry-run", is_flag=True, help="Check, and list the files it would pack (size, digest, path); write nothing."
)
@json_option
def register(  # noqa: PLR0912, PLR0915 - one branch per way register reports (dry run, JSON, table, notes)
    path: Path,
    model: str,
    framework: str | None,
    framework_version: str | None,
    image: str | None,
    metrics_path: Path | None,
    baseline_path: Path | None,
    skip_predictions: bool,
    git_sha: str,
    description: str | None,
    card_path: Path | None,
    vendor: bool,
    include_data: bool,
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
    The image is the one whose library the model was saved with (read from the model file, never unpickled), and
    code/requirements.txt must be installable by the container without network (docs/model-contract.md).
    __pycache__/, .ipynb_checkpoints/, .DS_Store, .git and the patterns in the directory's .mlinfraignore
    (gitignore syntax) are never packed. Data found in PATH (CSV, TSV, Parquet, Feather, Excel, JSON Lines, pickled
    DataFrames) is refused (exit 2) with the list of files, unless .mlinfraignore re-includes it (`!keep.csv`) or
    --include-data is given; --dry-run lists it as a warning. In local mode a model no stack file declares is
    declared in the scratch stacks (it says so); elsewhere the error prints the `mlinfra model add` to run.

    --baseline DATA stores the drift baseline, and with --framework the prediction baseline too: the model's
    answers on DATA's first 10,000 rows through its own handler, run here as `mlinfra serve` runs it, which
    prediction drift compares the endpoint's captured answers with. When the handler cannot run here (its libraries
    are not installed, an image of one's own, a model.tar.gz) a note says so and the version has none;
    --no-prediction-baseline skips it (the model is then never loaded here).

    \b
    Examples:
      mlinfra register ./model --model churn --framework sklearn --metrics metrics.json
      mlinfra register ./model -m churn --framework sklearn --baseline train.csv   with a prediction baseline
      mlinfra register ./model -m churn --framework sklearn --framework-version 1.9-0 --dry-run
      mlinfra register ./model -m churn --framework sklearn --vendor     wheels for code/requirements.txt
      mlinfra register model.tar.gz -m churn --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/churn:1.4
      mlinfra --local register ./model -m churn --framework xgboost --framework-version 3.2-0 --json
    """
    from mlinfra.models import inputs
    from mlinfra.registry import register as registration
    from mlinfra.serving.predictions import for_place

    project = Project.find()
    if dry_run:
        from mlinfra.errors import BadInputError

        if vendor:
            raise BadInputError("--vendor writes wheels into PATH and --dry-run writes nothing: run --vendor first")

        plan = registration.dry_run(project, path, model, framework, framework_version=framework_version, image=image)
        if as_json:
            emit_json(plan)
            return
        for item in plan["files"]:
            click.echo(f"{item['size']:>12}  {item['digest']}  {item['path']}")
        totals = f"{len(plan['files'])} files, model.tar.gz {plan['size']} bytes, {plan['digest']}"
        click.echo(f"dry run: {totals}, image {plan['image']}{_library_note(plan)}; nothing written", err=True)
        if path.is_dir() and not include_data:
            from mlinfra.models.datafiles import data_files

            for found in data_files(path):
                click.echo(
                    f"warning: {found.path} looks like data ({found.why}): register refuses it without "
                    "--include-data; list it in .mlinfraignore to leave it out",
                    err=True,
                )
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
            vendor=vendor,
            include_data=include_data,
            predict=None if skip_predictions else for_place,
        )
    for note in record.get("notes", []):
        click.echo(f"note: {note}", err=True)
    if git_sha == "auto" and sha is None and not record.get("existing"):
        click.echo(
            f"note: {path} is not in a git repository (or one without commits): no git commit recorded; "
            "pass --git-sha SHA to record one",
            err=True,
        )
    summary = {k: record.get(k) for k in ("model", "version", "digest", "artifact", "image", "frameworkVersion")}
    if record.get("existing") and explicit:
        import shlex

        version = record["version"]
        given = {"--description": description, "--card": str(card_path) if card_path else None}
        again = " ".join(f"{name} {shlex.quote(str(given[name]))}" for name in explicit)
        attach = next_command(f"attach {model} --version {version} {again}")
        click.echo(
            f"note: {' and '.join(explicit)} ignored: these bytes are already v{version}, and registering them "
            f"again makes no new version; to change them: `{attach}`",
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


def _library_note(plan: dict[str, Any]) -> str:
    """`(scikit-learn 1.9.1 in model.joblib)` when the model's files record the library that wrote them."""
    if not plan.get("libraryVersion"):
        return ""
    return f" (the model's library: {plan['libraryVersion']} in {plan['libraryFile']})"
