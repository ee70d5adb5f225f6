"""The drift statistics, computed from counts so a window of any size is scored in bounded memory.

Per numeric feature a window is reduced to counts on the baseline's grid (mlinfra_drift.baseline): for each grid
point, how many current values lie at or below it and exactly at it. From those:

- Kolmogorov-Smirnov: the largest gap between the two empirical distribution functions, evaluated at every grid
  point from the right and from the left. Guarantee: |ks - scipy.stats.ks_2samp(baseline, current).statistic| <=
  the grid's `tolerance` (0 when the baseline kept every distinct value, at most 1/GRID_RESOLUTION = 0.001
  otherwise), whatever the current data. Proof sketch: between two neighbouring points the baseline's function
  rises by at most `tolerance` and the current one is monotone, so the supremum there exceeds the larger of the
  two endpoint gaps by at most `tolerance`.
- KS p-value: the two-sided asymptotic Kolmogorov distribution at the statistic, `kstwo.sf(ks, round(n*m/(n+m)))`,
  which is what ks_2samp computes with method="asymp" (its default for samples above 10,000 values).
- PSI: sum over the fixed bins of (c - b) * ln(c / b), bin shares floored at PSI_FLOOR so empty bins stay finite.
  The bins are the baseline's distinct deciles, closed on the right, plus the open ends: exact shares on both sides.
- Jensen-Shannon distance: the square root of the JS divergence in base 2 (0 = same, 1 = disjoint) on the same bins,
  as scipy.spatial.distance.jensenshannon(b, c, base=2).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

PSI_FLOOR = 1e-4


def psi(expected: NDArray[np.float64], actual: NDArray[np.float64]) -> float:
    """Population stability index of two share vectors over the same bins."""
    b = np.maximum(np.asarray(expected, dtype=np.float64), PSI_FLOOR)
    c = np.maximum(np.asarray(actual, dtype=np.float64), PSI_FLOOR)
    return float(np.sum((c - b) * np.log(c / b)))


def js_distance(expected: NDArray[np.float64], actual: NDArray[np.float64]) -> float:
    """Jensen-Shannon distance (base 2) of two share vectors over the same bins."""
    p = np.asarray(expected, dtype=np.float64)
    q = np.asarray(actual, dtype=np.float64)
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2

    def kl(a: NDArray[np.float64]) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    divergence = max((kl(p) + kl(q)) / 2, 0.0)
    return math.sqrt(divergence)


def ks_statistic(
    *,
    base_le: NDArray[np.int64],
    base_eq: NDArray[np.int64],
    base_n: int,
    cur_le: NDArray[np.int64],
    cur_eq: NDArray[np.int64],
    cur_n: int,
) -> float:
    """The largest gap between the two distribution functions at the grid points, from the right and the left."""
    if not base_n or not cur_n:
        return math.nan
    right = np.abs(base_le / base_n - cur_le / cur_n)
    left = np.abs((base_le - base_eq) / base_n - (cur_le - cur_eq) / cur_n)
    return float(max(right.max(initial=0.0), left.max(initial=0.0)))


def load_scipy() -> None:
    """Import scipy.stats ahead of `ks_pvalue` (about half a second), e.g. in a thread while workers score."""
    import scipy.stats  # noqa: F401


def ks_pvalue(statistic: float, base_n: int, cur_n: int) -> float:
    """Two-sided asymptotic p-value, as scipy.stats.ks_2samp(method="asymp") computes it."""
    from scipy import stats

    if not base_n or not cur_n or math.isnan(statistic):
        return math.nan
    m, n = sorted([float(base_n), float(cur_n)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(stats.kstwo.sf(statistic, np.round(en)), 0.0, 1.0))
