"""`mlinfra promote | approve | rollback`: moving a model version between stages, with gates and an audit trail."""

from __future__ import annotations

from typing import Any

import click

from mlinfra.options import complete_models, emit_json, in_local_mode, json_option, next_command, stage_option
from mlinfra.stacks.project import Project


@click.command()
@click.argument("model", shell_complete=complete_models)
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
    """Promote MODEL into a stage: verify, gate, copy, record, pin (or propose the pin as a pull request).

    Verifies the artifact's digest (S3 checksum, nothing downloaded); evaluates the stage's gates (source stage,
    approval, metric thresholds, no source alarm firing, soak time since the version's recorded deployment in the
    source stage), listing every failing gate (exit 3); copies the artifact server-side into the stage's registry;
    registers its model package with lineage. Then, by the stage's mlinfra:delivery:

    \b
    direct (default for sandbox, dev): move the stage pointer (If-Match; a concurrent promotion makes this one
      exit 1 with "conflict"), pin the version in stacks/Pulumi.<STAGE>.yaml, write the audit record.
    pullRequest (default for staging, prod): commit the pin on branch mlinfra/promote-<STAGE>-<MODEL>-v<N> from
      origin's default branch (your checkout is not touched), push it to origin, open a pull request with `gh`
      (else print the compare URL) carrying the gates, who asked and the preview diff; write the audit record.
      The stage pointer moves when the apply of the merged commit is recorded (`mlinfra record-deployment`);
      --apply is refused (exit 2).

    Re-running a promotion that failed converges. What it prints is what is true: "v7 pinned in dev; deploys on the
    next apply" until the stage's apply is recorded (`mlinfra record-deployment`, which CI's apply job runs; in local
    mode that command stands in for the apply, and `mlinfra local merge BRANCH` accepts a pull request). --json
    prints {"model", "stage", "version", "previous", "digest", "deployed"} (deployed: what the last recorded apply
    deployed), plus "delivery" and "pullRequest" for a pull request.

    \b
    Examples:
      mlinfra promote churn --to dev
      mlinfra promote churn --to prod --version 7 --reason "Q3 retrain"   # opens a pull request
      mlinfra promote churn --to dev --version 7 --apply
      mlinfra promote churn --to staging --force --reason "hotfix, soak waived by CTO" --json
    """
    from mlinfra.registry import promote as promotion
    from mlinfra.registry import proposals

    project = Project.find()
    if apply_now:
        proposals.refuse_apply(project, to)
    result = promotion.promote(project, model, to, version=version, source=source, reason=reason, force=force)
    _report(result, as_json, project)
    if apply_now:
        from mlinfra.commands.deploy import run_up

        run_up(project, to, yes=True)


def _report(result: dict[str, Any], as_json: bool, project: Project) -> None:
    from mlinfra.registry.promote import sentence

    if as_json:
        keys: tuple[str, ...] = ("model", "stage", "version", "previous", "digest", "deployed")
        if result.get("delivery") == "pullRequest":
            keys = (*keys, "delivery", "pullRequest")
        emit_json({k: result.get(k) for k in keys})
        return
    click.echo(sentence(result))
    if result.get("delivery") == "pullRequest":
        _local_notice(project)
        _report_proposal(result)
        return
    stage = result["stage"]
    if result.get("forced"):
        click.echo("  gates were skipped with --force; the audit record says so")
    click.echo(f"  pinned in {project.relative(project.stage_file(stage))}")
    _local_notice(project)
    if result.get("deployed") != result["version"]:
        if in_local_mode():
            # Nothing deploys on the emulator: recording the apply is what CI's apply job would do after `pulumi up`.
            click.echo(f"Next: {next_command(f'record-deployment --stack {stage}')}  # stands in for CI's apply")
        else:
            click.echo(
                f"Next: commit {project.relative(project.stage_file(stage))}; CI applies it on merge and records "
                f"the deployment (or `mlinfra up --stack {stage}`)"
            )
    else:
        click.echo(f"Next: {next_command(f'status --stack {stage}')}")


def _local_notice(project: Project) -> None:
    from mlinfra.aws import local_mode

    if local_mode():
        from mlinfra.stacks.workspace import NOTICE

        click.echo(f"  {NOTICE}")


def _report_proposal(result: dict[str, Any]) -> None:
    stage = result["stage"]
    pr = result.get("pullRequest")
    if pr is None:
        click.echo("  the apply of that commit records the deployment (`mlinfra status` shows whether it ran).")
        return
    if result.get("alreadyDone"):
        click.echo("  (already proposed)")
    if pr.get("url"):
        click.echo(f"  pull request: {pr['url']}")
    elif pr.get("compareUrl"):
        click.echo(f"  open the pull request: {pr['compareUrl']}")
    if pr.get("note"):
        click.echo(f"  {pr['note']}")
    click.echo(
        f"  merging lets CI apply it, and the apply records the deployment "
        f"(`mlinfra record-deployment --stack {stage}`); the stage pointer moves then"
    )
    if in_local_mode():
        click.echo(f"Next: mlinfra local merge {pr['branch']}  # merges it and records the apply, as CI would")


@click.command()
@click.argument("model", shell_complete=complete_models)
@click.option("--version", "version", type=click.IntRange(min=1), required=True, help="Version to approve.")
@stage_option("Stage the version is approved to enter.", required=True)
@click.option("--reason", required=True, help="Why; recorded with the approver's identity.")
@json_option
def approve(model: str, version: int, stage: str, reason: str, as_json: bool) -> None:
    """Approve version N of MODEL for promotion into STAGE.

    Marks the version's model package in the preceding stage Approved (SageMaker's approval status, which the
    target stage's approval gate reads) and writes an audit record naming who approved. When the preceding stage
    lives in another account, its package is approved through that stage's `access.approvalRoleArn` (its records
    read through `access.sourceRoleArn`): the roles the bootstrap stack lends the next stage, assumed from STAGE's
    own session. Otherwise STAGE's own identity (its `access.roleArn`, or your credentials) approves it.

    \b
    Examples:
      mlinfra approve churn --version 7 --stack prod --reason "reviewed model card and drift report"
    """
    from mlinfra.registry import promote as promotion

    result = promotion.approve(Project.find(), model, version, stage, reason)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{model} v{version} approved for {stage} (package in {result['approvedIn']}) by {result['actor']}")


@click.command()
@click.argument("model", shell_complete=complete_models)
@stage_option("Stage to roll back.", required=True)
@click.option("--to", "to", type=click.IntRange(min=1), help="Version to return to; default: the one it ran before.")
@click.option("--reason", required=True, help="Why; recorded in the audit trail.")
@click.option("--apply", "apply_now", is_flag=True, help="Run `pulumi up` right after (direct stages only).")
@json_option
def rollback(model: str, stage: str, to: int | None, reason: str, apply_now: bool, as_json: bool) -> None:
    """Return MODEL in STAGE to the version it ran before (or --to N), through the promotion path.

    The artifact's integrity is checked; metric gates are skipped; the rollback is audited and pinned. In a stage
    delivered by pull request (mlinfra:delivery: pullRequest, the default for staging and prod) it opens the
    rollback pull request instead, and --apply is refused (exit 2): CI's next apply from main would undo it.

    \b
    Examples:
      mlinfra rollback churn --stack prod --reason "p99 latency regression"
      mlinfra rollback churn --stack dev --to 5 --reason "back to the last known good" --apply --json
    """
    from mlinfra.registry import promote as promotion
    from mlinfra.registry import proposals

    project = Project.find()
    if apply_now:
        proposals.refuse_apply(project, stage)
    _report(promotion.rollback(project, model, stage, to=to, reason=reason), as_json, project)
    if apply_now:
        from mlinfra.commands.deploy import run_up

        run_up(project, stage, yes=True)
