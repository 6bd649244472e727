"""The meta-training curve (paper Appendix B): fitness and accuracy against generation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def plot_meta_curve(history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(h["generation"], float(h[key])) for h in history if key in h and _finite(h[key])]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    g, population = series("fitness_mean")
    axes[0].plot(g, population, color="0.75", lw=1, label="population mean (train tasks)")
    g, val = series("val_fitness")
    axes[0].plot(g, val, "o-", color="C0", ms=3, label="θ on validation tasks")
    limits = fitness_limits(population, val)
    if limits is not None:
        axes[0].set_ylim(*limits)
        clipped = sum(v < limits[0] for v in population)
        axes[0].annotate(
            f"{clipped} population mean(s) below the axis (a candidate blew up)",
            (0.02, 0.02),
            xycoords="axes fraction",
            fontsize=7,
            color="0.4",
        )
    axes[0].set_xlabel("generation")
    axes[0].set_ylabel("fitness (higher is better)")
    axes[0].legend(fontsize=8)
    g, a = series("val_accuracy")
    if a:
        axes[1].plot(g, a, "o-", color="C1", ms=3, label="validation accuracy")
        axes[1].set_ylabel("accuracy")
    else:
        g, s = series("sigma")
        axes[1].plot(g, s, color="C2", label="σ")
        axes[1].set_ylabel("σ")
    axes[1].set_xlabel("generation")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Meta-training {title}".strip())
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fitness_limits(population: list[float], validation: list[float]) -> tuple[float, float] | None:
    """y-limits that keep the curves readable when a few generations' population mean is
    orders of magnitude below the rest (one candidate blowing up on one task): the range of the
    validation curve and of the population means above their 5th percentile, with a margin.
    ``None`` when nothing would be cut off."""
    if not population:
        return None
    ordered = sorted(population)
    floor = ordered[int(0.05 * (len(ordered) - 1))]
    kept = [v for v in population if v >= floor] + list(validation)
    lo, hi = min(kept), max(kept)
    margin = 0.1 * (hi - lo) or 0.1 * abs(hi) or 1.0
    if min(population) >= lo - margin:
        return None
    return lo - margin, hi + margin


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
