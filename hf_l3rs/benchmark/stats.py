"""Statistics of paired comparisons over seeds: intervals from a *paired* bootstrap (every
resample draws the same seeds for both optimizers), paired t-test p-values, Holm's
correction across cases, geometric means for the one-row summary."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean of a − b, low, high): the percentile interval of the mean difference when the
    seeds are resampled *jointly* (a[i] stays with b[i]; ``scipy.stats.bootstrap`` with
    ``paired=True``). NaN where a run diverged."""
    from scipy.stats import bootstrap

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"paired_bootstrap needs two equal-length sequences of >= 2 seeds, got {a.shape}, {b.shape}")
    diff = a - b
    if not np.isfinite(diff).all():
        return math.nan, math.nan, math.nan
    if np.all(diff == diff[0]):  # nothing varies: scipy warns and the interval is the point
        return float(diff[0]), float(diff[0]), float(diff[0])
    result = bootstrap(
        (a, b),
        lambda x, y, axis=-1: np.mean(x - y, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return float(diff.mean()), float(interval.low), float(interval.high)


def paired_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided paired t-test p-value (NaN where a run diverged or the differences are all
    equal, where there is nothing to test)."""
    from scipy.stats import ttest_rel

    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = a - b
    if not np.isfinite(diff).all():
        return math.nan
    if np.allclose(diff, diff[0]):
        return 0.0 if diff[0] != 0 else 1.0
    return float(ttest_rel(a, b).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and is not counted)."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m = len(order)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def geomean(values: Sequence[float]) -> float:
    """Geometric mean; infinite when any value is (a diverged case counts against it)."""
    values = list(values)
    if not values:
        return math.nan
    if any(not math.isfinite(v) for v in values):
        return math.inf
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def steps_to_reach(target: float, curve: Sequence[tuple[int, float]]) -> float | None:
    """First step at which a held-out loss curve ``[(step, loss), ...]`` reaches ``target``,
    log-linearly interpolated between its points; None if it never does."""
    prev = None
    for step, loss in curve:
        if math.isfinite(loss) and loss <= target:
            if prev is None or prev[1] == loss:
                return float(step)
            frac = (prev[1] - target) / (prev[1] - loss)
            return math.exp(math.log(prev[0]) + frac * (math.log(step) - math.log(prev[0])))
        prev = (step, loss)
    return None
