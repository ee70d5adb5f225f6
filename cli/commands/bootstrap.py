"""`mlinfra bootstrap preview | up | github`: the one-time AWS and GitHub setup of a fork, as a Pulumi stack."""

from __future__ import annotations

from typing import Any

import click

from mlinfra.options import console, emit_json, json_option


@click.group()
def bootstrap() -> None:
    """The bootstrap stack: GitHub's OIDC trust, each stage's CI roles, the state backend, the package repository.

    Its program is infra/bootstrap/ (a Pulumi project of its own) and its settings are
    infra/bootstrap/Pulumi.bootstrap.yaml: the repository, each stage's account, the state backend. Not to be
    confused with `mlinfra local bootstrap`, which fills the local emulator.

    \b
    Examples:
      mlinfra bootstrap preview                 what it creates, offline
      mlinfra bootstrap up                      create it (pulumi CLI and AWS credentials)
      mlinfra bootstrap github --apply          set the repository's variables and environments with gh
    """


def _print_tree(rendered: Any) -> None:
    from rich.markup import escape
    from rich.tree import Tree

    from mlinfra.commands.preview import key_properties
    from mlinfra.stacks.render import short_type

    root = Tree(f"[bold]stack {rendered.stack}[/bold]  ({len(rendered.resources)} resources)")
    nodes: dict[str | None, Any] = {None: root}
    for resource in rendered.resources:
        props = "  ".join(f"{k}={escape(str(v))}" for k, v in key_properties(resource.type, resource.inputs))
        label = f"{resource.name} [dim]{short_type(resource.type)}[/dim]" + (f"  {props}" if props else "")
        nodes[resource.name] = nodes.get(resource.parent, root).add(label)
    console().print(root)


@bootstrap.command("preview")
@json_option
def preview(as_json: bool) -> None:
    """Render the bootstrap stack offline and print what it would create, its outputs and who may assume what.

    Runs infra/bootstrap/ under Pulumi's mock runtime: no engine, no credentials, no network. Every ARN it prints
    is exact (derived from the accounts in the stack file), except ids AWS assigns (KMS key ids). The trust table
    evaluates each role's trust policy against the OIDC claims of a push to main, a pull request from this
    repository and from a fork, and each environment. --json prints {"stack", "resources": [{"type", "name",
    "parent", "inputs"}], "outputs", "trust": [{"scenario", "subject", "noToken", "assumes"}]}.

    \b
    Examples:
      mlinfra bootstrap preview
      mlinfra bootstrap preview --json | jq '.outputs.roles.prod'
    """
    from mlinfra.bootstrap import stack, trust

    loaded = stack.load(stack.find_project())
    rendered = stack.render(loaded)
    table = trust.assumable(loaded.config, rendered)
    if as_json:
        emit_json({**rendered.to_json(), "outputs": rendered.outputs, "trust": [row.to_json() for row in table]})
        return
    _print_tree(rendered)
    from rich.table import Table

    grid = Table(title="Who may assume which role (trust policies evaluated against sample OIDC tokens)")
    for column in ("scenario", "subject", "roles it can assume"):
        grid.add_column(column)
    for row in table:
        grid.add_row(row.scenario, row.subject or f"no token: {row.refusal}", ", ".join(row.assumes) or "none")
    console().print(grid)


@bootstrap.command("up")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def up(yes: bool) -> None:
    """Create or update the bootstrap stack with `pulumi up` (Automation API), in infra/bootstrap/.

    Needs the `pulumi` CLI and credentials for the tooling account (which assumes each stage account's admin role).
    The stack's own state lives wherever `pulumi login` points (the state bucket it creates does not exist yet):
    see docs/bootstrap.md. Without the CLI it exits 1 and says how to install it.

    \b
    Examples:
      mlinfra bootstrap up
      mlinfra bootstrap up --yes
    """
    from mlinfra.bootstrap import stack

    loaded = stack.load(stack.find_project())  # bad config fails first (exit 2, file and key)
    stack.require_pulumi_cli()
    if not yes:
        click.confirm("Apply the bootstrap stack?", abort=True)
    result = stack.up(loaded, on_output=lambda line: click.echo(line, nl=False))
    click.echo(f"\nbootstrap: {result}; next: mlinfra bootstrap github --apply")


@bootstrap.command("github")
@click.option("--apply", "apply_", is_flag=True, help="Set them in the repository with GitHub's CLI (`gh`).")
@json_option
def github(apply_: bool, as_json: bool) -> None:
    """Print the repository variables, environments and protection rules the workflows need; --apply sets them.

    Read from the workflows (.github/workflows/*.yml: each `vars.X`, and the environment of the job reading it)
    and the bootstrap stack's outputs, rendered offline: role ARNs per environment, the state backend, Pulumi
    teams. A variable a workflow reads that the bootstrap does not provide refuses (exit 2), and a job that would
    assume a stage's role outside the environment the role trusts is reported, so the repository's configuration
    cannot drift from the roles. With --apply, `gh` creates each environment with its protection rules
    (required reviewers, prevent self-review, deployment branches) and sets each variable; running it again
    changes nothing. --json prints {"repository", "variables": {"repository", "environments"}, "environments":
    [{"name", "reviewers", "preventSelfReview", "deploymentBranches"}], "unset", "warnings"}.

    \b
    Examples:
      mlinfra bootstrap github
      mlinfra bootstrap github --apply
      mlinfra bootstrap github --json | jq '.variables.environments.prod'
    """
    from mlinfra.bootstrap import github as gh
    from mlinfra.bootstrap import stack

    project = stack.find_project()
    loaded = stack.load(project)
    planned = gh.plan(project.root, stack.render(loaded).outputs, loaded.config)
    done = gh.apply(planned) if apply_ else []
    if as_json:
        emit_json({**planned.to_json(), "applied": done})
        return
    click.echo(f"Repository {planned.repository}")
    click.echo("Repository variables:")
    for name, value in planned.repository_variables.items():
        click.echo(f"  {name}={value}")
    for env in planned.environments:
        branches = "any branch" if env.branches is None else ", ".join(env.branches) + " only"
        review = f"; reviewers {', '.join(env.reviewers)}, no self-review" if env.reviewers else ""
        click.echo(f"Environment {env.name} (deployments from {branches}{review})")
        for name, value in planned.environment_variables.get(env.name, {}).items():
            click.echo(f"  {name}={value}")
    if planned.unset:
        click.echo("Leave unset: " + ", ".join(planned.unset))
    for warning in planned.warnings:
        click.echo(f"warning: {warning}", err=True)
    if apply_:
        click.echo(f"Set {len(done)} item(s) in {planned.repository} with gh.")
    else:
        click.echo("Set them with: mlinfra bootstrap github --apply")
