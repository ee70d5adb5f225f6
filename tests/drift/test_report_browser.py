"""The HTML drift report in real headless Chromium (Debian's package, `make chromium`): it renders one chart per
feature, logs no console error, and loads nothing from the network, even with hostile names in the data."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.drift.helpers import baseline_of, report_of

# What headless Chromium needs on this machine's closed network (no background connections to Google's hosts).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = '<img src="http://127.0.0.1:9/x.png" onerror="window.__pwned=1">'


@pytest.fixture
def chromium() -> Any:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "headless Chromium is missing: `make chromium` installs Debian's package"
    with sync_playwright() as playwright:
        # Playwright gives each launch a new, empty profile (user data dir) of its own.
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def test_report_renders_offline_without_errors(chromium: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(0, 1, 2000)
    baseline = baseline_of({"tenure": base.tolist(), "charges": base.tolist(), HOSTILE: ["a", "b"] * 1000})
    pairs = zip(base[:500], base[500:1000], strict=True)
    rows = [[str(v + 1), str(w), "c" if i % 2 else "a"] for i, (v, w) in enumerate(pairs)]
    report = report_of(baseline, rows)
    report.malformed = {"invalid_json": 2, HOSTILE: 1}
    report.model = HOSTILE
    page_file = tmp_path / "drift.html"
    page_file.write_text(report.html(), encoding="utf-8")

    page = chromium.new_page()
    console: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(page_file.as_uri(), wait_until="load")
    page.wait_for_timeout(300)

    assert requests == [page_file.as_uri()]  # the page itself, nothing else
    assert [line for line in console if line.startswith(("error", "pageerror"))] == []
    assert page.evaluate("window.__pwned") is None  # names are escaped, never markup
    assert HOSTILE in page.inner_text("h1")
    assert page.locator("section.feature svg").count() == 3
    assert page.locator("section.feature svg rect").count() > 0
    heights = page.eval_on_selector_all("section.feature svg rect", "rs => rs.map(r => r.getBBox().height)")
    assert max(heights) > 50  # bars are drawn, not collapsed
    text = page.inner_text("body")
    assert "tenure" in text and "1,500" not in text and "500 rows scored" in text.replace("\n", " ")
    assert "invalid_json 2" in text
    page.close()


def test_empty_window_page(chromium: Any, tmp_path: Path) -> None:
    report = report_of(baseline_of({"x": [1.0, 2.0, 3.0]}), [])
    page_file = tmp_path / "empty.html"
    page_file.write_text(report.html(), encoding="utf-8")
    page = chromium.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(page_file.as_uri())
    assert "No rows in this window: nothing was scored." in page.inner_text("body")
    assert errors == []
    page.close()
