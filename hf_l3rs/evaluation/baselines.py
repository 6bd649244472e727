"""Hand-designed baselines as optimizer factories (the paper's Adam variants and the
classic tuned references)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from hf_l3rs.tasks.base import OptimizerFactory

#: name -> (learning rate -> optimizer factory)
BASELINES: dict[str, Callable[[float], OptimizerFactory]] = {
    "adam": lambda lr: lambda model, steps: torch.optim.Adam(model.parameters(), lr=lr),
    "rmsprop": lambda lr: lambda model, steps: torch.optim.RMSprop(model.parameters(), lr=lr),
    "momentum": lambda lr: lambda model, steps: torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9),
    "sgd": lambda lr: lambda model, steps: torch.optim.SGD(model.parameters(), lr=lr),
}


def adam_cosine(lr: float) -> OptimizerFactory:
    """Adam with a cosine decay to zero over the task's horizon (needs a scheduler hook)."""

    def make(model: nn.Module, steps: int) -> torch.optim.Optimizer:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        return _Scheduled(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps)))

    return make


class _Scheduled(torch.optim.Optimizer):
    """Wraps an optimizer so ``step()`` also advances a multiplicative lr schedule."""

    def __init__(self, inner: torch.optim.Optimizer, factor: Callable[[int], float]) -> None:
        self.inner, self.factor, self.t = inner, factor, 0
        self.base = [g["lr"] for g in inner.param_groups]
        self.param_groups = inner.param_groups
        self.state = inner.state
        self.defaults = inner.defaults

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):  # type: ignore[override]
        loss = self.inner.step(closure)
        self.t += 1
        for g, base in zip(self.inner.param_groups, self.base):
            g["lr"] = base * self.factor(self.t)
        return loss


def lr_grid(low_exp: float = -4.0, high_exp: float = 0.0, per_decade: int = 2) -> list[float]:
    """Log-spaced learning rates 10^low … 10^high."""
    n = round((high_exp - low_exp) * per_decade)
    return [10 ** (low_exp + i / per_decade) for i in range(n + 1)]
