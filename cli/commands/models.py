"""`mlinfra init-model`, `init-model-repo` and `model add`: starting a model the way the platform serves it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from mlinfra.models import frameworks
from mlinfra.options import emit_json, json_option, next_command

if TYPE_CHECKING:
    from mlinfra.models.scaffold import Written

FRAMEWORKS = frameworks.names()  # each registers its serving contract in mlinfra.models.frameworks


def _report(written: list[Written], as_json: bool, next_hint: str) -> None:
    if as_json:
        emit_json([{"path": str(w.path), "size": w.size} for w in written])
        return
    for item in written:
        click.echo(f"wrote {item.path}")
    click.echo(f"Next: {next_hint}")


@click.command("init-model")
@click.argument("model")
@click.option("--framework", type=click.Choice(FRAMEWORKS), required=True, help="The SageMaker framework container.")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite files that exist (never written otherwise).")
@json_option
def init_model(model: str, framework: str, directory: Path | None, force: bool, as_json: bool) -> None:
    """Write a model directory skeleton for MODEL into DIRECTORY (default ./MODEL).

    code/inference.py is the handler the framework's SageMaker container calls (model_fn, input_fn, predict_fn,
    output_fn): it reads text/csv and application/json ([[...], ...] or {"instances": [...]}), answers in the
    Accept type and refuses malformed payloads with a 4xx. Also code/requirements.txt, card.md (the authors' part
    of the model card) and .mlinfraignore. Put the trained model beside them (model.joblib for sklearn,
    xgboost-model.json for xgboost, a TorchScript model.pt for pytorch). Existing files are left alone: nothing
    is written if one would be overwritten, unless --force.

    \b
    Examples:
      mlinfra init-model churn --framework sklearn                 ./churn/code/inference.py, ...
      mlinfra init-model churn --framework sklearn ./model         into an existing model directory
      mlinfra init-model fraud --framework pytorch models/fraud --json
    """
    from mlinfra.models import scaffold

    target = directory if directory is not None else Path(model)
    written = scaffold.init_model(model, framework, target, force=force)
    _report(
        written,
        as_json,
        f"save the model into {target} ({frameworks.get(framework).save_hint}), then "
        + next_command(f"register {target} --model {model} --framework {framework} --dry-run")
        + " (the image is picked to fit the saved model)",
    )


@click.command("init-model-repo")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--model", "-m", required=True, help="Model name, as declared under mlinfra:models.")
@click.option("--framework", type=click.Choice(FRAMEWORKS), default="sklearn", show_default=True)
@click.option(
    "--framework-version",
    help="Inference image version the workflow registers with; default: the framework's (sklearn "
    f"{frameworks.get('sklearn').default_version}, xgboost {frameworks.get('xgboost').default_version}, pytorch "
    f"{frameworks.get('pytorch').default_version}). Match the library the model is saved with.",
)
@click.option("--to", "first_stage", default="dev", show_default=True, help="Stage the tag's promotion opens into.")
@click.option("--force", is_flag=True, help="Overwrite files that exist (never written otherwise).")
@json_option
def init_model_repo(
    directory: Path,
    model: str,
    framework: str,
    framework_version: str | None,
    first_stage: str,
    force: bool,
    as_json: bool,
) -> None:
    """Write an analyst's model repository into DIRECTORY.

    It holds the model directory skeleton (model/, as `init-model` writes it), metrics.json, a README and
    .github/workflows/register.yml: on a version tag it registers model/ in the platform's entry stage through
    GitHub's OIDC provider (no AWS keys stored) and opens the promotion to the first stage by dispatching the
    platform repository's promote.yml. Actions are pinned to full commit SHAs; every job has its own permissions.

    \b
    Examples:
      mlinfra init-model-repo ../churn-model --model churn
      mlinfra init-model-repo ../fraud --model fraud --framework xgboost --framework-version 3.2-0 --to dev
    """
    from mlinfra.models import scaffold

    written = scaffold.init_model_repo(
        model, framework, framework_version, directory, first_stage=first_stage, force=force
    )
    _report(
        written,
        as_json,
        f"cd {directory} && git init, push it to GitHub, set the variables register.yml lists, then tag v1.0.0",
    )


@click.group("model")
def model() -> None:
    """Declare models in the stack files.

    \b
    Examples:
      mlinfra model add fraud            declare fraud in every stage
    """


@model.command("add")
@click.argument("name")
@click.option("--stack", "-s", "stacks", multiple=True, metavar="STAGE", help="Only these stages (repeatable).")
@json_option
def add(name: str, stacks: tuple[str, ...], as_json: bool) -> None:
    """Declare model NAME under mlinfra:models in every stage's stack file (or only --stack ones).

    The entry is `NAME: {}`: the model takes each stage's mlinfra:modelDefaults (serverless in dev, real-time with
    capture in staging, autoscaling and approval gates in prod, ...) until you override a key beside it. Comments
    and layout of the files are kept; every file is validated before any is written; stages that already declare
    NAME are left alone.

    \b
    Examples:
      mlinfra model add fraud
      mlinfra model add fraud --stack sandbox --stack dev --json
    """
    from mlinfra.models import scaffold
    from mlinfra.stacks.edit import declare_model
    from mlinfra.stacks.project import Project

    project = Project.find()
    scaffold.check_model_name(name)
    stages = [project.require_stage(s) for s in stacks] if stacks else project.stages()
    changed = declare_model(project, stages, name)
    if as_json:
        emit_json({"model": name, "declared": changed, "unchanged": [s for s in stages if s not in changed]})
        return
    for stage in stages:
        state = "declared" if stage in changed else "already declared"
        click.echo(f"{stage:<10} {state} in {project.relative(project.stage_file(stage))}")
    click.echo(
        f"Next: {next_command(f'init-model {name} --framework sklearn')}  # then register it; or, from a notebook, "
        f'mlinfra.register(model, X_train, name="{name}")'
    )
