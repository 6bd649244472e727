"""Tables (Markdown, strict JSON) and the speedup plot of a tuned-benchmark run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hf_l3rs import jsonio
from hf_l3rs.evaluation.report import TITLES


def _num(x: float | None, metric: str, se: float | None = None) -> str:
    if x is None or not math.isfinite(x):
        return "diverged" if x == math.inf else "–"
    if metric == "accuracy":
        out = f"{100 * x:.1f}"
        return out + (f" ± {100 * se:.1f}" if se is not None and math.isfinite(se) else "") + " %"
    out = f"{x:.3f}"
    return out + (f" ± {se:.3f}" if se is not None and math.isfinite(se) else "")


def _speedup(c: dict[str, Any]) -> str:
    s = c["speedup"]
    if s is None:
        return "not reached"
    bound = "≥ " if c["at_least"] else ""
    return f"{bound}{s:.2f}× [{c['low']:.2f}, {c['high']:.2f}]"


def _paired(p: dict[str, Any], metric: str) -> str:
    if p["mean"] is None:
        return "–"
    scale, unit = (100, " pt") if metric == "accuracy" else (1, "")
    mark = {1: " (better)", -1: " (worse)", 0: ""}[p["significant"]]
    return f"{scale * p['mean']:+.3g} ± {scale * p['se']:.2g}{unit}{mark}"


def markdown(results: dict[str, Any]) -> str:
    cfg = results["config"]
    horizons = cfg["horizons"]
    lines = [
        f"Tuned benchmark: {cfg['test_tasks']} test tasks (meta-test classes) per cell; every baseline family's "
        f"rate tuned per horizon and metric on {cfg['val_tasks']} validation tasks (meta-train classes) over a "
        f"grid of {cfg['per_decade']} rates a decade, extended at an edge up to {cfg['max_extensions']} times. "
        "Best tuned baseline = the family with the best test mean. Paired Δ = L3RS − best baseline per task "
        "(mean ± s.e.; '(better)'/'(worse)' beyond 2 s.e.). Speedup F = T / steps L3RS needs to reach the "
        "best baseline's mean at T (log-interpolated), [68 % bootstrap interval over tasks].",
        "",
    ]
    for ev, data in results["evaluations"].items():
        for label, comp in data["comparisons"].items():
            lines += [
                f"### {TITLES.get(ev, ev)} — {label} against the best tuned baseline",
                "",
                f"| T | metric | best tuned baseline (rate) | baseline | {label} | paired Δ | tasks better "
                "| speedup F |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for h in map(str, horizons):
                for metric in ("accuracy", "loss"):
                    b = data["best"][metric][h]
                    mine = data["summary"][label][metric][h]
                    c = comp[metric][h]
                    edge = " (edge)" if b.get("edge") else ""
                    lines.append(
                        f"| {h} | {metric} | {b['family']} ({b['lr']:.3g}){edge} | {_num(b['mean'], metric, b['se'])} "
                        f"| {_num(mine['mean'], metric, mine['se'])} | {_paired(c['paired'], metric)} "
                        f"| {c['paired']['wins']}/{c['paired']['n']} | {_speedup(c)} |"
                    )
            lines.append("")
        lines += [
            f"#### {ev}: every family at its tuned rates (test mean accuracy / loss; rate chosen on validation)",
            "",
            "| family | " + " | ".join(f"T={h}" for h in horizons) + " |",
            "|---|" + "---|" * len(horizons),
        ]
        for family in data["tuning"]:
            cells = []
            for h in map(str, horizons):
                a, lo = data["summary"][family]["accuracy"][h], data["summary"][family]["loss"][h]
                flag = "*" if a.get("edge") or lo.get("edge") else ""
                acc, loss = _num(a["mean"], "accuracy"), _num(lo["mean"], "loss")
                cells.append(f"{acc} ({a['lr']:.2g}) / {loss} ({lo['lr']:.2g}){flag}")
            lines.append(f"| {family} | " + " | ".join(cells) + " |")
        for label in data["comparisons"]:
            s = data["summary"][label]
            cells = [
                f"{_num(s['accuracy'][h]['mean'], 'accuracy')} / {_num(s['loss'][h]['mean'], 'loss')}"
                for h in map(str, horizons)
            ]
            lines.append(f"| **{label}** | " + " | ".join(cells) + " |")
        lines += ["", "\\* chosen rate on the edge of its grid after all extensions.", ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], folder: Path) -> list[Path]:
    """Per evaluation: accuracy and loss against T (every tuned family, the best-baseline
    envelope, L3RS with ± s.e.) and the speedup F with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizons = results["config"]["horizons"]
    paths = []
    for ev, data in results["evaluations"].items():
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        for ax, metric in zip(axes[:2], ("accuracy", "loss")):
            for family in data["tuning"]:
                ys = [data["summary"][family][metric][str(h)]["mean"] for h in horizons]
                ax.plot(horizons, ys, color="0.75", lw=1)
            best = [data["best"][metric][str(h)]["mean"] for h in horizons]
            ax.plot(horizons, best, color="k", ls="--", lw=1.5, label="best tuned baseline (per T)")
            for label in data["comparisons"]:
                s = data["summary"][label][metric]
                ys = [s[str(h)]["mean"] for h in horizons]
                es = [s[str(h)]["se"] for h in horizons]
                ax.errorbar(horizons, ys, yerr=es, marker="o", ms=3, lw=2, capsize=2, label=label)
            ax.set_xscale("log")
            ax.set_xlabel("training steps T")
            ax.set_ylabel(f"test {metric}")
        axes[0].legend(fontsize=7, loc="lower right")
        ax = axes[2]
        for label, comp in data["comparisons"].items():
            for metric, marker in (("accuracy", "o"), ("loss", "s")):
                pts = [(h, comp[metric][str(h)]) for h in horizons if comp[metric][str(h)]["speedup"]]
                if not pts:
                    continue
                xs = [h for h, _ in pts]
                ys = [c["speedup"] for _, c in pts]
                lo = [max(0.0, c["speedup"] - c["low"]) for _, c in pts]
                hi = [max(0.0, c["high"] - c["speedup"]) for _, c in pts]
                ax.errorbar(xs, ys, yerr=[lo, hi], marker=marker, ms=4, capsize=2, label=f"{label}, {metric}")
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        ax.axhline(2.0, color="0.5", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("baseline steps T")
        ax.set_ylabel("speedup F over the best tuned baseline (×)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        fig.suptitle(f"{TITLES.get(ev, ev)}: L3RS against tuned baselines")
        fig.tight_layout()
        p = folder / f"tuned_{ev}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)
    return paths


def save(results: dict[str, Any], folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "tuned.json", "markdown": folder / "tuned.md"}
    jsonio.write(paths["json"], results)
    paths["markdown"].write_text(markdown(results) + "\n")
    for i, p in enumerate(plot(results, folder)):
        paths[f"plot{i}"] = p
    return paths
