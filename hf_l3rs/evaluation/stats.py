"""Statistics of a comparison over tasks: paired differences and steps-to-target speedups
with their uncertainty (bootstrap over tasks, paired: every optimizer is resampled on the
same tasks)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import torch

#: metric -> whether a higher value is better
HIGHER_IS_BETTER = {"accuracy": True, "loss": False}


def paired(values: Sequence[float], reference: Sequence[float], higher_is_better: bool) -> dict[str, float | None]:
    """Per-task differences ``values − reference`` on the same tasks: mean, standard error,
    the tasks on which ``values`` is strictly better, and whether the mean lies more than two
    standard errors from zero (``significant``: +1 better, −1 worse, 0 neither). Mean and
    standard error are None where a run diverged (an infinite difference) or n < 2."""
    if len(values) != len(reference):
        raise ValueError(f"paired: {len(values)} values against {len(reference)} reference values")
    diffs = [a - b for a, b in zip(values, reference)]
    sign = 1.0 if higher_is_better else -1.0
    wins = sum(sign * d > 0 for d in diffs if not math.isnan(d))
    out: dict[str, float | None] = {"n": len(diffs), "wins": wins, "mean": None, "se": None, "significant": 0}
    if len(diffs) < 2 or not all(math.isfinite(d) for d in diffs):
        return out
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    out.update(mean=mean, se=se)
    if abs(mean) > 2 * se:
        out["significant"] = 1 if sign * mean > 0 else -1
    return out


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean of the finite values (NaN if there are none)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    se = statistics.stdev(finite) / math.sqrt(len(finite)) if len(finite) > 1 else 0.0
    return statistics.fmean(finite), se


def steps_to_reach(target: float, horizons: Sequence[int], curve: Sequence[float], higher_is_better: bool = True):
    """Steps at which ``curve`` (its value at each horizon) first reaches ``target``, log-linear
    between horizons; ``None`` if it never does within the horizons."""
    prev_h, prev_v = None, None
    for h, v in zip(horizons, curve):
        if (v >= target) if higher_is_better else (v <= target):
            if prev_h is None or v == prev_v:
                return float(h)
            frac = (target - prev_v) / (v - prev_v)
            return math.exp(math.log(prev_h) + frac * (math.log(h) - math.log(prev_h)))
        prev_h, prev_v = h, v
    return None


def speedup_at(
    horizon: int,
    horizons: Sequence[int],
    curve: Sequence[float],
    target: float,
    higher_is_better: bool,
) -> tuple[float | None, bool]:
    """(horizon / steps the curve needs to reach ``target``, whether that is only a lower
    bound because the curve reaches it at its first horizon already). None: not reached."""
    steps = steps_to_reach(target, horizons, curve, higher_is_better)
    if steps is None:
        return None, False
    return horizon / steps, steps == horizons[0]


def bootstrap_speedup(
    horizon: int,
    horizons: Sequence[int],
    runs: dict[int, Sequence[float]],
    reference: Sequence[float],
    higher_is_better: bool,
    samples: int = 2000,
    seed: int = 0,
) -> dict[str, float | bool | None]:
    """Steps-to-target speedup at ``horizon`` of an optimizer whose per-task values at each
    horizon are ``runs[h]``, against ``reference`` (per-task values of the baseline at
    ``horizon``, same tasks), with a 68 % bootstrap interval over tasks (``low``, ``high``;
    a resample that never reaches the target counts as speedup 0)."""
    n = len(reference)
    curve = [mean_with_divergence(runs[h]) for h in horizons]
    point, at_least = speedup_at(horizon, horizons, curve, mean_with_divergence(reference), higher_is_better)
    draws = []
    g = torch.Generator().manual_seed(seed)
    table = torch.tensor([list(runs[h]) for h in horizons], dtype=torch.float64)
    ref = torch.tensor(list(reference), dtype=torch.float64)
    for _ in range(samples):
        idx = torch.randint(0, n, (n,), generator=g)
        c = table[:, idx].mean(dim=1).tolist()
        s, _ = speedup_at(horizon, horizons, c, float(ref[idx].mean()), higher_is_better)
        draws.append(0.0 if s is None else s)
    draws.sort()
    return {
        "speedup": point,
        "at_least": at_least,
        "low": draws[int(0.16 * (samples - 1))],
        "high": draws[int(0.84 * (samples - 1))],
    }


def mean_with_divergence(values: Sequence[float]) -> float:
    """Mean over tasks that lets a diverged run (infinite loss) count against its optimizer."""
    return sum(values) / len(values) if len(values) else math.nan
