"""The task interface shared by meta-training and evaluation (learned_optimization style:
a task knows its data, its initialisation and its loss; nothing about optimizers)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

#: Builds the optimizer for one task run: (model, total_steps) -> optimizer. total_steps is
#: None for a task that hides its horizon (tasks/augment.py; only learned optimizers meet one).
OptimizerFactory = Callable[[nn.Module, int | None], torch.optim.Optimizer]


class Task(ABC):
    """One fine-tuning problem, fully determined by its family and seed: the same seed gives
    every optimizer identical data, identical initial weights and the same horizon."""

    num_steps: int

    @abstractmethod
    def init_model(self) -> nn.Module:
        """A fresh model at the task's initial weights."""

    @abstractmethod
    def train_batch(self, step: int) -> Any:
        """The training batch of a step (deterministic)."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """Scalar training loss of ``model`` on ``batch``."""

    @abstractmethod
    def evaluate(self, model: nn.Module) -> tuple[float, float | None]:
        """(loss, accuracy or None) on the task's held-out evaluation batch."""


class TaskFamily(ABC):
    """A distribution over tasks; ``split`` keeps meta-train, validation and test apart."""

    name: str
    splits: tuple[str, ...] = ("train", "val", "test")

    @abstractmethod
    def sample(self, seed: int, split: str = "train") -> Task:
        """The task with this seed in this split."""

    def template_task(self) -> Task:
        """The task whose model defines a meta-trained network's components (their number,
        roles and depths): the first training task."""
        return self.sample(0, "train")

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; choose from {self.splits}")


def template_task(family: Any) -> Task:
    """``family.template_task()``, or the first training task of a family that only has
    ``sample`` (task families are duck-typed)."""
    method = getattr(family, "template_task", None)
    return method() if callable(method) else family.sample(0, "train")
