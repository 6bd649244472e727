"""Task augmentations for meta-training (docs/design.md §3, docs/decisions.md "Models whose
good rates differ"): a hidden rate multiplier and a hidden horizon.

**Rate jitter.** For directions that are invariant to the gradient's scale (Adam, Lion, LAMB,
Adamax, the normalised SGD of L3RS), running a task with every rate multiplied by r is the same
as running a model whose curvature is r times larger: the good step size moves by 1/r.
Meta-training over tasks with r drawn log-uniformly from [1/f, f] therefore presents models
whose good rates span f² while keeping the data and checkpoints fixed, and a rule can only do
well on all of them by finding the step size from what it observes (rate adaptation, loss and
gradient features), not by memorising one domain's rate. The multiplier reaches the optimizer
as its param groups' ``lr``, exactly as a user's mis-set multiplier would.

**Horizon-free share.** A fraction of the tasks does not tell the optimizer its number of
steps (``total_steps=None``), as a user's loop without a scheduler would not, so the rule is
trained for the horizon-free time features it then reads.
"""

from __future__ import annotations

import math

import torch

from hf_l3rs.seeding import task_seed
from hf_l3rs.tasks.base import Task, TaskFamily


class AugmentedFamily(TaskFamily):
    """``family``'s tasks, each with ``task.lr_scale`` = r (log r ~ U(−log f, log f), f =
    ``rate_jitter``) and ``task.hide_horizon`` true with probability ``horizon_free``; both
    seeded by the task, so every process and every candidate sees the same task."""

    def __init__(self, family: TaskFamily, rate_jitter: float = 1.0, horizon_free: float = 0.0) -> None:
        if not (isinstance(rate_jitter, (int, float)) and math.isfinite(rate_jitter) and rate_jitter >= 1):
            raise ValueError(f"rate_jitter must be a finite number >= 1 (the largest multiplier), got {rate_jitter!r}")
        if not (isinstance(horizon_free, (int, float)) and 0 <= horizon_free <= 1):
            raise ValueError(f"horizon_free must be a fraction in [0, 1], got {horizon_free!r}")
        self.family, self.rate_jitter, self.horizon_free = family, float(rate_jitter), float(horizon_free)
        self.name, self.splits = family.name, family.splits

    def draws(self, seed: int, split: str) -> tuple[float, bool]:
        """(rate multiplier, horizon hidden) of task ``seed`` in ``split``."""
        g = torch.Generator().manual_seed(task_seed(f"{self.name}/augment", split, seed))
        u, v = torch.rand(2, generator=g, dtype=torch.float64).tolist()
        return math.exp((2 * u - 1) * math.log(self.rate_jitter)), v < self.horizon_free

    def sample(self, seed: int, split: str = "train") -> Task:
        self.check_split(split)
        task = self.family.sample(seed, split)
        task.lr_scale, task.hide_horizon = self.draws(seed, split)
        return task
