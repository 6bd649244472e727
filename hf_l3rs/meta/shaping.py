"""Fitness shaping (Salimans et al. 2017): only within-generation ranks carry signal."""

from __future__ import annotations

import torch
from torch import Tensor


def centered_rank(fitness: Tensor) -> Tensor:
    """Map fitnesses to evenly spaced values in [-0.5, 0.5] by rank (ties by index;
    ``-inf`` ranks lowest). Higher fitness gets a higher value."""
    n = fitness.numel()
    if n < 2:
        return torch.zeros_like(fitness, dtype=torch.float64)
    order = torch.argsort(fitness.to(torch.float64), stable=True)
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = torch.arange(n, dtype=torch.float64)
    return ranks / (n - 1) - 0.5
