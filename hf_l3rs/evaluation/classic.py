"""Meta-trained L3RS against Adam, RMSProp and momentum, each tuned over a learning-rate
grid, on held-out instances of a classic objective family."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hf_l3rs import jsonio
from hf_l3rs.optim import L3RSNet
from hf_l3rs.registry import OptimizerSpec, l3rs_factory, lr_grid
from hf_l3rs.tasks import TaskFamily, run_task
from hf_l3rs.tasks.base import OptimizerFactory


@dataclass
class Score:
    name: str
    lr: float | None
    losses: list[float]
    accuracies: list[float]
    diverged: int

    @property
    def mean(self) -> float:
        return statistics.fmean(self.losses) if self.losses else math.inf

    @property
    def std(self) -> float:
        """Spread of the runs that did not diverge (the diverged ones are counted apart)."""
        finite = [x for x in self.losses if math.isfinite(x)]
        return statistics.pstdev(finite) if len(finite) > 1 else 0.0


def score(
    family: TaskFamily, make: OptimizerFactory, seeds: list[int], split: str, name: str = "", lr: float | None = None
) -> Score:
    losses, accs, diverged = [], [], 0
    for s in seeds:
        res = run_task(family.sample(s, split), make)
        if res.diverged:
            diverged += 1
            losses.append(math.inf)
            continue
        losses.append(res.eval_loss)
        if res.eval_accuracy is not None:
            accs.append(res.eval_accuracy)
    return Score(name, lr, losses, accs, diverged)


def baseline(kind: str, lr: float) -> OptimizerFactory:
    """A constant-rate baseline of the registry (``adam``, ``rmsprop``, ``momentum``, ...)."""
    return OptimizerSpec(kind, "const", lr).factory()


def tune(family: TaskFamily, name: str, grid: list[float], seeds: list[int]) -> Score:
    """Best learning rate of a baseline by mean final loss on the validation split."""
    best = None
    for lr in grid:
        s = score(family, baseline(name, lr), seeds, "val", name, lr)
        if best is None or s.mean < best.mean:
            best = s
    return best


def compare(
    family: TaskFamily,
    nets: dict[str, L3RSNet],
    *,
    baselines: tuple[str, ...] = ("adam", "rmsprop", "momentum"),
    tune_tasks: int = 16,
    test_tasks: int = 32,
    grid: list[float] | None = None,
) -> dict[str, Any]:
    """Tune each baseline's lr on 'val' tasks, then score everything on 'test' tasks."""
    grid = grid or lr_grid()
    tuned = {}
    for name in tqdm(baselines, desc=f"tuning on {family.name}", leave=False):
        tuned[name] = tune(family, name, grid, list(range(tune_tasks)))
    test = list(range(test_tasks))
    rows = {}
    for name, t in tuned.items():
        rows[f"{name} (lr {t.lr:.3g})"] = score(family, baseline(name, t.lr), test, "test", name, t.lr)
    for label, net in nets.items():
        rows[label] = score(family, l3rs_factory(net), test, "test", label)
    best_label = min((k for k, r in rows.items() if r.name in baselines), key=lambda k: rows[k].mean)
    best_baseline = rows[best_label]
    return {
        "family": family.name,
        "test_tasks": test_tasks,
        "rows": {
            k: {
                "loss_mean": r.mean,
                "loss_std": r.std,
                "lr": r.lr,
                "diverged": r.diverged,
                "accuracy_mean": statistics.fmean(r.accuracies) if r.accuracies else None,
                "wins_vs_best_baseline": sum(a < b for a, b in zip(r.losses, best_baseline.losses)),
                **paired_difference(r.losses, best_baseline.losses),
                # per test task, in seed order; null where the run diverged
                "losses": [x if math.isfinite(x) else None for x in r.losses],
            }
            for k, r in rows.items()
        },
        "best_baseline": best_baseline.name,
        "best_baseline_row": best_label,
    }


def paired_difference(losses: list[float], reference: list[float]) -> dict[str, float | None]:
    """Mean and standard error over tasks of (loss − reference loss) on the same tasks: a
    narrow win in the means is only a win if this is clearly below zero. None when a run
    diverged (the difference is infinite) or there are fewer than two tasks."""
    diffs = [a - b for a, b in zip(losses, reference)]
    if len(diffs) < 2 or not all(math.isfinite(d) for d in diffs):
        return {"paired_diff_mean": None, "paired_diff_se": None}
    return {
        "paired_diff_mean": statistics.fmean(diffs),
        "paired_diff_se": statistics.stdev(diffs) / math.sqrt(len(diffs)),
    }


def format_paired(row: dict[str, Any], digits: int = 3) -> str:
    """A row's paired difference as "mean ± s.e." with ``digits`` significant digits in the
    mean (one fewer in the standard error)."""
    return f"{row['paired_diff_mean']:+.{digits}g} ± {row['paired_diff_se']:.{digits - 1}g}"


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"**{result['family']}** ({result['test_tasks']} held-out test tasks; baselines tuned on validation tasks)",
        "",
        "| optimizer | final eval loss (mean ± std) | accuracy | tasks better than best baseline "
        "| paired Δ vs best baseline (mean ± s.e.) |",
        "|---|---|---|---|---|",
    ]
    best = result["best_baseline_row"]
    for name, r in result["rows"].items():
        acc = f"{r['accuracy_mean']:.3f}" if r["accuracy_mean"] is not None else "–"
        diff = format_paired(r) if name != best and r["paired_diff_mean"] is not None else "–"
        lines.append(
            f"| {name} | {r['loss_mean']:.4g} ± {r['loss_std']:.2g} | {acc} | "
            f"{r['wins_vs_best_baseline']}/{result['test_tasks']} | {diff} |"
        )
    return "\n".join(lines)


def save(result: dict[str, Any], folder: str | Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"classic_{result['family']}"
    jsonio.write(folder / f"{stem}.json", result)
    (folder / f"{stem}.md").write_text(to_markdown(result) + "\n")
