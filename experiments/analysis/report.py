"""`hf-l3rs analyze`: run the five analyses on each subject, plot them side by side and write a
short Markdown report plus strict JSON (docs/design.md §6)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from experiments.analysis import probes
from experiments.analysis.subjects import Subject, get_subject
from hf_l3rs import jsonio

#: classic families of the seed paper on which the learned rate and mixing are also recorded
CLASSIC_TASKS = ("linear_regression", "rosenbrock", "two_moons_mlp")


def on_task(subject: Subject, family: str, family_kwargs: dict[str, Any] | None = None, seed: int = 0) -> dict:
    """The learned rate and mixing on a real task (L3RS subjects): per step, averaged over the
    components of each role."""
    from hf_l3rs.tasks.inner_loop import run_task
    from hf_l3rs.tasks.registry import get_family

    task = get_family(family, **(family_kwargs or {})).sample(seed, "test")
    holder: dict[str, Any] = {}

    def factory(model, total):
        opt = subject.make(model, total)
        opt.record_dynamics = True
        holder["opt"] = opt
        return opt

    result = run_task(task, factory)
    opt = holder["opt"]
    if not getattr(opt, "dynamics", None):
        return {}
    rate = torch.stack([d["rate"] for d in opt.dynamics]).double()  # [T, C]
    mix = torch.stack([d["mix"] for d in opt.dynamics]).double()  # [T, C, K]
    roles = [c.role for c in opt.components]
    by_role = {r: [i for i, x in enumerate(roles) if x == r] for r in dict.fromkeys(roles)}
    return {
        "task": family,
        "steps": rate.shape[0],
        "eval_loss": result.eval_loss,
        "rate": {r: rate[:, idx].mean(1).tolist() for r, idx in by_role.items()},
        "mix": {d: mix[:, :, k].mean(1).tolist() for k, d in enumerate(opt.config.directions)},
    }


def analyze(
    names: list[str],
    output: str | Path,
    tasks: tuple[str, ...] = CLASSIC_TASKS,
    image_task: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every analysis for every subject (meta-weights or ``adam``/``sgd-momentum``); writes
    ``momentum.png``, ``clipping.png``, ``schedule.png``, ``adaptation.png``, ``mixing.png``,
    ``analysis.md`` and ``analysis.json`` into ``output``."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    subjects = [get_subject(n) for n in names]
    results: dict[str, Any] = {}
    raw: dict[str, dict[str, Any]] = {}
    for subject in subjects:
        m, c, s, a, x = (
            probes.momentum(subject),
            probes.clipping(subject),
            probes.schedule(subject),
            probes.adaptation(subject),
            probes.mixing(subject),
        )
        real = []
        if subject.learned:
            for family in tasks:
                real.append(on_task(subject, family))
            if image_task is not None:
                real.append(on_task(subject, image_task["family"], image_task.get("family_kwargs")))
        raw[subject.name] = {"momentum": m, "clipping": c, "schedule": s, "adaptation": a, "mixing": x}
        results[subject.name] = {
            "tensors": m.names,
            "momentum_beta": m.beta.tolist(),
            "clipping": {
                "scales": c.scales.tolist(),
                "update_rms": c.update_rms.tolist(),
                "slope_small": c.slope_small.tolist(),
                "slope_large": c.slope_large.tolist(),
            },
            "schedule": {"late_over_early": s.late_over_early.tolist(), "kind": s.kind},
            "adaptation": {"factor": a.factor, "response": a.response.tolist()},
            "mixing": None
            if x is None
            else {
                "directions": list(x.directions),
                "mean_first_quarter": x.mix[: x.mix.shape[0] // 4].mean(0).tolist(),
                "mean_last_quarter": x.mix[-x.mix.shape[0] // 4 :].mean(0).tolist(),
            },
            "tasks": [r for r in real if r],
        }
    _plots(raw, results, out)
    jsonio.write(out / "analysis.json", results)
    (out / "analysis.md").write_text(markdown(results))
    return results


def _describe_clipping(small: float, large: float) -> str:
    if abs(large) < 0.2 and abs(small) < 0.2:
        return "scale-invariant"
    if abs(large) < 0.2 <= small:
        return "saturates (clips)"
    if large > 0.8:
        return "linear"
    return f"slope {large:.2f}"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# What the optimizers do: five mechanisms",
        "",
        "Controlled gradients on a probe of 7 tensors (stem conv, its norm weight and bias, a deeper "
        "conv and bias, the linear head and bias); `hf-l3rs analyze`, docs/design.md §6. "
        "Plots: momentum.png, clipping.png, schedule.png, adaptation.png, mixing.png.",
        "",
        "| optimizer | tensor | momentum β (impulse) | update vs gradient scale | schedule (late/early, "
        "stationary noise) | gradients ×10 mid-run: step × |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for i, tensor in enumerate(r["tensors"]):
            clip = _describe_clipping(r["clipping"]["slope_small"][i], r["clipping"]["slope_large"][i])
            lines.append(
                f"| {name} | {tensor} | {r['momentum_beta'][i]:.3f} | {clip} | "
                f"{r['schedule']['kind'][i]} ({r['schedule']['late_over_early'][i]:.2f}) | "
                f"{r['adaptation']['response'][i]:.2f} |"
            )
    for name, r in results.items():
        if r["mixing"] is None:
            continue
        dirs = r["mixing"]["directions"]
        lines += ["", f"**Mixing of {name}** (mean α over the first → last quarter of a 100-step run):", ""]
        lines += ["| tensor | " + " | ".join(dirs) + " |", "|---|" + "---|" * len(dirs)]
        for i, tensor in enumerate(r["tensors"]):
            cells = [
                f"{a:.2f} → {b:.2f}"
                for a, b in zip(r["mixing"]["mean_first_quarter"][i], r["mixing"]["mean_last_quarter"][i])
            ]
            lines.append(f"| {tensor} | " + " | ".join(cells) + " |")
        for task in r["tasks"]:
            rates = ", ".join(
                f"{role} {v[0]:.2g} → {v[len(v) // 2]:.2g} → {v[-1]:.2g}" for role, v in task["rate"].items()
            )
            lines.append("")
            lines.append(f"- on `{task['task']}` ({task['steps']} steps): learned rate start → middle → end: {rates}")
    lines.append("")
    return "\n".join(lines)


def _plots(raw: dict[str, dict[str, Any]], results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(raw)
    n = len(names)

    def grid(title: str):
        fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
        fig.suptitle(title)
        return fig, axes[0]

    fig, axes = grid("Momentum: |update change| k steps after a gradient impulse")
    for ax, name in zip(axes, names):
        m = raw[name]["momentum"]
        for i, t in enumerate(m.names):
            y = m.response[:, i].clamp_min(1e-30)
            ax.semilogy(y.tolist(), label=f"{t} β={float(m.beta[i]):.2f}")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("steps after the impulse")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "momentum.png", dpi=110)
    plt.close(fig)

    fig, axes = grid("Clipping: update RMS against gradient scale")
    for ax, name in zip(axes, names):
        c = raw[name]["clipping"]
        for i, t in enumerate(c.names):
            ax.loglog(c.scales.tolist(), c.update_rms[:, i].clamp_min(1e-30).tolist(), label=t)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("gradient scale")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "clipping.png", dpi=110)
    plt.close(fig)

    fig, axes = grid("Schedule: update RMS over a run at stationary gradients (÷ its mean)")
    for ax, name in zip(axes, names):
        s = raw[name]["schedule"]
        steps = s.update_rms.shape[0]
        for i, t in enumerate(s.names):
            u = s.update_rms[:, i]
            ax.plot((u / u.mean()).tolist(), label=t, lw=0.8)
        cos = [0.5 * (1 + math.cos(math.pi * k / steps)) for k in range(steps)]
        mean_cos = sum(cos) / len(cos)
        ax.plot([c / mean_cos for c in cos], "k--", lw=1, label="cosine")
        ax.axhline(1.0, color="gray", ls=":", label="constant")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "schedule.png", dpi=110)
    plt.close(fig)

    fig, axes = grid("Adaptation: gradients ×10 from mid-run (solid) vs not (dotted)")
    for ax, name in zip(axes, names):
        a = raw[name]["adaptation"]
        for i, t in enumerate(a.names):
            line = ax.semilogy(a.switched[:, i].clamp_min(1e-30).tolist(), label=t, lw=0.8)
            ax.semilogy(a.control[:, i].clamp_min(1e-30).tolist(), ls=":", color=line[0].get_color(), lw=0.8)
        ax.axvline(a.switched.shape[0] // 2, color="k", lw=0.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "adaptation.png", dpi=110)
    plt.close(fig)

    learned = [name for name in names if raw[name]["mixing"] is not None]
    rows = max(1, len(learned))
    fig, axes = plt.subplots(rows, 2, figsize=(10, 3.4 * rows), squeeze=False)
    fig.suptitle("Mixing: which base directions each tensor uses (stationary probe | real tasks)")
    for row, name in enumerate(learned):
        x = raw[name]["mixing"]
        ax = axes[row][0]
        for i, t in enumerate(x.names):
            for k, d in enumerate(x.directions):
                ax.plot(x.mix[:, i, k].tolist(), lw=0.8, ls="-" if k == 0 else "--", label=f"{t}: {d}")
        ax.set_title(f"{name}: probe", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("α")
        ax.legend(fontsize=5, ncol=2)
        ax = axes[row][1]
        for task in results[name]["tasks"]:
            for d, series in task["mix"].items():
                ax.plot(series, lw=0.9, label=f"{task['task']}: {d}")
        ax.set_title(f"{name}: real tasks (mean over tensors)", fontsize=9)
        ax.set_xlabel("step")
        if results[name]["tasks"]:
            ax.legend(fontsize=6)
    if not learned:
        axes[0][0].text(0.5, 0.5, "no L3RS subject: nothing mixes", ha="center")
    fig.tight_layout()
    fig.savefig(out / "mixing.png", dpi=110)
    plt.close(fig)
