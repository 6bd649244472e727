"""L3RS's per-layer learned rate η and mixing α during one fine-tuning run (paper Fig. 4–5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hf_l3rs.optim import L3RS
from hf_l3rs.tasks.base import Task
from hf_l3rs.tasks.inner_loop import run_task


def record(task: Task, make: Any, steps: int) -> tuple[L3RS, dict[str, Any]]:
    """Run ``task`` with an L3RS from ``make(model, steps)`` and keep every step's η and α."""
    holder: dict[str, L3RS] = {}

    def factory(model, total):
        opt = make(model, total)
        opt.record_dynamics = True
        holder["opt"] = opt
        return opt

    result = run_task(task, factory, num_steps=steps)
    return holder["opt"], {"eval_loss": result.eval_loss, "eval_accuracy": result.eval_accuracy}


def plot_dynamics(opt: L3RS, folder: str | Path, title: str = "") -> list[Path]:
    """fig4: each layer's path in the (α_sgd, η) plane; fig5: the layer mean over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    steps = [d["step"] for d in opt.dynamics]
    rate = torch.stack([d["rate"] for d in opt.dynamics])  # [T, C]
    mix = torch.stack([d["mix"] for d in opt.dynamics])  # [T, C, K]
    names = opt.direction_names
    k = names.index("sgd") if "sgd" in names else 0
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4.5))
    cmap = plt.get_cmap("viridis")
    for c in range(rate.shape[1]):
        ax.plot(mix[:, c, k], rate[:, c], color="0.8", lw=0.6, zorder=1)
        ax.scatter(mix[:, c, k], rate[:, c], c=steps, cmap=cmap, s=4, zorder=2)
    ax.set_yscale("log")
    ax.set_xlabel(f"α ({names[k]} share of the update)")
    ax.set_ylabel("learned rate η")
    ax.set_title(f"Per-layer dynamics {title}".strip())
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(min(steps), max(steps)))
    fig.colorbar(sm, ax=ax, label="step")
    fig.tight_layout()
    p = folder / "dynamics_layers.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    fig, ax1 = plt.subplots(figsize=(6, 3.5))
    ax1.plot(steps, rate.mean(1), color="C0", label="mean η")
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("mean learned rate η", color="C0")
    ax2 = ax1.twinx()
    for j, name in enumerate(names):
        ax2.plot(steps, mix[:, :, j].mean(1), ls="--", label=f"mean α({name})", color=f"C{j + 1}")
    ax2.set_ylabel("mean mixing α")
    ax2.set_ylim(0, 1)
    fig.legend(fontsize=7, loc="upper center", ncol=len(names) + 1)
    fig.tight_layout()
    p = folder / "dynamics_mean.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths
