"""`mlinfra check`: the policy pack and the monthly cost estimate on the offline render of each stack."""

from __future__ import annotations

import click

from mlinfra.options import all_option, chosen_stages, console, emit_json, json_option, stack_option
from mlinfra.stacks.project import Project


def _print(report: object) -> None:
    from rich.markup import escape
    from rich.table import Table

    from mlinfra.stacks.check import StackReport

    assert isinstance(report, StackReport)  # noqa: S101 - typed for mypy
    out = console()
    est = report.estimate
    budget = f" of {report.budget:,.2f} budget" if report.budget is not None else " (no budget)"
    out.print(
        f"[bold]stack {report.stack}[/bold]  {report.rules} rules, {report.enforcement}  "
        f"~${est.total:,.2f}/month{budget}  (prices {est.region}, table of {est.table_date})"
    )
    if report.violations:
        table = Table("level", "rule", "resource", "message", box=None, pad_edge=False)
        for v in report.violations:
            style = "red" if v.level == "mandatory" else "yellow"
            table.add_row(f"[{style}]{v.level}[/{style}]", v.rule, v.resource, escape(v.message))
        out.print(table)
    else:
        out.print("  no violations")
    costs = Table("resource", "monthly USD", "basis", box=None, pad_edge=False)
    for line in sorted(est.lines, key=lambda item: -(item.monthly_usd or 0)):
        if line.monthly_usd is None or line.monthly_usd >= 0.005:
            usd = "missing" if line.monthly_usd is None else f"{line.monthly_usd:,.2f}"
            costs.add_row(line.resource, usd, escape(line.basis))
    out.print(costs)
    if est.peak_hourly:
        out.print(
            f"  endpoints: ${est.steady_hourly:,.2f}/hour steady, ${est.peak_hourly:,.2f}/hour at the peak of a "
            f"blue/green update ({'; '.join(est.peak_basis)})"
        )
    if est.missing:
        out.print(f"  [yellow]{len(est.missing)} resource(s) without a price in the table: not counted[/yellow]")
    if report.over_budget:
        out.print(f"  [red]estimate ${est.total:,.2f} is over mlinfra:budgetMonthlyUsd {report.budget:,.2f}[/red]")


@click.command()
@stack_option
@all_option
@click.option(
    "--offline",
    is_flag=True,
    help="Only the policy pack and the cost estimate: skip re-checking the gates of new pins (no AWS access).",
)
@json_option
@click.option(
    "--access",
    is_flag=True,
    help="Check the access contract instead: every AWS call the code makes, by principal, against the rendered "
    "identity, bucket and key policies.",
)
@click.option(
    "--account",
    is_flag=True,
    help="Check the stage's AWS account instead: its SageMaker instance quotas against the blue/green peak.",
)
def check(stack: str | None, all_stacks: bool, offline: bool, as_json: bool, access: bool, account: bool) -> None:
    """Run the policy pack, estimate the monthly cost and re-check the gates of new pins of a stack.

    Renders each stack once under Pulumi's mock runtime (as `mlinfra preview` does) and runs the rules of
    infra/policy/ over it: the same functions `pulumi up --policy-pack infra/policy` enforces. Violations are
    advisory or mandatory per the stage's mlinfra:policy.enforcement. The estimate prices each resource from the
    dated table shipped in the package (region and date shown; a missing price is listed, not guessed) with the
    use assumed in mlinfra:policy.costAssumptions.

    Gates where the pin is applied: every pin that differs from what the stage pointer records (a promotion not
    yet applied, or a pin written by hand) has the stage's promotion gates evaluated again against this stack
    file: the version is in the stage's registry and comes from the source stage, approval, metrics, source
    alarms, and soak counted from the source stage's recorded deployment. A pin of a version the stage ran before
    is a rollback (gates skipped); a promotion forced with --force is honoured. This reads the registries (AWS);
    --offline skips it, and so does a stack the policy pack already refuses. CI's plan job runs
    `mlinfra check --stack <stage>` before every apply.

    Exit 3 when a stack has a mandatory violation, its estimate is over mlinfra:budgetMonthlyUsd, or a new pin
    fails a gate (the message names the gate); advisory violations print but exit 0. The access contract is one of
    the rules, mandatory in every stage.

    --access prints each principal's calls (drift job, endpoint, scheduler, sandbox VM, analyst, CI roles) as
    allowed or denied with the statement that decided, each stage rendered as if every declared model were pinned;
    exit 3 on a denied call. --account reads the stage's Service Quotas (AWS credentials needed) and exits 3 when an
    instance quota ("ml.<type> for endpoint usage") is below the blue/green peak, naming the quota and the number
    needed. --json prints one object per
    stack (a list with --all): {"stack", "rules", "violations": [{"rule", "resource", "level", "message"}],
    "monthlyUsd", "resources": [per-resource lines], "pins": [{"model", "version", "checked", "passed", "gates"}],
    ...} ("pins" absent with --offline).

    \b
    Examples:
      mlinfra check --stack prod
      mlinfra check --all --offline          # no AWS: policy pack and cost only
      mlinfra check --all --json | jq '.[] | {stack, monthlyUsd, violations: (.violations | length)}'
      mlinfra check --access --all
      mlinfra check --access --stack prod --json | jq '.calls[] | select(.allowed | not)'
      mlinfra check --account --stack prod
    """
    from mlinfra.errors import RefusedError
    from mlinfra.registry import pingates as pin_gates
    from mlinfra.stacks.check import check as run_checks

    project = Project.find()
    stages = chosen_stages(project, stack, all_stacks)
    if access or account:
        from mlinfra.commands import checkaccount

        if access:
            checkaccount.run_access(project, stages, as_json=as_json, all_stacks=all_stacks)
        if account:
            checkaccount.run_account(project, stages, as_json=as_json)
        return
    reports = run_checks(project, stages)
    # A stack the policy pack refuses is refused already: its pins' gates (which read AWS) are not read then.
    refused_by_policy = any(r.refused for r in reports)
    pins = {} if offline or refused_by_policy else pin_gates.recheck_all(project, stages)
    if as_json:
        documents = [
            {**r.to_json(), **({"pins": [p.to_json() for p in pins[r.stack]]} if pins else {})} for r in reports
        ]
        emit_json(documents if all_stacks else documents[0])
    else:
        for report in reports:
            _print(report)
            for line in pin_gates.lines(pins.get(report.stack, [])):
                console().print(line)
    refused = [r for r in reports if r.refused]
    gated = [why for stage, checks in pins.items() if (why := pin_gates.refusal(stage, checks))]
    if gated and not refused:
        raise RefusedError(gated[0] + (f" (and {len(gated) - 1} more stack(s))" if len(gated) > 1 else ""))
    if refused:
        first = refused[0]
        why = (
            f"{len(first.mandatory)} mandatory violation(s)"
            if first.mandatory
            else f"estimate ${first.estimate.total:,.2f}/month over the budget of {first.budget:,.2f}"
        )
        more = f" (and {len(refused) - 1} more stack(s))" if len(refused) > 1 else ""
        raise RefusedError(f"stack {first.stack}: {why}{more}; see the report above")
