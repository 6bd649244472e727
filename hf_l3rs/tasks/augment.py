"""Task augmentations for meta-training (docs/design.md §3, docs/adr/0006 "Models whose
good rates differ"): a hidden rate multiplier, a hidden horizon and a shifted input domain.

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

**Domain shift.** A share of image tasks sees its images (train and held-out alike) through a
seeded photometric transform: a gamma curve, inversion (dark backgrounds, as photographs of
objects have where the rendered domains are white), a permutation of the colour channels and
a contrast change, so a checkpoint meets inputs unlike its pretraining. Measured as a member
(docs/adr/0006 "Photograph-like tasks in the mixture"): it lowers the held-out losses on
unseen images but does not carry their accuracy gap, which easy tasks on a checkpoint from
another domain do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from hf_l3rs.seeding import task_seed
from hf_l3rs.tasks.base import Task, TaskFamily, template_task


class AugmentedFamily(TaskFamily):
    """``family``'s tasks, each with ``task.lr_scale`` = r (log r ~ U(−log f, log f), f =
    ``rate_jitter``) and ``task.hide_horizon`` true with probability ``horizon_free``; both
    seeded by the task, so every process and every candidate sees the same task."""

    def __init__(
        self, family: TaskFamily, rate_jitter: float = 1.0, horizon_free: float = 0.0, domain_shift: float = 0.0
    ) -> None:
        if not (isinstance(rate_jitter, (int, float)) and math.isfinite(rate_jitter) and rate_jitter >= 1):
            raise ValueError(f"rate_jitter must be a finite number >= 1 (the largest multiplier), got {rate_jitter!r}")
        if not (isinstance(horizon_free, (int, float)) and 0 <= horizon_free <= 1):
            raise ValueError(f"horizon_free must be a fraction in [0, 1], got {horizon_free!r}")
        if not (isinstance(domain_shift, (int, float)) and 0 <= domain_shift <= 1):
            raise ValueError(f"domain_shift must be a fraction in [0, 1], got {domain_shift!r}")
        if domain_shift > 0:
            from hf_l3rs.tasks.images import ImageTaskFamily

            if not isinstance(family, ImageTaskFamily):
                raise ValueError(f"domain_shift applies to image families, not {type(family).__name__}")
        self.family, self.rate_jitter, self.horizon_free = family, float(rate_jitter), float(horizon_free)
        self.domain_shift = float(domain_shift)
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
        shift = self.shift(seed, split, task.train_x.shape[1]) if self.domain_shift > 0 else None
        if shift is not None:
            task.train_x, task.eval_x, task.domain_shift = shift(task.train_x), shift(task.eval_x), shift
        return task

    def template_task(self) -> Task:
        return template_task(self.family)

    def shift(self, seed: int, split: str, channels: int) -> PhotometricShift | None:
        """Task ``seed``'s input transform (None for the unshifted share); its own generator, so
        the other draws are those of a family without ``domain_shift``."""
        g = torch.Generator().manual_seed(task_seed(f"{self.name}/shift", split, seed))
        if float(torch.rand((), generator=g, dtype=torch.float64)) >= self.domain_shift:
            return None
        return PhotometricShift.draw(g, channels)


@dataclass(frozen=True)
class PhotometricShift:
    """One task's input transform, on images normalised as ``(p − 0.5) / 0.25`` for pixel
    values p in [0, 1] (tasks/images.py ``decode_image``): p ↦ p^gamma, then 1 − p if
    ``invert``, channels reordered by ``channels``, the normalised image scaled by ``contrast``."""

    gamma: float
    invert: bool
    channels: tuple[int, ...]
    contrast: float

    GAMMA = 2.5  # gamma log-uniform in [1/2.5, 2.5]
    CONTRAST = 2.0  # contrast log-uniform in [1/2, 2]

    @classmethod
    def draw(cls, g: torch.Generator, num_channels: int) -> PhotometricShift:
        u = torch.rand(3, generator=g, dtype=torch.float64).tolist()
        return cls(
            gamma=math.exp((2 * u[0] - 1) * math.log(cls.GAMMA)),
            invert=u[1] < 0.5,
            channels=tuple(torch.randperm(num_channels, generator=g).tolist()),
            contrast=math.exp((2 * u[2] - 1) * math.log(cls.CONTRAST)),
        )

    def __call__(self, x: Tensor) -> Tensor:
        p = (x * 0.25 + 0.5).clamp(0.0, 1.0) ** self.gamma
        if self.invert:
            p = 1.0 - p
        return ((p[:, list(self.channels)] - 0.5) / 0.25) * self.contrast
