"""What the web view shows, read through the same library calls as the CLI, and kept until someone refreshes.

Every page's data comes from the functions behind a command: the board is `mlinfra status --all --json`
(registry.status.status), a model's versions and history are `mlinfra versions` and `mlinfra history`, a version is
`mlinfra show`, a diff is `mlinfra diff`, a card is `mlinfra card`. Nothing here reads a record's fields the
commands do not; the drift pages read the reports the scheduled drift job writes beside its checkpoint
(`monitoring/<model>/reports/yyyy/mm/dd/<HHMMSS>Z.json` and `.html`), parsed with the job's own report type.

Each answer is cached with the time it was read: a page served from the cache says when ("refreshed at"), and
`refresh()` (the page's refresh button, and every action) forgets them all. One load runs at a time per page; a
page already cached is served while another loads.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from mlinfra.errors import BadInputError
from mlinfra.stacks.project import Project

T = TypeVar("T")

# The drift pages read at most this many of a model's newest reports in a stage (a daily job: three months).
REPORT_LIMIT = 90
_STAMP = re.compile(r"^(\d{4})(\d{2})(\d{2})-(\d{6})Z$")


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """A cached answer and when it was read from the registry."""

    value: T
    at: datetime

    @property
    def refreshed(self) -> str:
        """When it was read, as the pages print it (UTC, to the second)."""
        return self.at.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class DriftRun:
    """One run of the drift job for a model in a stage: its report and where the job stored it."""

    key: str
    stamp: str  # yyyymmdd-HHMMSSZ: the run's time, and the report's name in the web view
    report: Any  # mlinfra_drift.report.DriftReport


@dataclass
class StageInfo:
    """What the pages need of a stage's stack config besides the registry: its place, delivery and monitoring."""

    name: str
    entry: bool
    delivery: str
    drift: bool
    models: list[str] = field(default_factory=list)
    drift_psi: dict[str, float] = field(default_factory=dict)


def stamp_of(key: str) -> str:
    """`monitoring/m/reports/2026/12/07/101500Z.json` -> `20261207-101500Z`."""
    year, month, day, name = key.rsplit("/", 4)[-4:]
    return f"{year}{month}{day}-{name.removesuffix('.json').removesuffix('.html')}"


def key_of(model: str, stamp: str, suffix: str) -> str:
    """The report key of a stamp (BadInputError for anything not shaped like one: it becomes an S3 key)."""
    from mlinfra_drift.jobspec import REPORTS_DIR
    from mlinfra_infra import layout

    match = _STAMP.match(stamp)
    if match is None:
        raise BadInputError(f"no drift report named {stamp!r}")
    year, month, day, time = match.groups()
    return f"{layout.monitoring_prefix(model)}{REPORTS_DIR}/{year}/{month}/{day}/{time}Z{suffix}"


class RegistryView:
    """The project's registries as the web view sees them: read through the library, cached until refreshed."""

    def __init__(self, project: Project, stages: list[str], *, report_limit: int = REPORT_LIMIT) -> None:
        self.project = project
        self.stages = stages
        self.report_limit = report_limit
        self._cache: dict[tuple[Any, ...], Loaded[Any]] = {}
        self._locks: dict[tuple[Any, ...], threading.Lock] = {}
        self._guard = threading.Lock()
        self._infos: dict[str, StageInfo] | None = None

    # The cache ------------------------------------------------------------------------------------------------------

    def _get(self, key: tuple[Any, ...], load: Callable[[], T]) -> Loaded[T]:
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._cache.get(key)
            if hit is None:
                hit = Loaded(load(), datetime.now(UTC))
                self._cache[key] = hit
            return hit

    def refresh(self) -> None:
        """Forget everything read: the next page reads the registries again."""
        with self._guard:
            self._cache.clear()
            self._infos = None

    # Stack config -------------------------------------------------------------------------------------------------

    def stage_infos(self) -> dict[str, StageInfo]:
        """Every shown stage's place in the promotion order, delivery, monitoring and models (from its stack file)."""
        if self._infos is None:
            from mlinfra.stacks.files import load_stage

            infos = {}
            for name in self.stages:
                config = load_stage(self.project, name).config
                infos[name] = StageInfo(
                    name=name,
                    entry=name == config.entry_stage,
                    delivery=config.delivery_mode,
                    drift=config.monitoring.enabled and config.monitoring.drift,
                    models=sorted(config.models),
                    drift_psi={m: c.alarms.drift_psi for m, c in config.models.items()},
                )
            self._infos = infos
        return self._infos

    def models(self) -> list[str]:
        """Every model declared in a shown stage."""
        return sorted({m for info in self.stage_infos().values() for m in info.models})

    def require_model(self, model: str) -> None:
        """BadInputError unless a shown stage declares `model` (URLs name models; they are not trusted)."""
        if model not in self.models():
            raise BadInputError(f"unknown model {model!r} (declared: {', '.join(self.models()) or 'none'})")

    def require_stage(self, stage: str) -> StageInfo:
        """A shown stage's info, or BadInputError."""
        info = self.stage_infos().get(stage)
        if info is None:
            raise BadInputError(f"unknown stage {stage!r} (shown: {', '.join(self.stages)})")
        return info

    # Pages --------------------------------------------------------------------------------------------------------

    def board(self) -> Loaded[list[dict[str, Any]]]:
        """`mlinfra status --json` of the shown stages: one row per model and stage."""
        from mlinfra.registry import status

        return self._get(("board",), lambda: status.status(self.project, self.stages))

    def model(self, model: str) -> Loaded[dict[str, Any]]:
        """`mlinfra versions MODEL --json` and `mlinfra history MODEL --json`."""
        from mlinfra.registry import status, versions

        self.require_model(model)
        return self._get(
            ("model", model),
            lambda: {
                "versions": versions.list_versions(self.project, model),
                "history": status.history(self.project, model, None),
            },
        )

    def version(self, model: str, number: int) -> Loaded[dict[str, Any]]:
        """`mlinfra show MODEL -v N --json`, and the files inside its artifact (as `mlinfra diff` lists them)."""
        self.require_model(model)
        return self._get(("version", model, number), lambda: self._read_version(model, number))

    def _read_version(self, model: str, number: int) -> dict[str, Any]:
        from mlinfra.aws import aws_errors
        from mlinfra.registry import versions
        from mlinfra.registry.protocol import Context

        shown = versions.show_version(self.project, model, number)
        stage = str(shown["registeredIn"])
        registry = Context.load(self.project, stage).registry(stage)
        with aws_errors(f"listing the files of {model} v{number}"):
            files = versions.artifact_files(registry, model, str(shown["digest"]))
        return {**shown, "files": [{"name": name, **info} for name, info in sorted(files.items())]}

    def card_html(self, model: str, number: int) -> Loaded[str]:
        """`mlinfra card MODEL --version N --format html`: a page of its own."""
        from mlinfra.registry import cards

        self.require_model(model)
        return self._get(
            ("card", model, number), lambda: cards.render(cards.card_data(self.project, model, number), "html")
        )

    def diff(self, model: str, first: int, second: int) -> Loaded[dict[str, Any]]:
        """`mlinfra diff MODEL A B --json`, and the two model cards (card.md) line by line."""
        from mlinfra.registry import versions

        self.require_model(model)

        def load() -> dict[str, Any]:
            out = versions.diff_versions(self.project, model, first, second)
            card_a = self.version(model, first).value.get("card") or ""
            card_b = self.version(model, second).value.get("card") or ""
            out["card"] = list(
                difflib.unified_diff(
                    card_a.splitlines(), card_b.splitlines(), f"v{first}/card.md", f"v{second}/card.md", lineterm=""
                )
            )
            return out

        return self._get(("diff", model, first, second), load)

    def drift(self, model: str, stage: str) -> Loaded[list[DriftRun]]:
        """The drift job's newest reports of `model` in `stage`, oldest first (at most `report_limit`)."""
        self.require_model(model)
        self.require_stage(stage)
        return self._get(("drift", model, stage), lambda: self._read_reports(model, stage))

    def _read_reports(self, model: str, stage: str) -> list[DriftRun]:
        from pydantic import ValidationError

        from mlinfra.aws import aws_errors
        from mlinfra.registry.protocol import Context
        from mlinfra.registry.store import MissingRegistryError
        from mlinfra_drift.jobspec import REPORTS_DIR
        from mlinfra_drift.report import DriftReport
        from mlinfra_infra import layout

        registry = Context.load(self.project, stage).registry(stage)
        prefix = f"{layout.monitoring_prefix(model)}{REPORTS_DIR}/"
        with aws_errors(f"reading {model}'s drift reports in {stage}"):
            try:
                keys = sorted(k for k in registry.keys(prefix) if k.endswith(".json"))[-self.report_limit :]
            except MissingRegistryError:
                return []
            with ThreadPoolExecutor(8) as pool:
                stored = list(pool.map(registry.read, keys))
        runs = []
        for key, found in zip(keys, stored, strict=True):
            if found is None:
                continue
            try:
                report = DriftReport.model_validate(found.data)
            except ValidationError:
                continue  # not a report the job wrote (the prefix is the job's; anything else is skipped)
            runs.append(DriftRun(key=key, stamp=stamp_of(key), report=report))
        return runs

    def drift_report_html(self, model: str, stage: str, stamp: str) -> Loaded[str | None]:
        """The HTML page the drift job stored beside a report (None when absent)."""
        from mlinfra.aws import aws_errors, error_code
        from mlinfra.registry.protocol import Context

        self.require_model(model)
        self.require_stage(stage)
        key = key_of(model, stamp, ".html")

        def load() -> str | None:
            registry = Context.load(self.project, stage).registry(stage)
            with aws_errors(f"reading the drift report {key} in {stage}"):
                try:
                    body = registry.s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read()
                except Exception as exc:
                    if error_code(exc) in {"NoSuchKey", "404"}:
                        return None
                    raise
            return str(body.decode("utf-8", "replace"))

        return self._get(("report", model, stage, stamp), load)
