"""Hand-designed baselines as optimizer factories (the paper's Adam variants and the
classic tuned references)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hf_l3rs.tasks.base import OptimizerFactory

#: name -> (learning rate -> optimizer factory)
BASELINES: dict[str, Callable[[float], OptimizerFactory]] = {
    "adam": lambda lr: lambda model, steps: torch.optim.Adam(model.parameters(), lr=lr),
    "rmsprop": lambda lr: lambda model, steps: torch.optim.RMSprop(model.parameters(), lr=lr),
    "momentum": lambda lr: lambda model, steps: torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9),
    "sgd": lambda lr: lambda model, steps: torch.optim.SGD(model.parameters(), lr=lr),
}


def lr_grid(low_exp: float = -4.0, high_exp: float = 0.0, per_decade: int = 2) -> list[float]:
    """Log-spaced learning rates 10^low … 10^high."""
    n = round((high_exp - low_exp) * per_decade)
    return [10 ** (low_exp + i / per_decade) for i in range(n + 1)]
