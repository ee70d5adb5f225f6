"""`mlinfra local start | stop | status | bootstrap`: an AWS emulator on this machine instead of an AWS account."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from mlinfra.aws import DEFAULT_LOCAL_PORT, ENDPOINT_ENV, LOCAL_ENV
from mlinfra.options import F, all_option, chosen_stages, emit_json, json_option, stack_option
from mlinfra.stacks.project import Project

if TYPE_CHECKING:
    from mlinfra.local import emulator


@click.group()
def local() -> None:
    """Run an AWS emulator (moto's server) on loopback and create the stacks' registries in it.

    Everything but `pulumi up` then works without an AWS account: `mlinfra --local ...` (or MLINFRA_LOCAL=1) sends
    every AWS call to the emulator and never falls back to real credentials. Needs `pip install 'mlinfra[local]'`.

    \b
    Examples:
      mlinfra local up                   start it and create every stage's registry in it (one step)
      mlinfra local start --detach       run the emulator in the background
      mlinfra local bootstrap --all      create every stage's registry in it
      mlinfra --local stack show dev
      mlinfra local stop
    """


def _port_option(help_text: str) -> Callable[[F], F]:
    """The emulator's --port (start and up)."""
    return click.option(
        "--port", "-p", type=click.IntRange(1, 65535), default=DEFAULT_LOCAL_PORT, show_default=True, help=help_text
    )


@local.command("start")
@_port_option("Port on 127.0.0.1 to listen on.")
@click.option(
    "--detach", "-d", is_flag=True, help="Run in the background and return; stop it with `mlinfra local stop`."
)
def start(port: int, detach: bool) -> None:
    """Start the AWS emulator on 127.0.0.1 and record it in .mlinfra/local/emulator.json.

    Without --detach it runs in the foreground until Ctrl-C. The `export AWS_ENDPOINT_URL=...` line goes to stdout
    (so `eval "$(mlinfra local start --detach)"` points other AWS tools at it), everything else to stderr; the
    emulator's own log is .mlinfra/local/emulator.log. Fails (exit 1) when the port is busy or an emulator started
    here is already running.

    \b
    Examples:
      mlinfra local start --detach
      eval "$(mlinfra local start --detach --port 5050)"
      mlinfra local start                # foreground, Ctrl-C stops it
    """
    from mlinfra.local import emulator

    project = Project.find()

    def ready(started: emulator.Emulator) -> None:
        click.echo(
            f"Started the AWS emulator (pid {started.pid}) at {started.url}; log: {emulator.LOCAL_LOG.as_posix()}",
            err=True,
        )
        click.echo(f"export {ENDPOINT_ENV}={started.url}")
        click.echo(f"then use `mlinfra --local ...` or {LOCAL_ENV}=1", err=True)
        if not detach:
            click.echo("Press Ctrl-C to stop it.", err=True)

    stopped = emulator.start(project.root, port, detach=detach, on_ready=ready)
    if not detach:
        click.echo(f"Stopped the AWS emulator (pid {stopped.pid}).", err=True)


@local.command("stop")
def stop() -> None:
    """Stop the emulator started with `mlinfra local start` in this checkout.

    Sends SIGTERM, then SIGKILL after 5 s. When none is running it says so and exits 0 (a stale record, its process
    gone, is removed), so it is safe in scripts and cleanup steps.

    \b
    Examples:
      mlinfra local stop
    """
    project = Project.find()
    from mlinfra.local import emulator

    result = emulator.stop(project.root)
    if result.emulator is None:
        click.echo("No emulator running.")
    elif result.was_running:
        click.echo(f"Stopped the AWS emulator (pid {result.emulator.pid}) at {result.emulator.url}.")
    else:
        click.echo(f"No emulator running; removed the stale record of pid {result.emulator.pid}.")


@local.command("status")
@json_option
def status(as_json: bool) -> None:
    """Show whether the emulator started here is running and whether an emulator answers where local mode looks.

    Local mode uses $AWS_ENDPOINT_URL, else the emulator recorded by `mlinfra local start`, else port 5000. Exits 0
    either way. --json prints {"running", "url", "pid", "port", "started", "answers"}.

    \b
    Examples:
      mlinfra local status
      mlinfra local status --json | jq .answers
    """
    project = Project.find()
    from mlinfra.local import emulator

    info = emulator.status(project.root)
    if as_json:
        emit_json(info)
        return
    if info["running"]:
        click.echo(f"emulator  running (pid {info['pid']}, port {info['port']}, since {info['started']})")
    else:
        click.echo("emulator  not started here (start one with `mlinfra local start --detach`)")
    click.echo(f"endpoint  {info['url']} ({'answers' if info['answers'] else 'no answer'})")


@local.command("bootstrap")
@stack_option
@all_option
@json_option
def bootstrap(stack: str | None, all_stacks: bool, as_json: bool) -> None:
    """Create in the emulator the keys, registry buckets, topics and package groups the stacks declare.

    Local mode works on a scratch copy of the stack files in .mlinfra/local/workspace/ (a git repository whose
    origin is .mlinfra/local/remote.git), so emulator pins never reach your stacks/. The emulator keeps its state in
    memory: after it restarts, run bootstrap again; it then also starts the scratch copy afresh.

    Names and settings come from the offline render of each stack (as `mlinfra preview` shows it), rendered with the
    emulator's account id, so every command in local mode finds them. Idempotent: a second run reports everything
    as existing. Endpoints, IAM, EC2, alarms and the rest are listed as skipped. Always runs against the emulator,
    never AWS: exits 1 when no emulator answers. --json prints {"endpoint", "stages": [{"stage", "region",
    "accountId", "counts", "created", "updated", "existing", "skipped"}]}.

    \b
    Examples:
      mlinfra local bootstrap --all
      mlinfra local bootstrap --stack dev
      mlinfra local bootstrap --all --json | jq '.stages[].counts'
    """
    project = Project.find()
    stages = chosen_stages(project, stack, all_stacks)
    from mlinfra.local import bootstrap as local_bootstrap

    result = local_bootstrap.bootstrap(project, stages)
    if as_json:
        emit_json(result.to_json())
        return
    from mlinfra.stacks.workspace import NOTICE

    click.echo(f"Bootstrapped the AWS emulator at {result.endpoint}.")
    for stage in result.stages:
        counts = stage.counts()
        click.echo(
            f"{stage.stage} ({stage.region}, account {stage.account_id}): {counts['created']} created, "
            f"{counts['updated']} updated, {counts['existing']} existing, {counts['skipped']} skipped"
        )
        rows = [(outcome, entry) for outcome in ("created", "updated", "existing") for entry in getattr(stage, outcome)]
        width = max((len(entry["type"]) for _, entry in rows), default=0)
        for outcome, entry in rows:
            click.echo(f"  {outcome:<9} {entry['type']:<{width}}  {entry['name']}")
        if stage.skipped:
            kinds = Counter(entry["type"] for entry in stage.skipped)
            click.echo("  skipped   " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())))
    click.echo(NOTICE)


@local.command("up")
@_port_option("Port on 127.0.0.1 for a new emulator (one that already answers is reused).")
@json_option
def up(port: int, as_json: bool) -> None:
    """Start the AWS emulator unless one answers, and create every stage's registries in it: local mode in one step.

    Idempotent: run it again at any time (after a reboot, a `local stop`, or to pick up a model added to the stack
    files); it reuses an emulator that answers where local mode looks ($AWS_ENDPOINT_URL, else the one started
    here) and creates only what is missing. Then use `mlinfra --local ...` or MLINFRA_LOCAL=1, in a shell or in a
    notebook. --json prints {"endpoint", "started", "pid", "stages": [...]} (stages as `local bootstrap --json`).

    \b
    Examples:
      mlinfra local up
      MLINFRA_LOCAL=1 mlinfra stack list
      mlinfra local up --port 5050 --json
    """
    from mlinfra.local import bootstrap as local_bootstrap
    from mlinfra.local import emulator

    project = Project.find()
    info = emulator.status(project.root)
    started = None
    if not info["answers"]:
        started = emulator.start(project.root, port, detach=True)
        os.environ[ENDPOINT_ENV] = started.url
    result = local_bootstrap.bootstrap(project, project.stages())
    if as_json:
        emit_json(
            {
                "endpoint": result.endpoint,
                "started": started is not None,
                "pid": started.pid if started else info.get("pid"),
                "stages": result.to_json()["stages"],
            }
        )
        return
    how = f"started (pid {started.pid})" if started else "already running"
    click.echo(f"AWS emulator at {result.endpoint}: {how}; log {emulator.LOCAL_LOG.as_posix()}")
    for stage in result.stages:
        counts = stage.counts()
        click.echo(
            f"  {stage.stage:<9} registry ready: {counts['created']} created, {counts['existing']} existing, "
            f"{counts['updated']} updated"
        )
    from mlinfra.stacks.workspace import NOTICE

    click.echo(NOTICE)
    click.echo(f"Next: export {LOCAL_ENV}=1 (or `mlinfra --local ...`), then `mlinfra --local stack list`")


@local.command("merge")
@click.argument("branch")
@json_option
def merge(branch: str, as_json: bool) -> None:
    """Accept a local-mode pull request: merge BRANCH into the scratch remote's main, record the apply as CI would.

    Promotions into stages delivered by pull request (staging, prod) push their pin on a branch of local mode's
    scratch remote, which has no pull requests. This merges it (a fast-forward, or a merge commit when main moved;
    a conflict is reported before anything changes), brings the scratch workspace up to main (its uncommitted
    direct-stage pins stay), and records the deployment of each stage whose stack file changed: the stage pointer
    moves and a `deploy` audit record is written, as the apply job does after `pulumi up`. Merging a merged branch
    again changes nothing. --json prints {"branch", "commit", "how", "stages", "deployments"}.

    \b
    Examples:
      mlinfra local merge mlinfra/promote-staging-churn-v1
      mlinfra local merge mlinfra/rollback-prod-churn-v3 --json
    """
    from mlinfra.aws import enter_local_mode
    from mlinfra.local.merge import merge as merge_branch

    os.environ[LOCAL_ENV] = "1"  # the scratch workspace and the emulator, whatever the flags
    project = Project.find()
    enter_local_mode(project.root)
    result = merge_branch(project, branch)
    if as_json:
        emit_json(result.to_json())
        return
    if result.how == "already merged":
        click.echo(f"{result.branch} is already merged into main ({result.commit[:12]}); nothing to do")
        return
    click.echo(f"merged {result.branch} into main ({result.how}, {result.commit[:12]})")
    for deployment in result.deployments:
        for entry in deployment["models"]:
            state = "runs" if entry["status"] == "deployed" else "still runs"
            click.echo(f"  {entry['model']}: {deployment['stage']} {state} v{entry['version']} (deployment recorded)")
    if result.stages:
        click.echo(f"Next: mlinfra --local status --stack {result.stages[-1]}")
