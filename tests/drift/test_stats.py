"""Drift statistics against independent computations: scipy's ks_2samp and jensenshannon, PSI by hand.

Tolerances (also stated in mlinfra_drift.stats): KS within the baseline grid's `tolerance` of ks_2samp (0 when the
baseline kept every distinct value, at most 0.001 otherwise); the KS p-value is kstwo.sf at our statistic, equal to
ks_2samp(method="asymp") to 1e-9 when the statistic is exact; PSI and JS on the fixed bins are exact counts, so
they agree with a direct computation to 1e-9.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlinfra_drift.baseline import GRID_EXACT_LIMIT, GRID_RESOLUTION, SCHEMA_V1, Baseline
from mlinfra_drift.report import Thresholds
from mlinfra_drift.stats import PSI_FLOOR
from tests.drift.helpers import baseline_of, report_of

RNG = np.random.default_rng(20261127)


def direct_shares(base: np.ndarray, cur: np.ndarray, base_missing: int, cur_missing: int) -> tuple[Any, Any]:
    """Shares per bin, computed without the grid: distinct deciles (inverted CDF), bins closed on the right."""
    ordered = np.sort(base)
    n = ordered.size
    deciles = np.unique(ordered[np.ceil(np.arange(1, 10) / 10 * n).astype(int) - 1])
    b = np.bincount(np.searchsorted(deciles, base, side="left"), minlength=deciles.size + 1)
    c = np.bincount(np.searchsorted(deciles, cur, side="left"), minlength=deciles.size + 1)
    b_rows, c_rows = base.size + base_missing, cur.size + cur_missing
    return np.append(b / b_rows, base_missing / b_rows), np.append(c / c_rows, cur_missing / c_rows)


def direct_psi(b: np.ndarray, c: np.ndarray) -> float:
    b, c = np.maximum(b, PSI_FLOOR), np.maximum(c, PSI_FLOOR)
    return float(np.sum((c - b) * np.log(c / b)))


CASES = {
    "normal, unshifted": (RNG.normal(0, 1, 30_000), RNG.normal(0, 1, 8_000)),
    "normal, shifted": (RNG.normal(0, 1, 30_000), RNG.normal(0.5, 1, 8_000)),
    "normal, wider": (RNG.normal(0, 1, 30_000), RNG.normal(0, 2, 8_000)),
    "lognormal, unshifted": (RNG.lognormal(0, 1, 25_000), RNG.lognormal(0, 1, 5_000)),
    "lognormal, shifted": (RNG.lognormal(0, 1, 25_000), RNG.lognormal(0.3, 1, 5_000)),
    "integer": (RNG.poisson(4, 20_000).astype(float), RNG.poisson(5, 6_000).astype(float)),
    "small samples": (RNG.normal(0, 1, 300), RNG.normal(0.2, 1, 200)),
    "current in one empty bin": (RNG.normal(0, 1, 10_000), np.full(500, 0.123456)),
    "current beyond the range": (RNG.uniform(0, 1, 10_000), RNG.uniform(0.5, 1.5, 4_000)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_ks_psi_js_match_independent_computations(case: str) -> None:
    base, cur = CASES[case]
    baseline = baseline_of({"x": base.tolist()})
    grid = baseline.columns["x"].grid
    assert grid is not None
    scored = report_of(baseline, [[str(v)] for v in cur]).features[0]

    expected = stats.ks_2samp(base, cur)
    assert scored.ks is not None
    assert abs(scored.ks - expected.statistic) <= grid.tolerance + 1e-12
    assert grid.tolerance <= 1 / GRID_RESOLUTION
    if len(np.unique(base)) <= GRID_EXACT_LIMIT:
        assert grid.tolerance == 0
        assert scored.ks == pytest.approx(expected.statistic, abs=1e-12)
        asymptotic = stats.ks_2samp(base, cur, method="asymp").pvalue
        assert scored.ks_pvalue == pytest.approx(asymptotic, rel=1e-9, abs=1e-300)
    else:
        assert grid.tolerance > 0
    m, n = sorted([base.size, cur.size], reverse=True)
    assert scored.ks_pvalue == pytest.approx(stats.kstwo.sf(scored.ks, round(m * n / (m + n))), rel=1e-9, abs=1e-300)

    b, c = direct_shares(base, cur, 0, 0)
    assert scored.psi == pytest.approx(direct_psi(b, c), rel=1e-9, abs=1e-12)
    assert scored.js == pytest.approx(float(jensenshannon(b, c, base=2)), rel=1e-9, abs=1e-9)
    assert [bin_.baseline for bin_ in scored.bins] == pytest.approx(list(b))
    assert [bin_.current for bin_ in scored.bins] == pytest.approx(list(c))
    assert scored.out_of_range_rate == pytest.approx(np.mean((cur < base.min()) | (cur > base.max())))


def test_drift_verdicts_follow_the_shift() -> None:
    for case, drifted in [("normal, unshifted", False), ("normal, shifted", True), ("lognormal, unshifted", False)]:
        base, cur = CASES[case]
        report = report_of(baseline_of({"x": base.tolist()}), [[str(v)] for v in cur])
        assert report.features[0].drifted is drifted, case
        assert (report.max_psi or 0) > 0.2 if drifted else (report.max_psi or 1) < 0.05


def test_constant_feature() -> None:
    baseline = baseline_of({"x": [3.0] * 1000})
    same = report_of(baseline, [["3"]] * 200).features[0]
    assert (same.psi, same.ks, same.js, same.out_of_range_rate) == (0.0, 0.0, 0.0, 0.0)
    assert same.drifted is False
    moved = report_of(baseline, [["3"]] * 100 + [["4"]] * 100).features[0]
    assert moved.ks == pytest.approx(stats.ks_2samp([3.0] * 1000, [3.0] * 100 + [4.0] * 100).statistic)
    assert moved.out_of_range_rate == 0.5
    assert moved.drifted is True


def test_all_missing_window_drifts_through_the_missing_bin() -> None:
    base = RNG.normal(0, 1, 5_000)
    baseline = baseline_of({"x": base.tolist(), "y": base.tolist()})
    scored = {f.name: f for f in report_of(baseline, [["", "1.0"], ["NA", "0.5"], ["null", "-1"]] * 50).features}
    x = scored["x"]
    assert x.missing_rate == 1.0
    assert (x.ks, x.ks_pvalue, x.out_of_range_rate) == (None, None, None)  # no values to compare
    b, c = direct_shares(base, np.empty(0), 0, 150)
    assert x.psi == pytest.approx(direct_psi(b, c))
    assert x.drifted is True
    assert scored["y"].missing_rate == 0.0


def test_missing_values_in_the_baseline_count_in_their_own_bin() -> None:
    base = [*RNG.normal(0, 1, 900).tolist(), *([None] * 100)]
    baseline = baseline_of({"x": base})
    assert baseline.columns["x"].missing_rate == 0.1
    cur = RNG.normal(0, 1, 400)
    scored = report_of(baseline, [[str(v)] for v in cur] + [[""]] * 100).features[0]
    values = np.asarray([v for v in base if v is not None])
    b, c = direct_shares(values, cur, 100, 100)
    assert scored.psi == pytest.approx(direct_psi(b, c))
    assert scored.missing_rate == 0.2
    assert scored.ks == pytest.approx(stats.ks_2samp(values, cur).statistic, abs=1e-12)


def test_new_category() -> None:
    base = ["basic"] * 600 + ["pro"] * 300 + ["team"] * 100
    baseline = baseline_of({"plan": base})
    same = report_of(baseline, [["basic"]] * 60 + [["pro"]] * 30 + [["team"]] * 10).features[0]
    assert same.psi == pytest.approx(0.0, abs=1e-12)
    assert (same.ks, same.ks_pvalue) == (None, None)
    assert same.out_of_range_rate == 0.0
    moved = report_of(baseline, [["basic"]] * 50 + [["enterprise"]] * 50).features[0]
    assert moved.out_of_range_rate == 0.5  # unseen categories
    b = np.array([0.6, 0.3, 0.1, 0.0, 0.0])  # basic, pro, team, (other), (missing)
    c = np.array([0.5, 0.0, 0.0, 0.5, 0.0])
    assert moved.psi == pytest.approx(direct_psi(b, c))
    assert moved.js == pytest.approx(float(jensenshannon(b, c, base=2)))
    assert moved.drifted is True
    assert [item.label for item in moved.bins] == ["basic", "pro", "team", "(other)", "(missing)"]


def test_thresholds_choose_the_verdict() -> None:
    base, cur = CASES["normal, shifted"]
    baseline = baseline_of({"x": base.tolist()})
    rows = [[str(v)] for v in cur]
    psi = report_of(baseline, rows).features[0].psi
    assert psi is not None
    assert report_of(baseline, rows, Thresholds(psi=psi * 1.01)).features[0].drifted is False
    assert report_of(baseline, rows, Thresholds(psi=psi * 0.99)).features[0].drifted is True
    assert report_of(baseline, rows, Thresholds(psi=10, ks_pvalue=0.01)).features[0].drifted is True
    assert report_of(baseline, rows, Thresholds(psi=10, js=0.99)).features[0].drifted is False


def test_report_sorted_by_drift_and_json_shape() -> None:
    base = RNG.normal(0, 1, 4_000)
    baseline = baseline_of({"stable": base.tolist(), "moved": base.tolist(), "plan": ["a", "b"] * 2_000})
    assert baseline.features == ["stable", "moved", "plan"]
    rows = [[str(a), str(b + 1.0), "a"] for a, b in zip(RNG.normal(0, 1, 500), RNG.normal(0, 1, 500), strict=True)]
    report = report_of(baseline, rows)
    data = report.to_json_dict()
    assert list(data) == [
        "model", "stage", "version", "window", "rows", "malformed", "maxPsi", "features", "predictions",
    ]  # fmt: skip
    assert data["predictions"]["status"] == "no_baseline"  # rows fed directly: no prediction baseline here
    assert data["window"] == {"from": "2026-11-26T10:00:00Z", "to": "2026-11-26T12:00:00Z"}
    assert data["rows"] == 500
    assert data["malformed"] == {}
    names = [f["name"] for f in data["features"]]
    assert names[-1] == "stable"
    psis = [f["psi"] for f in data["features"]]
    assert psis == sorted(psis, reverse=True)
    assert data["maxPsi"] == psis[0]
    for feature in data["features"]:
        assert list(feature) == ["name", "psi", "ks", "ksPvalue", "js", "missingRate", "outOfRangeRate", "drifted"]


def test_zero_rows_scores_nothing() -> None:
    report = report_of(baseline_of({"x": [1.0, 2.0, 3.0]}), [])
    assert report.rows == 0
    assert report.max_psi is None
    assert report.features[0].psi is None
    assert report.features[0].drifted is False


def test_schema_1_baselines_stay_readable() -> None:
    base = RNG.normal(0, 1, 10_000)
    edges = np.quantile(base, np.linspace(0, 1, 11)).tolist()
    old = {
        "schema": SCHEMA_V1,
        "source": "old.csv",
        "format": "csv",
        "rows": 10_000,
        "truncated": False,
        "columns": {
            "x": {"type": "numeric", "count": 10_000, "missing": 0, "missing_rate": 0.0, "mean": 0.0, "std": 1.0,
                  "min": edges[0], "max": edges[-1], "quantiles": {}, "bin_edges": edges},
            "plan": {"type": "categorical", "count": 10_000, "missing": 0, "missing_rate": 0.0, "distinct": 2,
                     "top": [{"value": "a", "count": 7_000, "frequency": 0.7},
                             {"value": "b", "count": 3_000, "frequency": 0.3}], "other_frequency": 0.0},
        },
    }  # fmt: skip
    baseline = Baseline.model_validate(old)
    assert baseline.features == ["x", "plan"]
    cur = RNG.normal(0.5, 1, 2_000)
    report = report_of(baseline, [[str(v), "a"] for v in cur])
    x = next(f for f in report.features if f.name == "x")
    assert x.ks is not None
    assert abs(x.ks - stats.ks_2samp(base, cur).statistic) <= 0.1  # schema 1 knows deciles only
    assert x.psi is not None
    assert x.psi > 0.2
    assert x.drifted is True
    plan = next(f for f in report.features if f.name == "plan")
    assert plan.psi == pytest.approx(direct_psi(np.array([0.7, 0.3, 0, 0]), np.array([1.0, 0, 0, 0])))


def test_grid_tolerance_is_small_for_continuous_data() -> None:
    baseline = baseline_of({"x": RNG.normal(0, 1, 100_000).tolist()})
    grid = baseline.columns["x"].grid
    assert grid is not None
    assert len(grid.x) == GRID_RESOLUTION + 1
    assert 0 < grid.tolerance <= 1 / GRID_RESOLUTION
    assert grid.le[-1] == 100_000
    assert math.isclose(grid.x[0], baseline.columns["x"].min or 0)


def test_read_baseline_keeps_the_header_order_through_a_sorted_store(tmp_path: Any) -> None:
    import json

    from mlinfra.models.inputs import read_baseline

    path = tmp_path / "sample.csv"
    path.write_text("zeta,alpha,mid\n" + "".join(f"{i},{i % 3},x{i % 2}\n" for i in range(50)))
    summary = read_baseline(path)
    assert summary["schema"] == "mlinfra.baseline/2"
    stored = json.dumps(summary, sort_keys=True)  # how the registry writes records
    baseline = Baseline.from_json(stored)
    assert list(json.loads(stored)["columns"]) == ["alpha", "mid", "zeta"]
    assert baseline.features == ["zeta", "alpha", "mid"]
    assert baseline.ordered
    zeta = baseline.columns["zeta"]
    assert zeta.grid is not None and zeta.grid.le[-1] == 50 and zeta.grid.tolerance == 0
    assert baseline.columns["mid"].categories == {"x0": 25, "x1": 25}
    assert baseline.columns["mid"].categories_complete is True
