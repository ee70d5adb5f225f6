"""`mlinfra ui` in real headless Chromium (Debian's package, `make chromium`), after a quickstart on the emulator.

The registry is built the way the quickstart builds it (register, promote to dev and record its apply, promote to
staging through a pull request that is merged and applied, a second version promoted to dev and proposed for
staging) and the scheduled drift job runs three times on staging's captured traffic, writing its reports. The
browser then reads the board and clicks through model, version, diff and drift, and approves from the page. Every
page is screenshot at 1280 and 390 px wide into build/ui-screenshots/ for review.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from click.testing import Result

from mlinfra_drift.jobspec import JobSpec, ModelJob
from mlinfra_infra import layout, naming
from tests.cli.test_drift_job import put_capture, run_job, sample_rows
from tests.cli.test_promotion import IMAGE, bucket, make_model, ok
from tests.cli.uiserver import serving
from tests.drift.test_report_browser import CHROMIUM_FLAGS

Run = Callable[..., Result]
pytestmark = pytest.mark.emulator
REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "build" / "ui-screenshots"
WIDTHS = (1280, 390)
REASON = "reviewed the card and the drift report"
# Every form control must have a label (or an ARIA name), every label[for] must name a control, ids must be unique.
LABEL_CHECK = """() => {
  const named = e => (e.labels && e.labels.length) || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby');
  const controls = Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'));
  const unlabelled = controls.filter(e => !named(e)).map(e => e.name || e.outerHTML);
  const dangling = Array.from(document.querySelectorAll('label[for]'))
    .filter(l => !document.getElementById(l.htmlFor)).map(l => l.htmlFor);
  const ids = Array.from(document.querySelectorAll('[id]')).map(e => e.id);
  const duplicate = ids.filter((id, i) => ids.indexOf(id) !== i);
  const nameless = Array.from(document.querySelectorAll('button')).filter(b => !b.innerText.trim()).length;
  return {unlabelled, dangling, duplicate, nameless};
}"""


def register(run: Run, root: Path, weights: str, metrics: dict[str, float], card: str, *extra: str) -> Any:
    model = make_model(root / f"src-{weights}", weights)
    (root / f"metrics-{weights}.json").write_text(json.dumps(metrics))
    (root / f"card-{weights}.md").write_text(card)
    args = ["register", str(model), "--model", "churn", "--image", IMAGE, "--git-sha", "0a1b2c3d4e5f60718293"]
    args += ["--metrics", str(root / f"metrics-{weights}.json"), "--card", str(root / f"card-{weights}.md")]
    return ok(run(*args, *extra, "--json"))


def merge(root: Path, branch: str) -> None:
    """Merge a promotion's branch on local mode's scratch remote, as a reviewer merging the pull request would."""
    workspace = root / ".mlinfra" / "local" / "workspace"
    for args in (["pull", "--quiet", "--no-edit", "origin", branch], ["push", "--quiet", "origin", "HEAD:main"]):
        subprocess.run(["git", *args], cwd=workspace, check=True, capture_output=True)


def drift_runs(rng: np.random.Generator) -> None:
    """Three runs of the drift job on staging's capture: unshifted, a little shifted, shifted past the threshold."""
    endpoint = naming.endpoint("mlinfra", "staging", "churn")
    job = ModelJob(
        model="churn",
        version=1,
        capture_prefix=layout.capture_endpoint_prefix("churn", endpoint, naming.VARIANT_NAME),
        baseline_key=f"{layout.version_prefix('churn', 1)}baseline.json",
        monitoring_prefix=layout.monitoring_prefix("churn"),
        drift_psi=0.2,
    )
    spec = JobSpec(stage="staging", bucket=bucket("staging"), period_seconds=3600, settle_seconds=0, models=[job])
    for shift in (0.0, 0.5, 1.5):
        put_capture(sample_rows(rng, 500, shift=shift), when=datetime.now(UTC), per_request=5)
        run_job(spec.model_dump(mode="json", by_alias=True))


@pytest.fixture
def quickstart(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> Path:
    """churn v1 deployed in dev and staging (through a merged pull request), v2 in dev and proposed for staging."""
    rng = np.random.default_rng(11)
    ok(run("local", "bootstrap", "--all", "--json"))
    sample = tmp_path / "baseline.csv"
    sample.write_text("tenure,charges,plan\n" + "\n".join(",".join(r) for r in sample_rows(rng, 3000)) + "\n")
    card = "# churn\n\n## Intended use\n\nScores customers for the retention team.\n"
    register(run, tmp_path, "weights-1", {"auc": 0.81, "f1": 0.62}, card, "--baseline", str(sample))
    ok(run("promote", "churn", "--to", "dev", "--reason", "quickstart"))
    ok(run("record-deployment", "--stack", "dev"))
    ok(run("promote", "churn", "--to", "staging", "--reason", "quickstart"))
    merge(project_dir, "mlinfra/promote-staging-churn-v1")
    ok(run("record-deployment", "--stack", "staging"))
    card2 = card + "\n## Caveats and recommendations\n\nRetrained on Q4: check <b>new</b> plans.\n"
    register(run, tmp_path, "weights-2", {"auc": 0.84, "f1": 0.6}, card2, "--baseline", str(sample))
    ok(run("promote", "churn", "--to", "dev", "--version", "2", "--reason", "retrained"))
    ok(run("promote", "churn", "--to", "staging", "--version", "2", "--reason", "retrained"))
    drift_runs(rng)
    return project_dir


@pytest.fixture
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "headless Chromium is missing: `make chromium` installs Debian's package"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


class Watched:
    """A page whose console errors and requests are recorded."""

    def __init__(self, browser: Any, base: str) -> None:
        self.page = browser.new_page(viewport={"width": WIDTHS[0], "height": 900})
        self.base = base
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("response", lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    def shoot(self, name: str) -> None:
        """Screenshots of the current page at each width (full page), for review."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        for width in WIDTHS:
            self.page.set_viewport_size({"width": width, "height": 900})
            self.page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        self.page.set_viewport_size({"width": WIDTHS[0], "height": 900})

    def labels(self) -> None:
        assert self.page.evaluate(LABEL_CHECK) == {"unlabelled": [], "dangling": [], "duplicate": [], "nameless": 0}

    def stayed_local(self) -> None:
        assert self.requests and all(u.startswith(self.base + "/") for u in self.requests), self.requests
        assert self.errors == []


def v(value: Any) -> str:
    return f"v{value}" if value else "-"


def test_the_quickstart_in_the_browser(quickstart: Path, run: Run, chromium: Any) -> None:
    """One registry (its setup is most of the time): click through it, then approve from the page."""
    click_through(quickstart, run, chromium)
    approve_from_the_page(quickstart, run, chromium)


def click_through(root: Path, run: Run, chromium: Any) -> None:
    """The board agrees with `status --json`; board -> model -> version -> diff -> drift -> the job's report."""
    status = ok(run("status", "--all", "--json"))
    with serving(root) as (base, _view):
        w = Watched(chromium, base)
        page = w.page
        page.goto(base + "/")
        assert "refreshed at" in page.inner_text("header")
        rows = [row for row in status if row["model"] == "churn"]
        assert {row["stage"] for row in rows} == {"sandbox", "dev", "staging", "prod"}
        for row in rows:
            cell = page.locator(f'td[data-model="churn"][data-stage="{row["stage"]}"]')
            shown = [cell.locator(f".{k}").inner_text() for k in ("pinned", "pointer", "live")]
            assert shown == [v(row["pinned"]), v(row["pointer"]), v(row["live"])], row["stage"]
            assert cell.locator(".endpoint").inner_text() == (row["endpoint"] or "none")
            assert cell.locator(".notes li").all_inner_texts() == row["notes"], row["stage"]
            assert ("attention" in (cell.get_attribute("class") or "")) == bool(row["notes"])
            deployed = cell.locator(".deployed").inner_text()
            assert deployed.startswith(f"v{row['deployed']['version']} since") if row["deployed"] else deployed == "-"
        pending = page.locator('td[data-model="churn"][data-stage="staging"] .pending').inner_text()
        assert pending == "v2 promote in branch mlinfra/promote-staging-churn-v2"
        w.shoot("board")

        page.get_by_role("link", name="churn", exact=True).first.click()
        assert page.url == f"{base}/models/churn/"
        assert page.inner_text("h1") == "churn"
        versions = page.locator("table.versions tbody th a").all_inner_texts()
        assert versions == ["v2", "v1"]
        assert page.locator("svg.chart").count() == 2  # auc and f1
        assert page.locator("svg.chart a circle").count() == 4  # two versions each, every point a link
        page.get_by_role("link", name="auc", exact=True).click()  # sort by auc, descending: v2 (0.84) first
        assert page.locator("table.versions tbody th a").all_inner_texts() == ["v2", "v1"]
        page.get_by_role("link", name="auc", exact=True).click()
        assert page.locator("table.versions tbody th a").all_inner_texts() == ["v1", "v2"]
        history = page.locator("ol.timeline").inner_text()
        assert "register" in history and "deploy" in history and "promote" in history
        w.labels()
        w.shoot("model")

        page.locator("table.versions tbody th a", has_text="v1").click()
        assert page.url == f"{base}/models/churn/v/1/"
        assert page.inner_text("h1") == "churn v1"
        body = page.inner_text("main")
        assert "model.bin" in body and "code/inference.py" in body and "3000 rows" in body
        card = page.frame_locator("iframe.card")
        assert "Scores customers for the retention team." in card.locator("body").inner_text()
        w.labels()
        w.shoot("version")

        page.select_option("#compare-with", "2")
        page.get_by_role("button", name="Show the diff").click()
        assert page.url == f"{base}/models/churn/diff/1/2/"  # older first
        diff = page.inner_text("main")
        assert "model.bin" in diff and "changed" in diff and "+0.03" in diff
        added = page.locator("pre.carddiff .add").all_inner_texts()
        assert any("<b>new</b>" in line for line in added)  # card text, escaped, never markup
        assert page.locator("pre.carddiff b").count() == 0
        w.shoot("diff")

        page.goto(base + "/")
        page.locator('td[data-stage="staging"] .drift a').click()
        assert page.url == f"{base}/models/churn/drift/staging/"
        assert page.locator("table tbody tr").filter(has=page.locator("th a")).count() == 3  # one row per run
        chart = page.locator("svg.chart")
        assert chart.count() == 1
        assert chart.locator("path.emphasis").count() == 1
        assert chart.locator("a").count() == 4 * 3  # max PSI and three features: a linked point per run
        assert "tenure" in page.inner_text("p.lede").split("drifted:")[1]
        w.shoot("drift")
        chart.locator("a").last.click()
        assert "/reports/" in page.url and page.url.endswith(".html")
        assert "churn" in page.inner_text("h1")
        w.shoot("drift-report")
        w.stayed_local()


def audit(stage: str, action: str) -> list[dict[str, Any]]:
    s3 = boto3.client("s3", region_name="eu-west-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket(stage), Prefix="audit/churn/").get("Contents", [])]
    records = [json.loads(s3.get_object(Bucket=bucket(stage), Key=k)["Body"].read()) for k in keys]
    return sorted((r for r in records if r["action"] == action), key=lambda r: r["time"])


def approve_from_the_page(root: Path, run: Run, chromium: Any) -> None:
    """Approving from the page (after its confirmation) writes the audit record `mlinfra approve` writes."""
    with serving(root) as (base, _view):
        w = Watched(chromium, base)
        page = w.page
        page.goto(base + "/models/churn/")
        page.select_option("#approve-version", "1")
        page.select_option("#approve-stage", "prod")
        page.fill("#approve-reason", REASON)
        page.get_by_role("button", name="Review approval").click()
        command = page.inner_text("pre.command")
        assert command == f"mlinfra --local approve churn --version 1 --stack prod --reason '{REASON}'"
        assert audit("prod", "approve") == []  # nothing runs before the confirmation
        w.labels()
        w.shoot("confirm")
        page.get_by_role("button", name="Run it").click()
        assert "v1 approved for prod (package in staging)" in page.inner_text("main")
        w.shoot("done")
        page.goto(base + "/models/churn/")
        assert "v1 approved for prod" in page.inner_text("#approvals + ul")
        assert "staging: approved" in page.locator("table.versions tbody tr", has_text="v1").inner_text()
        w.stayed_local()

    ok(run("approve", "churn", "--version", "2", "--stack", "prod", "--reason", REASON))
    from_page, from_cli = audit("prod", "approve")
    assert set(from_page) == set(from_cli)
    varying = {"id", "time", "version", "digest"}
    assert {k: v for k, v in from_page.items() if k not in varying} == {
        k: v for k, v in from_cli.items() if k not in varying
    }
    assert (from_page["version"], from_cli["version"]) == (1, 2)
