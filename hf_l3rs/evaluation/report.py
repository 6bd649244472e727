"""Tables (Markdown shaped like the paper's appendix, CSV, JSON) and plots of a protocol run."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from hf_l3rs import jsonio

TITLES = {
    "A": "A: init D1, tasks D1 (in-domain)",
    "B": "B: init D1, tasks D2 (other dataset)",
    "C": "C: init D2, tasks D1 (other checkpoint)",
    "D": "D: init D2, tasks D2",
    "E": "E: random init, tasks D1",
}


def _cell(stat: dict[str, float], pct: bool) -> str:
    if not math.isfinite(stat["mean"]):
        return "–"
    if pct:
        return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def markdown(results: dict[str, Any]) -> str:
    horizons = results["config"]["horizons"]
    domains = results["config"]["domains"]
    lines = [
        f"Domains: D1 = `{domains['D1']}`, D2 = `{domains['D2']}`; "
        f"{results['config']['num_tasks']} meta-test tasks per cell, mean ± std.",
        "",
    ]
    for ev, data in results["evaluations"].items():
        for metric, pct in (("accuracy", True), ("loss", False)):
            unit = "evaluation accuracy (%)" if pct else "evaluation loss"
            lines += [
                f"### {TITLES.get(ev, ev)} — {unit}",
                "",
                "| optimizer | " + " | ".join(f"T={h}" for h in horizons) + " |",
                "|---|" + "---|" * len(horizons),
            ]
            for label, metrics in data["summary"].items():
                cells = [_cell(metrics[metric][str(h)], pct) for h in horizons]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            lines.append("")
    if results.get("speedup"):
        lines += [
            "### F: speedup of L3RS in steps (evaluation A)",
            "",
            "Steps a baseline takes (T) divided by the steps L3RS needs to reach that baseline's mean "
            "accuracy at T (log-interpolated between horizons; – : not reached within the horizons).",
            "",
            "| baseline | " + " | ".join(f"T={h}" for h in horizons) + " |",
            "|---|" + "---|" * len(horizons),
        ]
        for label, per_h in results["speedup"].items():
            cells = [
                ("≥" if per_h[str(h)].get("at_least") else "") + f"{per_h[str(h)]['speedup']:.2f}×"
                if per_h[str(h)]["speedup"]
                else "–"
                for h in horizons
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_csv(results: dict[str, Any], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["evaluation", "optimizer", "horizon", "metric", "mean", "std", "n"])
        for ev, data in results["evaluations"].items():
            for label, metrics in data["summary"].items():
                for metric, per_h in metrics.items():
                    for h, s in per_h.items():
                        w.writerow([ev, label, h, metric, s["mean"], s["std"], s["n"]])


def plot(results: dict[str, Any], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizons = results["config"]["horizons"]
    paths = []
    for ev, data in results["evaluations"].items():
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for label, metrics in data["summary"].items():
            if "L3RS" in label:
                style = dict(lw=2.5, color="k", ls="--" if "untrained" in label else "-")
            else:
                style = dict(lw=1, alpha=0.8)
            for ax, metric in zip(axes, ("accuracy", "loss")):
                mean = [metrics[metric][str(h)]["mean"] for h in horizons]
                ax.plot(horizons, mean, marker="o", ms=3, label=label, **style)
        axes[0].set_ylabel("evaluation accuracy")
        axes[1].set_ylabel("evaluation loss")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("training steps T")
        axes[1].legend(fontsize=7, loc="upper right")
        fig.suptitle(TITLES.get(ev, ev))
        fig.tight_layout()
        p = folder / f"eval_{ev}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)
    if results.get("speedup"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, per_h in results["speedup"].items():
            pts = [(h, per_h[str(h)]["speedup"]) for h in horizons if per_h[str(h)]["speedup"]]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=label)
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("baseline steps T")
        ax.set_ylabel("speedup of L3RS (×)")
        ax.set_title("F: steps-to-accuracy speedup (evaluation A)")
        ax.legend(fontsize=6)
        fig.tight_layout()
        p = folder / "speedup_F.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)
    return paths


def save(results: dict[str, Any], folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jsonio.write(folder / "results.json", results)
    write_csv(results, folder / "results.csv")
    (folder / "tables.md").write_text(markdown(results) + "\n")
    plot(results, folder)
    return {"json": folder / "results.json", "csv": folder / "results.csv", "markdown": folder / "tables.md"}
