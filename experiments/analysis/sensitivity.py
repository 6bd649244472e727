"""`hf-l3rs sensitivity`: would these meta-weights do better with the backbone's or the head's
learned rates scaled? A converged outer search sits at a local optimum of every direction it
can express; the head/backbone split is one it moves along slowly (docs/design.md §6,
docs/adr/0006 "The head/backbone split as a search direction"). This measures the
validation tasks of each member of a meta-training mixture along that direction.

The scaling uses the public interface: parameter groups (backbone, head, and with ``roles``
the backbone's other tensors) whose ``lr`` multiplies the learned rates, in the model's
order, so roles, depths and the embedding mapping are those of a plain
``L3RS.from_pretrained(source, model)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hf_l3rs import jsonio
from hf_l3rs.optim.components import describe
from hf_l3rs.optim.config import ROLES, ConfigError


@dataclass(frozen=True)
class SensitivityCell:
    """Mean validation accuracy and loss of ``tasks`` tasks of one member at one horizon, with
    the backbone's learned rates ×``backbone`` and the head's ×``head``; ``accuracy_se`` and
    ``loss_se`` are standard errors of the per-task differences to the unscaled rule (0 there)."""

    member: str
    horizon: int
    backbone: float
    head: float
    accuracy: float
    loss: float
    accuracy_se: float
    loss_se: float
    tasks: int


def parse_factors(text: str) -> list[tuple[float, float]]:
    """``"1/1,2/1,3/0.5"`` -> [(1, 1), (2, 1), (3, 0.5)] (backbone/head); a bare number scales
    the backbone only. (1, 1), the rule as shipped, is always included first."""
    pairs: list[tuple[float, float]] = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        parts = item.split("/")
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            raise ConfigError(f"sensitivity factors: {item!r} is not BACKBONE[/HEAD], e.g. 2/1") from None
        if len(values) not in (1, 2) or not all(math.isfinite(v) and v > 0 for v in values):
            raise ConfigError(f"sensitivity factors: {item!r} needs one or two finite numbers > 0")
        pairs.append((values[0], values[1] if len(values) == 2 else 1.0))
    if not pairs:
        raise ConfigError("sensitivity factors: give at least one BACKBONE[/HEAD] pair")
    return [(1.0, 1.0)] + [p for p in dict.fromkeys(pairs) if p != (1.0, 1.0)]


def split_groups(
    model: nn.Module,
    backbone: float,
    head: float,
    head_fraction: float,
    roles: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups (L3RS keeps the model's order): the components whose relative depth
    exceeds 1 − ``head_fraction`` get ``lr = head``, the others ``lr = backbone``; with
    ``roles``, only backbone components of those roles are scaled (the rest keep ``lr = 1``)."""
    if not 0 < head_fraction < 1:
        raise ConfigError(f"sensitivity: head_fraction must be in (0, 1), got {head_fraction!r}")
    unknown = sorted(set(roles or ()) - set(ROLES))
    if unknown:
        raise ConfigError(f"sensitivity: unknown role(s) {unknown}; known: {list(ROLES)}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups: dict[str, list[tuple[str, Tensor]]] = {"backbone": [], "head": [], "other": []}
    for item, c in zip(named, describe(named, model)):
        if c.depth > 1 - head_fraction:
            groups["head"].append(item)
        elif roles is None or c.role in roles:
            groups["backbone"].append(item)
        else:
            groups["other"].append(item)
    rates = {"backbone": backbone, "head": head, "other": 1.0}
    return [{"params": items, "lr": rates[key]} for key, items in groups.items() if items]


def members_of(family: Any) -> list[tuple[str, Any]]:
    """(name, family) per member of a mixture (or the family itself), without augmentation:
    rate jitter, hidden horizons and photometric shifts would blur the measured direction."""
    members = [f for f, _ in family.members] if hasattr(family, "members") else [family]
    return [(f.name, getattr(f, "family", f)) for f in members]


def rate_sensitivity(
    source: str,
    family: Any,
    *,
    factors: Sequence[tuple[float, float]],
    horizons: Sequence[int],
    num_tasks: int = 8,
    split: str = "val",
    head_fraction: float = 0.05,
    roles: Sequence[str] | None = None,
    progress: bool = True,
) -> list[SensitivityCell]:
    """Every member's first ``num_tasks`` tasks of ``split`` (seeds 0…n−1), trained for each
    horizon with L3RS(``source``) at each (backbone, head) factor pair; same tasks, data and
    initial weights for every pair, so the differences are paired. ``roles`` restricts the
    backbone factor to components of those roles (e.g. ``("conv",)``)."""
    from tqdm.auto import tqdm

    from hf_l3rs.evaluation.stats import paired
    from hf_l3rs.optim.hub import load_net
    from hf_l3rs.optim.l3rs import L3RS
    from hf_l3rs.tasks.inner_loop import run_task

    if num_tasks < 2:
        raise ConfigError(f"sensitivity: num_tasks must be >= 2 (standard errors), got {num_tasks!r}")
    if not horizons or any(not isinstance(h, int) or h <= 0 for h in horizons):
        raise ConfigError(f"sensitivity: horizons must be positive step counts, got {list(horizons)!r}")
    factors = list(factors)
    if not factors or factors[0] != (1.0, 1.0):
        factors = [(1.0, 1.0)] + [f for f in factors if f != (1.0, 1.0)]
    net = load_net(source)
    members = members_of(family)
    cells: list[SensitivityCell] = []
    bar = tqdm(
        total=len(members) * num_tasks * len(horizons) * len(factors),
        desc="sensitivity",
        unit="run",
        disable=not progress,
    )
    for name, member in members:
        tasks = [member.sample(seed, split) for seed in range(num_tasks)]
        for horizon in horizons:
            acc = torch.zeros(len(factors), num_tasks, dtype=torch.float64)
            loss = torch.zeros_like(acc)
            for fi, (backbone, head) in enumerate(factors):

                def make(model: nn.Module, total: int | None, b: float = backbone, h: float = head) -> L3RS:
                    groups = split_groups(model, b, h, head_fraction, roles)
                    return L3RS(groups, net, total_steps=total, model=model)

                for ti, task in enumerate(tasks):
                    result = run_task(task, make, num_steps=horizon)
                    acc[fi, ti] = float(result.eval_accuracy if result.eval_accuracy is not None else math.nan)
                    loss[fi, ti] = float(result.eval_loss)
                    bar.update()
            for fi, (backbone, head) in enumerate(factors):
                acc_se = paired(acc[fi].tolist(), acc[0].tolist(), higher_is_better=True)["se"]
                loss_se = paired(loss[fi].tolist(), loss[0].tolist(), higher_is_better=False)["se"]
                cells.append(
                    SensitivityCell(
                        member=name,
                        horizon=horizon,
                        backbone=backbone,
                        head=head,
                        accuracy=float(acc[fi].mean()),
                        loss=float(loss[fi].mean()),
                        accuracy_se=math.nan if acc_se is None else float(acc_se),
                        loss_se=math.nan if loss_se is None else float(loss_se),
                        tasks=num_tasks,
                    )
                )
    bar.close()
    return cells


def significantly_worse(
    accuracy: float, base_accuracy: float, accuracy_se: float, loss: float, base_loss: float, loss_se: float
) -> bool:
    """The role prior's rule: worse than the rule as shipped beyond 2 s.e. of the paired
    differences, in accuracy, or in held-out loss for tasks without one; a run that diverged
    (non-finite loss) always is."""
    if not math.isfinite(loss):
        return True
    if math.isfinite(accuracy) and math.isfinite(base_accuracy):
        return accuracy - base_accuracy < -2 * accuracy_se
    return loss - base_loss > 2 * loss_se


def harmed(cell: SensitivityCell, base: SensitivityCell) -> bool:
    """``cell`` is significantly worse than ``base``, the unscaled rule (``significantly_worse``)."""
    return significantly_worse(cell.accuracy, base.accuracy, cell.accuracy_se, cell.loss, base.loss, cell.loss_se)


def select_factor(cells: Sequence[SensitivityCell]) -> float:
    """The prior's rule (docs/adr/0006 "The head/backbone split as a search direction"):
    over backbone factors ≥ 1 with the head at ×1, ascending, the largest one up to which no
    member at any horizon is significantly worse than ×1; 1.0 when the first already is."""
    base = {(c.member, c.horizon): c for c in cells if (c.backbone, c.head) == (1.0, 1.0)}
    chosen = 1.0
    for factor in sorted({c.backbone for c in cells if c.head == 1.0 and c.backbone > 1.0}):
        group = [c for c in cells if c.head == 1.0 and c.backbone == factor]
        if any(harmed(c, base[(c.member, c.horizon)]) for c in group):
            break
        chosen = factor
    return chosen


def to_markdown(cells: Sequence[SensitivityCell], source: str, roles: Sequence[str] | None = None) -> str:
    """One table per member: a row per horizon, a column per factor pair, accuracy (%) and
    held-out loss, with the paired difference to the rule as shipped and '*' beyond 2 s.e."""
    scaled = f"the backbone's {', '.join(roles)} tensors" if roles else "the backbone"
    lines = [f"# Rate sensitivity of `{source}` (validation tasks; ×b scales {scaled})", ""]
    for member in dict.fromkeys(c.member for c in cells):
        rows = [c for c in cells if c.member == member]
        pairs = list(dict.fromkeys((c.backbone, c.head) for c in rows))
        base = {c.horizon: c for c in rows if (c.backbone, c.head) == (1.0, 1.0)}
        lines += [f"## {member} ({rows[0].tasks} tasks)", ""]
        lines.append("| T | " + " | ".join(f"backbone ×{b:g}, head ×{h:g}" for b, h in pairs) + " |")
        lines.append("|---|" + "---|" * len(pairs))
        for horizon in dict.fromkeys(c.horizon for c in rows):
            out = []
            for pair in pairs:
                c = next(x for x in rows if x.horizon == horizon and (x.backbone, x.head) == pair)
                if pair == (1.0, 1.0):
                    out.append(f"{100 * c.accuracy:.1f} % / {c.loss:.3f}")
                    continue
                da, dl = c.accuracy - base[horizon].accuracy, c.loss - base[horizon].loss
                # beyond 2 s.e. and visible at the printed precision (a consistent 1e-5 is not news)
                star_a = "*" if abs(da) > 2 * c.accuracy_se > 0 and round(100 * da, 1) != 0 else ""
                star_l = "*" if abs(dl) > 2 * c.loss_se > 0 and round(dl, 3) != 0 else ""
                out.append(f"{100 * c.accuracy:.1f} % ({100 * da:+.1f}{star_a}) / {c.loss:.3f} ({dl:+.3f}{star_l})")
            lines.append(f"| {horizon} | " + " | ".join(out) + " |")
        lines.append("")
    lines.append("Accuracy / held-out loss; in brackets the paired difference to ×1/×1 (* beyond 2 s.e.).")
    if any(c.head == 1.0 and c.backbone > 1.0 for c in cells):
        lines += [
            "",
            f"Largest backbone factor with no member and horizon significantly worse: ×{select_factor(cells):g}.",
        ]
    return "\n".join(lines) + "\n"


def plot(cells: Sequence[SensitivityCell], path: str | Path) -> Path:
    """Held-out loss relative to the rule as shipped against the backbone factor, one panel per
    member, one line per horizon (head factor 1 only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    members = list(dict.fromkeys(c.member for c in cells))
    fig, axes = plt.subplots(1, len(members), figsize=(4.2 * len(members), 3.4), squeeze=False)
    for ax, member in zip(axes[0], members):
        rows = [c for c in cells if c.member == member and c.head == 1.0]
        for horizon in dict.fromkeys(c.horizon for c in rows):
            line = sorted((c.backbone, c.loss) for c in rows if c.horizon == horizon)
            base = next(loss for b, loss in line if b == 1.0)
            ax.plot([b for b, _ in line], [loss / base for _, loss in line], marker="o", label=f"T = {horizon}")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(member, fontsize=9)
        ax.set_xlabel("backbone rate ×")
    axes[0][0].set_ylabel("held-out loss / as shipped")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    cells: Sequence[SensitivityCell], source: str, output: str | Path, roles: Sequence[str] | None = None
) -> Path:
    """``sensitivity.md``, ``sensitivity.json`` (strict JSON) and ``sensitivity.png`` in ``output``."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sensitivity.md").write_text(to_markdown(cells, source, roles))
    record = {"source": source, "roles": list(roles) if roles else None, "cells": [asdict(c) for c in cells]}
    jsonio.write(out / "sensitivity.json", record)
    plot(cells, out / "sensitivity.png")
    return out
