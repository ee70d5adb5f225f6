"""`mlinfra attach | baseline`: add or replace the metrics and the baseline of a version that exists (audited)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlinfra.options import complete_models, emit_json, json_option
from mlinfra.stacks.project import Project

MODEL_DIR = click.option(
    "--model-dir",
    "model_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The version's model directory: adds the prediction baseline (its answers on the sample) to the baseline.",
)


@click.command()
@click.argument("model", shell_complete=complete_models)
@click.option("--version", "version", type=click.IntRange(min=1), required=True, help="Version to attach to.")
@click.option("--metrics", "metrics_path", type=click.Path(path_type=Path), help="JSON object: metric name -> number.")
@click.option(
    "--baseline", "baseline_path", type=click.Path(path_type=Path), help="Training data sample, .csv/.parquet."
)
@click.option(
    "--card", "card_path", type=click.Path(path_type=Path), help="The version's model card (Markdown), replacing it."
)
@click.option("--description", help="One line saying what this version is, replacing it.")
@click.option("--reason", help="Why; recorded in the audit trail (default: what was attached).")
@MODEL_DIR
@json_option
def attach(
    model: str,
    version: int,
    metrics_path: Path | None,
    baseline_path: Path | None,
    card_path: Path | None,
    description: str | None,
    reason: str | None,
    model_dir: Path | None,
    as_json: bool,
) -> None:
    """Attach new metrics, a baseline, a card or a description to version N of MODEL in the entry stage.

    The artifact and image of a version never change, and attaching never makes a new version; its metrics (read
    by the metric gates), its baseline (read by drift), its card and its description (`mlinfra card`) may. Each
    change is audited: an `attach` record with who, when, and what changed from what to what
    (`mlinfra history MODEL`). Inputs equal to what the version has change nothing and record nothing. Stages the
    version was already promoted into keep their copy; later promotions copy the new files.

    \b
    Examples:
      mlinfra attach churn --version 3 --metrics metrics.json
      mlinfra attach churn --version 3 --metrics metrics.json --baseline train.csv --reason "re-evaluated on Q3"
      mlinfra --local attach churn --version 1 --metrics metrics.json --json
      mlinfra attach churn --version 3 --card card.md --description "Q3 retrain, new tenure buckets"
      mlinfra attach churn --version 3 --baseline train.csv --model-dir models/churn   with a prediction baseline
    """
    from mlinfra.registry.attach import attach as attach_to

    result = attach_to(
        Project.find(),
        model,
        version,
        metrics_path=metrics_path,
        baseline_path=baseline_path,
        reason=reason,
        card_path=card_path,
        description=description,
        model_dir=model_dir,
        predict=_predict(model_dir),
    )
    _report(result, as_json)


@click.command()
@click.argument("model", shell_complete=complete_models)
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--version", "version", type=click.IntRange(min=1), required=True, help="Version whose baseline it is.")
@click.option("--reason", help="Why; recorded in the audit trail.")
@MODEL_DIR
@json_option
def baseline(model: str, data: Path, version: int, reason: str | None, model_dir: Path | None, as_json: bool) -> None:
    """Add or replace the baseline of version N of MODEL in the entry stage, from DATA (.csv with a header/.parquet).

    The baseline is what drift compares traffic against. The change is audited like `mlinfra attach` (which this
    is, for the baseline alone); the same data again changes nothing.

    With --model-dir (the directory version N was registered from: it must pack to the version's digest), the
    baseline also holds the prediction baseline, for prediction drift: the model's answers on DATA's first 10,000
    rows through its own handler, run here as `mlinfra serve` runs it (the model's libraries must be installed).
    `register --baseline` computes it the same way; without --model-dir the new baseline has none.

    \b
    Examples:
      mlinfra baseline churn --version 3 train.csv
      mlinfra baseline churn --version 3 train.csv --model-dir mlinfra-models/churn/model
      mlinfra baseline churn --version 3 train.parquet --reason "baseline from the full training set" --json
    """
    from mlinfra.registry.attach import attach as attach_to

    result = attach_to(
        Project.find(),
        model,
        version,
        metrics_path=None,
        baseline_path=data,
        reason=reason,
        model_dir=model_dir,
        predict=_predict(model_dir),
    )
    _report(result, as_json)


def _predict(model_dir: Path | None) -> Any:
    """The prediction baseline's computation (it runs the model's handler), loaded only when --model-dir asks."""
    if model_dir is None:
        return None
    from mlinfra.serving.predictions import for_place

    return for_place


def _report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    model, version, stage = result["model"], result["version"], result["stage"]
    if not result["changed"]:
        click.echo(f"{model} v{version}: nothing changed in {stage} (it already has these inputs); nothing recorded")
        return
    click.echo(f"{model} v{version}: {', '.join(result['changed'])} attached in {stage} (audited)")
    from mlinfra.options import next_command

    click.echo(f"Next: {next_command(f'card {model} --version {version}')}")
