"""The optimizers compared by the evaluation protocol, by name.

``adam-const-1e-3``, ``adam-cos-1e-4``, ``adam-const-head-1e-3``, ``adam-cos-head-1e-5``,
``sgd-1e-2`` (momentum 0.9) and ``l3rs``. Schedule-dependent ones (cosine, L3RS) are run
once per horizon; constant ones once to the longest horizon, read at every horizon.
Head-only variants freeze the backbone in eval mode (a linear probe), so their features are
computed once per task.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

_NAME = re.compile(r"^(adam|sgd)-(?:(const|cos)-)?(head-)?([0-9.]+e-?[0-9]+|[0-9.]+)$")


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    kind: str  # "adam", "sgd" or "l3rs"
    lr: float | None = None
    schedule: str = "const"  # "const" or "cos"; L3RS counts as schedule-dependent
    head_only: bool = False

    @property
    def per_horizon(self) -> bool:
        return self.kind == "l3rs" or self.schedule == "cos"

    @property
    def label(self) -> str:
        if self.kind == "l3rs":
            return self.name
        sched = "cosine" if self.schedule == "cos" else "const"
        head = ", head" if self.head_only else ""
        base = "Adam" if self.kind == "adam" else "SGD"
        return f"{base} ({sched}{head}) {self.lr:g}"

    def build(self, params, total_steps: int) -> torch.optim.Optimizer:
        """The optimizer; a cosine schedule is folded into its ``step()``."""
        params = list(params)
        if self.kind == "adam":
            opt = _fastest(torch.optim.Adam, params, lr=self.lr)
        elif self.kind == "sgd":
            opt = _fastest(torch.optim.SGD, params, lr=self.lr, momentum=0.9)
        else:
            raise ValueError("L3RS is built by the protocol (it needs the meta-weights)")
        if self.schedule == "cos":
            return CosineStepped(opt, total_steps)
        return opt


def _fastest(cls, params, **kwargs) -> torch.optim.Optimizer:
    """The fused implementation when torch has one for these tensors (same algorithm,
    one kernel instead of a Python loop over tensors), else torch's default."""
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, **kwargs)


class CosineStepped(torch.optim.Optimizer):
    """An optimizer whose learning rate follows a cosine to zero over ``total_steps``,
    advanced by its own ``step()`` (so plain training loops need no scheduler)."""

    def __init__(self, inner: torch.optim.Optimizer, total_steps: int) -> None:
        self.inner, self.total_steps, self.t = inner, total_steps, 0
        self.base = [g["lr"] for g in inner.param_groups]
        self.param_groups, self.state, self.defaults = inner.param_groups, inner.state, inner.defaults

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):  # type: ignore[override]
        loss = self.inner.step(closure)
        self.t += 1
        factor = 0.5 * (1 + math.cos(math.pi * min(self.t, self.total_steps) / self.total_steps))
        for g, base in zip(self.inner.param_groups, self.base):
            g["lr"] = base * factor
        return loss


def parse_optimizer(name: str) -> OptimizerSpec:
    """``adam-cos-head-1e-4`` → OptimizerSpec; ``l3rs`` or ``l3rs:<label>`` for L3RS."""
    if name == "l3rs-untrained":
        return OptimizerSpec(name="L3RS (untrained)", kind="l3rs", schedule="cos", lr=0.0)
    if name == "l3rs" or name.startswith("l3rs:"):
        return OptimizerSpec(name=name.split(":", 1)[1] if ":" in name else "L3RS", kind="l3rs", schedule="cos")
    m = _NAME.match(name)
    if not m:
        raise ValueError(
            f"unknown optimizer {name!r}: use l3rs, adam-const-1e-3, adam-cos-1e-4, adam-const-head-1e-3, sgd-1e-2, ..."
        )
    kind, schedule, head, lr = m.groups()
    return OptimizerSpec(name=name, kind=kind, lr=float(lr), schedule=schedule or "const", head_only=bool(head))


PAPER_BASELINES = [
    f"adam-{s}-{h}{lr}" for s in ("const", "cos") for h in ("", "head-") for lr in ("1e-3", "1e-4", "1e-5")
] + ["sgd-1e-2"]
