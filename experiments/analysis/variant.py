"""`hf-l3rs sensitivity --set FIELD=JSON`: would these meta-weights be better with a config
field changed (a signal, a floor, a prior)? The members' check that decided the tangential
adaptation signal and refused the convolution floor (docs/adr/0006 "The tangential
adaptation signal"): every member's validation tasks, trained with the rule as shipped and
with the variant on the same tasks, data and initial weights, so the differences are paired;
the variant is refused where any member at any horizon is significantly worse, by the role
prior's rule (``sensitivity.significantly_worse``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from experiments.analysis.sensitivity import members_of, significantly_worse
from hf_l3rs import jsonio
from hf_l3rs.optim.config import ConfigError


@dataclass(frozen=True)
class VariantCell:
    """One member at one horizon: mean validation accuracy and loss of the rule as shipped
    and of the variant, with the standard errors of their per-task differences."""

    member: str
    horizon: int
    tasks: int
    accuracy: float
    variant_accuracy: float
    accuracy_se: float
    loss: float
    variant_loss: float
    loss_se: float

    def harmed(self) -> bool:
        """The variant is significantly worse here (``sensitivity.significantly_worse``)."""
        return significantly_worse(
            self.variant_accuracy, self.accuracy, self.accuracy_se, self.variant_loss, self.loss, self.loss_se
        )


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``FIELD=JSON`` strings (e.g. ``adaptation_scope="model"``) as a dict."""
    import json

    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--set wants FIELD=JSON, got {item!r}")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"--set {name}: {value!r} is not JSON ({exc.msg}); quote strings: '\"tangential\"'"
            ) from exc
    return out


def variant_check(
    source: str,
    family: Any,
    overrides: dict[str, Any],
    *,
    horizons: Sequence[int],
    num_tasks: int = 8,
    split: str = "val",
    progress: bool = True,
) -> list[VariantCell]:
    """Every member's first ``num_tasks`` tasks of ``split`` (seeds 0…n−1) at each horizon, with
    ``L3RS.from_pretrained(source)`` and with ``overrides`` on its config (an invalid field or
    value raises before anything runs)."""
    from tqdm.auto import tqdm

    from hf_l3rs.evaluation.stats import paired
    from hf_l3rs.optim.hub import load_net
    from hf_l3rs.optim.l3rs import L3RS
    from hf_l3rs.tasks.inner_loop import run_task

    if num_tasks < 2:
        raise ConfigError(f"sensitivity --set: num_tasks must be >= 2 (standard errors), got {num_tasks!r}")
    if not overrides:
        raise ConfigError("sensitivity --set: no field to change")
    nets = (load_net(source), load_net(source, **overrides))
    members = members_of(family)
    cells: list[VariantCell] = []
    bar = tqdm(total=len(members) * num_tasks * len(horizons) * 2, desc="variant", unit="run", disable=not progress)
    for name, member in members:
        tasks = [member.sample(seed, split) for seed in range(num_tasks)]
        for horizon in horizons:
            acc = torch.zeros(2, num_tasks, dtype=torch.float64)
            loss = torch.zeros_like(acc)
            for vi, net in enumerate(nets):
                for ti, task in enumerate(tasks):
                    result = run_task(task, lambda m, total, n=net: L3RS(m, n, total_steps=total), num_steps=horizon)
                    acc[vi, ti] = float(result.eval_accuracy if result.eval_accuracy is not None else math.nan)
                    loss[vi, ti] = float(result.eval_loss)
                    bar.update()
            acc_se = paired(acc[1].tolist(), acc[0].tolist(), higher_is_better=True)["se"]
            loss_se = paired(loss[1].tolist(), loss[0].tolist(), higher_is_better=False)["se"]
            cells.append(
                VariantCell(
                    member=name,
                    horizon=horizon,
                    tasks=num_tasks,
                    accuracy=float(acc[0].mean()),
                    variant_accuracy=float(acc[1].mean()),
                    accuracy_se=math.nan if acc_se is None else float(acc_se),
                    loss=float(loss[0].mean()),
                    variant_loss=float(loss[1].mean()),
                    loss_se=math.nan if loss_se is None else float(loss_se),
                )
            )
    bar.close()
    return cells


def to_markdown(cells: Sequence[VariantCell], source: str, overrides: dict[str, Any]) -> str:
    """One row per member and horizon, and the verdict."""
    change = ", ".join(f"`{k}={v!r}`" for k, v in overrides.items())
    lines = [
        f"# `{source}` with {change} (validation tasks, paired)",
        "",
        "| member | T | accuracy | with the change | Δ (pt) | loss | with the change | Δ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        da, dl = 100 * (c.variant_accuracy - c.accuracy), c.variant_loss - c.loss
        lines.append(
            f"| {c.member} ({c.tasks} tasks) | {c.horizon} "
            f"| {100 * c.accuracy:.1f} % | {100 * c.variant_accuracy:.1f} % "
            f"| {da:+.1f} ± {100 * c.accuracy_se:.1f}{' (worse)' if c.harmed() else ''} "
            f"| {c.loss:.3f} | {c.variant_loss:.3f} | {dl:+.3f} ± {c.loss_se:.3f} |"
        )
    worse = [c for c in cells if c.harmed()]
    verdict = (
        "Refused: significantly worse for " + ", ".join(f"{c.member} at T = {c.horizon}" for c in worse) + "."
        if worse
        else "Accepted: no member and horizon significantly worse."
    )
    return "\n".join([*lines, "", verdict]) + "\n"


def write_report(cells: Sequence[VariantCell], source: str, overrides: dict[str, Any], output: str | Path) -> Path:
    """``variant.md`` and ``variant.json`` (strict JSON) in ``output``."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "variant.md").write_text(to_markdown(cells, source, overrides))
    record = {
        "source": source,
        "overrides": overrides,
        "refused": any(c.harmed() for c in cells),
        "cells": [asdict(c) for c in cells],
    }
    jsonio.write(out / "variant.json", record)
    return out
