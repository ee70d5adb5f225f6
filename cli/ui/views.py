"""The pages: the data of each (from data.RegistryView) laid out for its template in model_templates/ui/.

The same functions render the live server's pages and the static site's: `Site` says which, and turns a path in the
site (`models/churn/`) into the link a page needs (`/models/churn/` on the server; `../../models/churn/index.html`
in a static copy opened from disk or published under any prefix). Templates are autoescaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from mlinfra.ui.charts import Chart, line_chart
from mlinfra.ui.data import DriftRun, Loaded, RegistryView, StageInfo

MAX_METRIC_CHARTS = 6
MAX_FEATURE_LINES = 7  # the drift trend draws max PSI and the features that drifted most lately
APPROVAL_NAMES = {"PendingManualApproval": "pending", "Approved": "approved", "Rejected": "rejected"}


@dataclass(frozen=True)
class Site:
    """How a page links to the others: served (absolute paths) or static (relative paths to index.html files)."""

    static: bool = False
    path: str = ""  # this page's path in the site ("" for the board, "models/churn/" for a model)
    read_only: bool = False
    local: bool = False
    tokens: dict[str, str] = field(default_factory=dict)  # the refresh button's CSRF token, on the server

    def href(self, target: str) -> str:
        """The link from this page to `target`, a path in the site."""
        if not self.static:
            return "/" + target
        relative = "../" * self.path.count("/") + target
        return relative + "index.html" if target == "" or target.endswith("/") else relative

    def at(self, path: str) -> Site:
        """The same site, for the page at `path`."""
        return Site(self.static, path, self.read_only, self.local, self.tokens)

    @property
    def actions(self) -> bool:
        """Whether the page offers actions (never in a static copy or with --read-only)."""
        return not (self.static or self.read_only)


def model_path(model: str) -> str:
    """A model's page."""
    return f"models/{quote(model, safe='')}/"


def version_path(model: str, version: int) -> str:
    """A version's page."""
    return f"{model_path(model)}v/{int(version)}/"


def diff_path(model: str, first: int, second: int) -> str:
    """Two versions side by side."""
    return f"{model_path(model)}diff/{int(first)}/{int(second)}/"


def drift_path(model: str, stage: str) -> str:
    """A model's drift in a stage."""
    return f"{model_path(model)}drift/{quote(stage, safe='')}/"


def report_path(model: str, stage: str, stamp: str) -> str:
    """One drift report page, as the job stored it."""
    return f"{drift_path(model, stage)}reports/{quote(stamp, safe='')}.html"


# Formatting helpers handed to the templates -----------------------------------------------------------------------


class Formats:
    """Small formatters the templates call (`f.num(x)`, `f.time(t)`, ...)."""

    @staticmethod
    def num(value: Any, digits: int = 3) -> str:
        if isinstance(value, bool) or value is None:
            return "-" if value is None else str(value)
        if isinstance(value, int | float):
            return "-" if isinstance(value, float) and math.isnan(value) else f"{value:.{digits}g}"
        return str(value)

    @staticmethod
    def delta(value: Any) -> str:
        return f"{value:+.3g}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"

    @staticmethod
    def time(text: Any) -> str:
        return str(text).replace("T", " ")[:19] if text else "-"

    @staticmethod
    def who(arn: Any) -> str:
        return str(arn).rsplit("/", 1)[-1] if arn else "-"

    @staticmethod
    def short(digest: Any) -> str:
        return str(digest).removeprefix("sha256:")[:12] if digest else "-"

    @staticmethod
    def url(value: Any) -> str | None:
        """A link taken from a record, only if it is http(s) (a record is data, not markup)."""
        text = str(value or "")
        return text if text.startswith(("https://", "http://")) else None

    @staticmethod
    def version(value: Any) -> str:
        return f"v{value}" if value else "-"

    @staticmethod
    def approval(status: Any) -> str:
        return APPROVAL_NAMES.get(str(status), str(status))

    @staticmethod
    def size(value: Any) -> str:
        if not isinstance(value, int):
            return "-"
        for unit in ("bytes", "KiB", "MiB", "GiB"):
            if value < 1024 or unit == "GiB":
                return f"{value:,} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
            value //= 1024
        return "-"


def render(template: str, site: Site, **context: Any) -> str:
    """A page from model_templates/ui/<template> (autoescaped)."""
    import mlinfra_templates

    return mlinfra_templates.render(f"ui/{template}", site=site, link=site.href, f=Formats, **context)


def _common(site: Site, loaded: Loaded[Any] | None, title: str) -> dict[str, Any]:
    return {"title": title, "refreshed": loaded.refreshed if loaded else None}


# Pages --------------------------------------------------------------------------------------------------------------


def board_page(view: RegistryView, site: Site) -> str:
    """Models x stages: each cell what `mlinfra status` says of the model in the stage."""
    loaded = view.board()
    infos = view.stage_infos()
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for row in loaded.value:
        cells.setdefault(row["model"], {})[row["stage"]] = row
    from mlinfra.registry.driftstatus import describe

    return render(
        "board.html.j2",
        site,
        **_common(site, loaded, "Models and stages"),
        stages=[infos[name] for name in view.stages],
        models=sorted(cells),
        cells=cells,
        drift_text=describe,
        model_path=model_path,
        drift_path=drift_path,
    )


def _metric(row: dict[str, Any], name: str) -> float | None:
    """A version's value of a metric, when it is a number."""
    value = (row.get("metrics") or {}).get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _sort_key(sort: str) -> Any:
    if sort.startswith("metric:"):
        name = sort.removeprefix("metric:")

        def by_metric(row: dict[str, Any]) -> tuple[int, float]:
            value = _metric(row, name)
            return (0, 0.0) if value is None else (1, value)  # versions without the metric sort first (ascending)

        return by_metric
    if sort == "registered":
        return lambda row: str(row.get("registered") or "")
    return lambda row: int(row["version"])


def metric_charts(model: str, rows: list[dict[str, Any]], site: Site) -> list[Chart]:
    """One small chart per metric (at most MAX_METRIC_CHARTS), its value over the versions, each point linked."""
    ordered = sorted(rows, key=lambda r: int(r["version"]))
    names = sorted({name for row in ordered for name in row.get("metrics") or {}})[:MAX_METRIC_CHARTS]
    labels = [f"v{row['version']}" for row in ordered]
    hrefs: list[str | None] = [site.href(version_path(model, row["version"])) for row in ordered]
    charts = []
    for name in names:
        values = [_metric(row, name) for row in ordered]
        charts.append(
            line_chart(f"{name} by version", labels, {name: values}, hrefs=hrefs, zero=False, width=420, height=170)
        )
    return charts


def model_page(view: RegistryView, model: str, site: Site, *, sort: str = "version", order: str = "desc") -> str:
    """A model: its versions with metrics (sortable), a chart per metric, approvals, lineage and history."""
    loaded = view.model(model)
    rows = list(loaded.value["versions"])
    metric_names = sorted({name for row in rows for name in row.get("metrics") or {}})
    if sort not in {"version", "registered", *(f"metric:{m}" for m in metric_names)}:
        sort = "version"
    order = order if order in {"asc", "desc"} else "desc"
    rows.sort(key=_sort_key(sort), reverse=order == "desc")
    infos = view.stage_infos()
    history = loaded.value["history"]
    return render(
        "model.html.j2",
        site,
        **_common(site, loaded, f"{model}"),
        model=model,
        rows=rows,
        metric_names=metric_names,
        sort=sort,
        order=order,
        charts=metric_charts(model, rows, site),
        history=history,
        approvals=[r for r in history if r.get("action") == "approve"],
        targets=[info.name for info in infos.values() if not info.entry and model in info.models],
        drift_stages=[info.name for info in infos.values() if info.drift and model in info.models],
        numbers=sorted((int(r["version"]) for r in rows), reverse=True),
        version_path=version_path,
        drift_path=drift_path,
    )


def version_page(view: RegistryView, model: str, number: int, site: Site) -> str:
    """A version: its record, copies per stage, lineage, files, baseline, the model card and a diff form."""
    loaded = view.version(model, number)
    numbers = sorted(int(r["version"]) for r in view.model(model).value["versions"])
    previous = max((n for n in numbers if n < number), default=None)
    return render(
        "version.html.j2",
        site,
        **_common(site, loaded, f"{model} v{number}"),
        model=model,
        number=number,
        data=loaded.value,
        others=[n for n in numbers if n != number],
        previous=previous,
        model_path=model_path,
        diff_path=diff_path,
    )


def diff_page(view: RegistryView, model: str, first: int, second: int, site: Site) -> str:
    """Two versions side by side: fields, metrics, files, baseline and model card."""
    loaded = view.diff(model, first, second)
    return render(
        "diff.html.j2",
        site,
        **_common(site, loaded, f"{model} v{first} vs v{second}"),
        model=model,
        first=first,
        second=second,
        data=loaded.value,
        model_path=model_path,
        version_path=version_path,
    )


def _run_label(stamp: str) -> str:
    """`20261207-101500Z` -> `12-07 10:15:00`."""
    return f"{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"


def drift_chart(model: str, stage: str, runs: list[DriftRun], threshold: float | None, site: Site) -> Chart:
    """Max PSI and the most drifted features' PSI over the job's runs; each point links to its run's report."""
    latest = runs[-1].report if runs else None
    ranked = [f.name for f in sorted(latest.features, key=lambda f: -(f.psi or 0))] if latest else []
    names = ranked[:MAX_FEATURE_LINES]
    series: dict[str, list[float | None]] = {"max PSI": [run.report.max_psi for run in runs]}
    for name in names:
        series[name] = [next((f.psi for f in run.report.features if f.name == name), None) for run in runs]
    return line_chart(
        f"PSI of {model} in {stage} over the drift job's runs",
        [_run_label(run.stamp) for run in runs],
        series,
        hrefs=[site.href(report_path(model, stage, run.stamp)) for run in runs],
        threshold=threshold,
        emphasis="max PSI",
        height=240,
    )


def drift_page(view: RegistryView, model: str, stage: str, site: Site) -> str:
    """A model's drift in a stage: the latest report's features and the trend over the job's runs."""
    info: StageInfo = view.require_stage(stage)
    loaded = view.drift(model, stage)
    runs = loaded.value
    threshold = info.drift_psi.get(model)
    return render(
        "drift.html.j2",
        site,
        **_common(site, loaded, f"{model} drift in {stage}"),
        model=model,
        stage=stage,
        info=info,
        runs=list(reversed(runs)),
        latest=runs[-1] if runs else None,
        trend=drift_chart(model, stage, runs, threshold, site) if runs else None,
        threshold=threshold,
        report_path=report_path,
        model_path=model_path,
        label=_run_label,
        limit=view.report_limit,
    )


def message_page(
    site: Site,
    title: str,
    lines: list[str],
    *,
    link: str | None = None,
    items: Any = None,
    back: tuple[str, str] | None = None,
) -> str:
    """A result or error page: a heading, its lines, an optional link out, a list (failing gates), a way back."""
    return render(
        "message.html.j2",
        site,
        title=title,
        refreshed=None,
        lines=lines,
        out_link=link,
        items=items or [],
        back=back or ("/", "Back to the board"),
    )


def confirm_page(site: Site, action: Any, command: str, token: str, back: str) -> str:
    """The confirmation of an action: the exact command it is equivalent to, and the button that runs it."""
    return render(
        "confirm.html.j2",
        site,
        title=f"Confirm: {action.kind} {action.model}",
        refreshed=None,
        action=action,
        command=command,
        token=token,
        back=back,
    )
