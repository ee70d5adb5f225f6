"""`mlinfra drift`: score a model's captured traffic against its baseline, publish the metric its alarm watches."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mlinfra.options import complete_models, console, emit_json, json_option, stack_option
from mlinfra.stacks.project import Project

if TYPE_CHECKING:
    from mlinfra.monitoring.drift import DriftRun


def _workers(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    """`auto` (None: chosen from the window's size and the usable CPUs) or a number of processes from 1 to 64."""
    if value == "auto":
        return None
    try:
        number = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not auto or a number of processes (1-64)") from None
    if not 1 <= number <= 64:
        raise click.BadParameter(f"{number} processes: use auto or a number from 1 to 64")
    return number


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


@click.command()
@click.argument("model", shell_complete=complete_models)
@stack_option
@click.option(
    "--version", "version", type=click.IntRange(min=1), help="Baseline of this version (default: what the stage runs)."
)
@click.option("--since", metavar="DURATION", help="Window ending now: 90m, 24h (default), 7d, 2w.")
@click.option("--from", "start", metavar="TIME", help="Window start, ISO 8601 (UTC unless a zone is given).")
@click.option("--to", "end", metavar="TIME", help="Window end, exclusive (default: now).")
@click.option(
    "--capture",
    type=click.Path(path_type=Path),
    help="Read capture files from this folder (SageMaker's layout) or .jsonl file instead of the stage's S3 capture.",
)
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    help="Score against this baseline.json or data sample (CSV/Parquet) instead of the version's stored baseline.",
)
@click.option(
    "--publish", is_flag=True, help="Put the scores into CloudWatch (mlinfra/Drift), where the drift alarm looks."
)
@click.option(
    "--report", "report_path", type=click.Path(path_type=Path, dir_okay=False), help="Write an HTML report here."
)
@click.option(
    "--workers",
    metavar="auto|N",
    default="auto",
    callback=_workers,
    show_default=True,
    help="Processes that read, decode and count capture files: auto = one per usable CPU when the window has at "
    "least 8 files per process, else 1; or a number (1 = this process only).",
)
@json_option
def drift(
    model: str,
    stack: str | None,
    version: int | None,
    since: str | None,
    start: str | None,
    end: str | None,
    capture: Path | None,
    baseline: Path | None,
    publish: bool,
    report_path: Path | None,
    workers: int | None,
    as_json: bool,
) -> None:
    """Score MODEL's captured traffic in a stage against a version's baseline, feature by feature.

    Reads the stage's data capture (SageMaker's files in the registry bucket, hour by hour, only the window) and
    computes per feature PSI, the Kolmogorov-Smirnov statistic and p-value, the Jensen-Shannon distance, the
    missing rate and the share of values outside the baseline's range (for categorical features: values the
    baseline never saw). The table is sorted by drift; a feature over the model's `alarms.driftPsi` (or the
    optional `driftJs` / `driftKsPvalue`) is drifted and the command exits 3. Malformed capture lines are counted
    per reason, never scored. A window with no rows says so, exits 0 and publishes nothing; so does one with fewer
    rows than the model's `alarms.driftMinRows` (default 100): "too few rows to judge".

    Prediction drift: when the version's baseline has a prediction baseline (the model's outputs on the sample,
    computed by `register --baseline` and `mlinfra baseline --model-dir`) and the capture holds the endpoint's
    answers, each output (the predicted label, the probability of each class, or the predicted number) is scored
    the same way, and a drifted output exits 3 too. Without either, a note says why and nothing fails.

    The report opens with its verdict ("3 of 30 features drifted: ... Predictions drifted: share of class 1
    0.37 → 0.62, PSI 0.41."), then the window, the table, the prediction lines, the baseline it was scored against
    (rows, source, when registered), the max PSI of the drift job's last runs when it wrote reports, what the
    thresholds mean and, when something drifted, what to do. --json adds "verdict", "judged", "minRows", "baseline"
    and "trend" to the report's JSON, whose "predictions" holds prediction drift.

    \b
    Examples:
      mlinfra drift churn --stack staging                   last 24 hours of what staging runs
      mlinfra drift churn --stack prod --since 7d --report drift.html
      mlinfra drift churn --stack prod --from 2026-11-01 --to 2026-11-08 --json
      mlinfra drift churn --stack staging --publish         feed the drift alarm now
      mlinfra drift churn --stack dev --version 4 --capture ./exported/   check traffic before promoting

    Exit codes: 0 no drift (or no rows), 1 failed, 2 bad input, 3 a feature or a prediction drifted over its
    threshold.
    """
    from mlinfra.monitoring import drift as library

    run = library.drift(
        Project.find(),
        model,
        stack=stack,
        version=version,
        since=since,
        start=start,
        end=end,
        capture=capture,
        baseline=baseline,
        publish=publish,
        report_path=report_path,
        progress=not as_json and sys.stderr.isatty(),
        workers=workers,
    )
    report = run.report
    for warning in run.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        emit_json(run.to_json())
    else:
        _print_report(run)
    if not report.rows:
        click.echo(
            f"no captured rows for {model} in {report.stage} between {report.window.start:%Y-%m-%d %H:%M}Z and "
            f"{report.window.end:%Y-%m-%d %H:%M}Z ({run.source}): nothing scored, nothing published",
            err=True,
        )
        return
    if not run.judged:
        return
    if publish:
        click.echo(f"published {run.published} metric(s) to CloudWatch mlinfra/Drift", err=True)
    if run.report_path is not None:
        click.echo(f"wrote {run.report_path}", err=True)
    if run.drifted:
        predictions = report.predictions
        names = [f.name for f in report.drifted]
        names += [f"predictions ({o.name})" for o in (predictions.outputs if predictions else []) if o.drifted]
        click.echo(f"drift: {', '.join(names)} over the threshold (PSI > {report.thresholds.psi})", err=True)
        click.get_current_context().exit(3)


def _print_report(run: DriftRun) -> None:
    """The verdict first, then what was scored against what, the table, what the thresholds mean and what to do."""
    from mlinfra.options import next_command

    report = run.report
    out = console()
    out.print(run.verdict(), highlight=False, no_wrap=False, overflow="fold")
    _print_table(run)
    if not run.judged:
        return
    if run.baseline_rows is not None:
        when = f", registered {run.baseline_date[:16].replace('T', ' ')}Z" if run.baseline_date else ""
        source = f" of {run.baseline_source}" if run.baseline_source else ""
        out.print(f"baseline: {run.baseline_rows:,} rows{source}{when}", highlight=False)
    if run.trend:
        values = ", ".join(f"{value:.3f}" for value in run.trend)
        out.print(
            f"max PSI of the drift job's last {len(run.trend)} runs (oldest first): {values}",
            highlight=False,
            no_wrap=False,
            overflow="fold",
        )
    limits = report.thresholds
    extra = "".join(
        [
            f"; or its Jensen-Shannon distance above {limits.js} (alarms.driftJs)" if limits.js else "",
            f"; or its KS p-value below {limits.ks_pvalue} (alarms.driftKsPvalue)" if limits.ks_pvalue else "",
        ]
    )
    out.print(
        f"Thresholds: a feature drifts when its PSI (how far this window's share of rows per bin moved from the "
        f"baseline's) is above {limits.psi} (alarms.driftPsi){extra}. Read PSI as under 0.1 stable, 0.1 to 0.2 "
        "moderate, over 0.2 a shift worth acting on. KS p-values are tiny for any shift once thousands of rows are "
        "scored: judge KS by its statistic.",
        highlight=False,
        no_wrap=False,
        overflow="fold",
    )
    if run.drifted:
        version = report.version if report.version is not None else "N"
        rollback = next_command(f'rollback {report.model} --stack {report.stage} --reason "drift"')
        out.print(
            "What to do: (1) check the upstream data for a changed unit, source or pipeline; (2) compare the window "
            f"with the training data (`{next_command(f'show {report.model} --version {version}')}` summarizes the "
            f"baseline; `--report drift.html` charts every feature); (3) if the model's answers suffer, roll back: "
            f"`{rollback}`; (4) retrain on recent data and register a new version.",
            highlight=False,
            no_wrap=False,
            overflow="fold",
        )


def _print_table(run: DriftRun) -> None:
    from rich.table import Table

    report = run.report
    out = console()
    out.print(
        f"{report.model} v{report.version if report.version is not None else '-'} in {report.stage}: "
        f"{report.rows:,} rows from {report.files} file(s)"
        f"{f' in {report.workers} processes' if report.workers > 1 else ''}, "
        f"{report.window.start:%Y-%m-%d %H:%M}Z to {report.window.end:%Y-%m-%d %H:%M}Z",
        highlight=False,
        no_wrap=False,
        overflow="fold",
    )
    if report.malformed:
        out.print("malformed: " + ", ".join(f"{k} {v}" for k, v in report.malformed.items()), highlight=False)
    if not report.rows or not run.judged:
        return
    table = Table(box=None, pad_edge=False)
    for column in ("FEATURE", "PSI", "KS", "KS P", "JS", "MISSING", "OUT OF RANGE", "DRIFT"):
        table.add_column(column, justify="left" if column in {"FEATURE", "DRIFT"} else "right")
    for f in report.features:
        unseen = " unseen" if f.kind == "categorical" and f.out_of_range_rate else ""
        table.add_row(
            f.name,
            _num(f.psi),
            _num(f.ks),
            _num(f.ks_pvalue, 4),
            _num(f.js),
            _pct(f.missing_rate),
            _pct(f.out_of_range_rate) + unseen,
            "DRIFTED" if f.drifted else "ok",
        )
    out.print(table)
    out.print(f"max PSI {_num(report.max_psi)} (threshold {report.thresholds.psi})", highlight=False)
    _print_outputs(run)


def _print_outputs(run: DriftRun) -> None:
    """Prediction drift: one line per output of the model, or the note saying why it was not scored."""
    predictions = run.report.predictions
    if predictions is None:
        return
    out = console()
    if predictions.status != "scored":
        out.print(predictions.note or "", highlight=False, no_wrap=False, overflow="fold")
        return
    out.print(f"predictions: {predictions.rows:,} output(s) scored against the prediction baseline", highlight=False)
    for o in predictions.outputs:
        out.print(
            f"  {o.name}: {o.change()}, JS {_num(o.js)}"
            + (f", KS {_num(o.ks)}" if o.ks is not None else "")
            + (" DRIFTED" if o.drifted else " ok"),
            highlight=False,
            no_wrap=False,
            overflow="fold",
        )
    unreadable = predictions.records.get("unreadable", 0) + predictions.records.get("unreadableEntries", 0)
    if unreadable:
        out.print(f"  {unreadable} output(s) could not be read and were left out", highlight=False)
