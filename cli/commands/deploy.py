"""`mlinfra up | destroy`: apply or tear down a stack through Pulumi's Automation API."""

from __future__ import annotations

import shutil
from typing import Any

import click

from mlinfra.errors import MlinfraError, ToolMissingError
from mlinfra.options import emit_json, json_option, stack_option
from mlinfra.stacks.files import load_stage
from mlinfra.stacks.project import Project

INSTALL_HINT = "install it (https://www.pulumi.com/docs/install/) and run again; `mlinfra preview` works without it"


def require_pulumi_cli() -> str:
    """The path of the `pulumi` CLI; ToolMissingError (exit 1) with how to install it otherwise."""
    found = shutil.which("pulumi")
    if found is None:
        raise ToolMissingError(f"the pulumi CLI is not installed (needed to deploy): {INSTALL_HINT}")
    return found


def _select(project: Project, stage: str) -> Any:
    from pulumi import automation as auto

    try:
        return auto.select_stack(stack_name=stage, work_dir=str(project.root))
    except auto.errors.CommandError as exc:
        raise MlinfraError(f"pulumi could not select stack {stage}: {str(exc).strip().splitlines()[-1]}") from None


def run_up(project: Project, stage: str, *, yes: bool) -> None:
    """Validate the stage's config, then `pulumi up` it, streaming Pulumi's output.

    The update always runs with a refresh (Pulumi reads the live resources first: after SageMaker rolled an
    endpoint back, the state no longer claims the failed update). An autoscaled endpoint whose instance type changes
    has its scalable target released first, so Pulumi registers it again after the endpoint update
    (mlinfra.stacks.scaling); if the apply fails, the target and its policies are registered again as they were
    (mlinfra.stacks.scalingrestore).
    """
    loaded = load_stage(project, stage)  # bad config fails first (exit 2, file and key), before the engine
    from mlinfra.stacks.quotas import refuse_below_peak

    refuse_below_peak(project, loaded.config)  # exit 3 before the engine when a quota is below the peak
    require_pulumi_cli()
    if not yes:
        click.confirm(f"Apply stack {stage}?", abort=True)
    from pulumi import automation as auto

    from mlinfra.aws import StageAws
    from mlinfra.stacks.check import policy_pack_options
    from mlinfra.stacks.scalingrestore import released_for_apply

    stack = _select(project, stage)
    # The policy pack (infra/policy/) runs inside the update at the stage's enforcement level.
    pack = policy_pack_options(project, loaded)
    with released_for_apply(StageAws(loaded.config, project.root), loaded.config, click.echo):
        try:
            result = stack.up(on_output=lambda line: click.echo(line, nl=False), refresh=True, **pack)
        except auto.errors.CommandError as exc:
            raise MlinfraError(f"pulumi up failed for {stage}: {str(exc).strip().splitlines()[-1]}") from None
        click.echo(f"\n{stage}: {result.summary.result}")
        if result.summary.result != "succeeded":
            raise MlinfraError(f"pulumi up of {stage} ended {result.summary.result}; nothing was recorded")
    if result.summary.result == "succeeded":
        _clean_up_retained(project, loaded.config, result.outputs)
        try:
            recorded = record(project, stage, commit=None, run_url=None)
        except MlinfraError as exc:
            raise type(exc)(
                f"{stage} was applied, but recording the deployment failed: {exc} "
                f"(then run `mlinfra record-deployment --stack {stage}`)"
            ) from None
        _report_recorded(recorded)


def _clean_up_retained(project: Project, config: Any, outputs: Any) -> None:
    """Delete the retained SageMaker models and configs no endpoint references (mlinfra.stacks.retained)."""
    from mlinfra.stacks.retained import after_apply

    plain = {name: getattr(value, "value", value) for name, value in (outputs or {}).items()}
    for line in after_apply(project, config, plain).lines():
        click.echo(line)


def record(project: Project, stage: str, *, commit: str | None, run_url: str | None) -> dict[str, Any]:
    """Record what `stage` now runs (deployments.record_deployment)."""
    from mlinfra.registry import deployments

    return deployments.record_deployment(project, stage, commit=commit, run_url=run_url)


def _report_recorded(result: dict[str, Any]) -> None:
    commit = (result["commit"] or "no commit")[:12] + (" (uncommitted changes)" if result["dirty"] else "")
    if not result["models"]:
        click.echo(f"{result['stage']} at {commit}: no model pinned, nothing to record")
    for entry in result["models"]:
        if entry["status"] == "undeployed":
            click.echo(
                f"{entry['model']}: {result['stage']} no longer runs v{entry['version']} (undeployed by {commit})"
            )
        elif entry["status"] == "deployed":
            click.echo(f"{entry['model']}: {result['stage']} runs v{entry['version']} (deployed from {commit})")
        else:
            click.echo(f"{entry['model']}: {result['stage']} still runs v{entry['version']} (since {entry['since']})")


@click.command("record-deployment")
@stack_option
@click.option("--commit", metavar="REF", help="The commit the apply deployed (default: HEAD and the working tree).")
@click.option(
    "--run-url",
    metavar="URL",
    help="The apply run's URL, at most 2048 characters (default: the GitHub Actions run, if any).",
)
@json_option
def record_deployment(stack: str | None, commit: str | None, run_url: str | None, as_json: bool) -> None:
    """Record that a stack's apply succeeded: the stage pointer moves to what the stack pins at COMMIT.

    Run by the apply job after `pulumi up` succeeds (and by `mlinfra up` itself). The pins are read from
    stacks/Pulumi.<STAGE>.yaml at --commit, checked against the stage's registry (same digest, artifact intact);
    each model whose deployed version changed gets its stage pointer moved and a `deploy` audit record with the
    commit and the run's URL. The soak gate counts from here. Recording the same deployment again changes nothing.
    A model still declared but no longer pinned (a reverted promotion) gets an `undeploy` audit record and its
    pointer's deployment is cleared. Forward only: a COMMIT older than the one a stage pointer records as deployed
    is refused (exit 3, naming both) and nothing moves.
    --json prints {"stage", "commit", "dirty", "runUrl", "models": [{"model", "version", "status", "since"}]}
    (status: deployed, unchanged or undeployed).

    \b
    Examples:
      mlinfra record-deployment --stack prod --commit "$GITHUB_SHA" \\
        --run-url "$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID"
      mlinfra --local record-deployment --stack staging      # try the path against the emulator
    """
    project = Project.find()
    result = record(project, project.resolve_stack(stack), commit=commit, run_url=run_url)
    if as_json:
        emit_json(result)
    else:
        _report_recorded(result)


@click.command()
@stack_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def up(stack: str | None, yes: bool) -> None:
    """Deploy a stack: validate its config, then run `pulumi up` through the Automation API.

    Needs the `pulumi` CLI and AWS credentials. Without the CLI it exits 1 and says how to install it. The update
    runs with a refresh (`pulumi up --refresh`), so it starts from what really runs. When the stack file changes the
    instance type of an autoscaled endpoint, its scalable target is deregistered first, so Pulumi registers it
    again after the endpoint update (AWS refuses the update otherwise); if the apply fails, the target and its
    scaling policies are registered again as they were. The policy pack in infra/policy/ runs inside the update
    (`--policy-pack`), at the stage's mlinfra:policy.enforcement level: a mandatory violation stops it.
    Before the engine runs it reads the stage's Service Quotas and refuses (exit 3) a stage whose SageMaker instance
    quota is below the blue/green peak (twice each endpoint's deploy fleet), naming the quota and the number needed.
    Models and endpoint configurations are retained when Pulumi replaces them (a rolled-back endpoint still runs on
    the old ones); after a successful apply those no endpoint references are deleted.
    After a successful apply it records the deployment (as `mlinfra record-deployment` does): the stage pointer
    moves to the versions the stack file pins, with HEAD as the commit.

    \b
    Examples:
      mlinfra up --stack dev
      mlinfra up --stack prod --yes        # in CI, after review of `pulumi preview`
    """
    project = Project.find()
    run_up(project, project.resolve_stack(stack), yes=yes)


@click.command()
@stack_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def destroy(stack: str | None, yes: bool) -> None:
    """Tear down every resource of a stack through the Automation API.

    The prod registry is protected (Object Lock, `protect`), so destroying prod fails until that is lifted on
    purpose. Needs the `pulumi` CLI; without it, exits 1 and says how to install it.

    \b
    Examples:
      mlinfra destroy --stack sandbox
    """
    project = Project.find()
    stage = project.resolve_stack(stack)
    require_pulumi_cli()
    if not yes:
        click.confirm(f"Destroy every resource of stack {stage}?", abort=True)
    from pulumi import automation as auto

    selected = _select(project, stage)
    try:
        selected.destroy(on_output=lambda line: click.echo(line, nl=False))
    except auto.errors.CommandError as exc:
        raise MlinfraError(f"pulumi destroy failed for {stage}: {str(exc).strip().splitlines()[-1]}") from None
    click.echo(f"\n{stage}: destroyed")
