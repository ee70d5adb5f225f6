"""`mlinfra check --access` and `mlinfra check --account`: the access contract offline, the account's quotas."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlinfra.options import console, emit_json

if TYPE_CHECKING:
    from mlinfra.stacks.access import AccessReport
    from mlinfra.stacks.project import Project


def _print_access(report: AccessReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    access = report.access
    principals = sorted({r.principal for r in access.results})
    sampled = f"  (sample pins for {', '.join(report.sampled)})" if report.sampled else ""
    out.print(
        f"[bold]stack {report.stack}[/bold]  access contract: {len(principals)} principal(s), "
        f"{len(access.results)} call(s), {len(access.denied)} denied{sampled}"
    )
    for principal in principals:
        table = Table("", "action", "resource", "decided by", box=None, pad_edge=False)
        for result in (r for r in access.results if r.principal == principal):
            verdict = "[green]allowed[/green]" if result.decision.allowed else "[red]denied[/red]"
            context = " ".join(f"{k}={v}" for k, v in sorted(result.context.items()))
            resource = escape(result.resource + (f"  {context}" if context else ""))
            decided = result.decision.decided_by or result.decision.reason
            why = f" — {result.why}" if result.why and not result.decision.allowed else ""
            table.add_row(verdict, result.action, resource, escape(decided + why))
        role = next(r.role for r in access.results if r.principal == principal)
        out.print(f"  [bold]{principal}[/bold] ({role})")
        out.print(table)
    if access.absent:
        out.print(f"  not in this stack: {', '.join(access.absent)}")
    for note in access.notes:
        out.print(f"  [yellow]{escape(note)}[/yellow]")


def run_access(project: Project, stages: list[str], *, as_json: bool, all_stacks: bool) -> None:
    """Print each stack's access check; RefusedError (exit 3) naming the first denied call."""
    from mlinfra.bootstrap import stack as bootstrap_stack
    from mlinfra.errors import RefusedError
    from mlinfra.stacks.access import check_access

    identities: list[Any] = []
    accounts: dict[str, str] = {}
    if bootstrap_stack.stack_file(project).is_file():  # the CI roles and every role's boundary live there
        bootstrap = bootstrap_stack.load(project)
        identities = list(bootstrap_stack.render(bootstrap).resources)
        accounts = {name: entry.account_id for name, entry in bootstrap.config.stages.items()}
    reports = check_access(project, stages, identities=identities, accounts=accounts)
    if as_json:
        documents = [r.to_json() for r in reports]
        emit_json(documents if all_stacks else documents[0])
    else:
        for report in reports:
            _print_access(report)
    denied = [(r.stack, d) for r in reports for d in r.access.denied]
    if denied:
        stack, first = denied[0]
        more = f" (and {len(denied) - 1} more)" if len(denied) > 1 else ""
        why = f" ({first.why})" if first.why else ""
        raise RefusedError(
            f"stack {stack}: {first.principal} is denied {first.action} on {first.resource}{why}: "
            f"{first.decision.reason}{more}",
            failed=[d.to_json() for _, d in denied],
        )


def run_account(project: Project, stages: list[str], *, as_json: bool) -> None:
    """Check each stage's account (Service Quotas) for what its deployments need; exit 3 below the peak."""
    from mlinfra.errors import RefusedError
    from mlinfra.stacks.files import load_stage
    from mlinfra.stacks.quotas import stage_quotas

    results: list[dict[str, Any]] = []
    refusals: list[RefusedError] = []
    for stage in stages:
        loaded = load_stage(project, stage)
        checks = stage_quotas(project, loaded.config)
        results.append({"stack": stage, "quotas": [c.to_json() for c in checks]})
        if not as_json:
            out = console()
            out.print(f"[bold]stack {stage}[/bold]  account: {len(checks)} instance quota(s) checked")
            for c in checks:
                style = "green" if c.ok else "red"
                out.print(f"  [{style}]{'ok' if c.ok else 'short'}[/{style}]  {c.message()}")
        try:
            from mlinfra.stacks.quotas import refuse_short

            refuse_short(stage, checks)
        except RefusedError as exc:
            refusals.append(exc)
    if as_json:
        emit_json(results if len(stages) > 1 else results[0])
    if refusals:
        raise refusals[0]
