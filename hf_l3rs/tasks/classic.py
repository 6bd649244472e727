"""Classic objective families from the source documents (Li & Malik's random linear
regression, logistic regression and small neural nets; Rosenbrock from "Reverse
engineering learned optimizers"). Tiny, so meta-training on them takes seconds."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from hf_l3rs.seeding import task_seed
from hf_l3rs.tasks.base import Task, TaskFamily


class _SupervisedTask(Task):
    """Minibatches of a fixed training pool; evaluation on a held-out pool."""

    def __init__(
        self,
        seed: int,
        num_steps: int,
        x: Tensor,
        y: Tensor,
        x_eval: Tensor,
        y_eval: Tensor,
        batch_size: int,
        model_fn,
        loss_fn,
        accuracy_fn,
    ) -> None:
        self.seed, self.num_steps = seed, num_steps
        self.x, self.y, self.x_eval, self.y_eval = x, y, x_eval, y_eval
        self.batch_size = batch_size
        self._model_fn, self._loss_fn, self._accuracy_fn = model_fn, loss_fn, accuracy_fn

    def init_model(self) -> nn.Module:
        torch.manual_seed(self.seed % (2**31))
        return self._model_fn()

    def train_batch(self, step: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed((self.seed + 7919 * (step + 1)) % (2**63))
        idx = torch.randint(0, len(self.x), (self.batch_size,), generator=g)
        return self.x[idx], self.y[idx]

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        x, y = batch
        return self._loss_fn(model(x), y)

    def evaluate(self, model: nn.Module) -> tuple[float, float | None]:
        out = model(self.x_eval)
        acc = self._accuracy_fn(out, self.y_eval) if self._accuracy_fn else None
        return float(self._loss_fn(out, self.y_eval)), acc


class _Family(TaskFamily):
    def __init__(self, k_min: int = 20, k_max: int = 50, batch_size: int = 32) -> None:
        if not 0 < k_min <= k_max:
            raise ValueError(f"{self.name}: need 0 < k_min <= k_max, got {k_min}, {k_max}")
        self.k_min, self.k_max, self.batch_size = k_min, k_max, batch_size

    def _setup(self, seed: int, split: str) -> tuple[int, torch.Generator, int]:
        self.check_split(split)
        s = task_seed(self.name, split, seed)
        g = torch.Generator().manual_seed(s)
        steps = int(torch.randint(self.k_min, self.k_max + 1, (1,), generator=g))
        return s, g, steps

    def _task(self, seed: int, steps: int, x: Tensor, y: Tensor, model_fn, loss_fn, accuracy_fn) -> Task:
        """First half of the pool trains, second half evaluates."""
        half = len(x) // 2
        return _SupervisedTask(
            seed, steps, x[:half], y[:half], x[half:], y[half:], self.batch_size, model_fn, loss_fn, accuracy_fn
        )


class LinearRegression(_Family):
    """y = X·w* + noise with randomly scaled input features (ill-conditioned)."""

    name = "linear_regression"

    def __init__(self, dim: int = 8, **kw: Any) -> None:
        super().__init__(**kw)
        self.dim = dim

    def sample(self, seed: int, split: str = "train") -> Task:
        s, g, steps = self._setup(seed, split)
        scale = torch.exp(torch.randn(self.dim, generator=g))
        w = torch.randn(self.dim, 1, generator=g)
        x = torch.randn(512, self.dim, generator=g) * scale
        y = x @ w + 0.1 * torch.randn(512, 1, generator=g)
        return self._task(s, steps, x, y, lambda: nn.Linear(self.dim, 1), nn.functional.mse_loss, None)


def _binary_accuracy(out: Tensor, y: Tensor) -> float:
    return float(((out > 0).float() == y).float().mean())


def _accuracy(out: Tensor, y: Tensor) -> float:
    return float((out.argmax(1) == y).float().mean())


class LogisticRegression(_Family):
    """Two Gaussian classes with random means and scales; a linear classifier."""

    name = "logistic_regression"

    def __init__(self, dim: int = 8, **kw: Any) -> None:
        super().__init__(**kw)
        self.dim = dim

    def sample(self, seed: int, split: str = "train") -> Task:
        s, g, steps = self._setup(seed, split)
        mean = torch.randn(self.dim, generator=g) * 0.7
        scale = torch.exp(0.5 * torch.randn(self.dim, generator=g))
        y = (torch.rand(512, 1, generator=g) < 0.5).float()
        x = (torch.randn(512, self.dim, generator=g) + (2 * y - 1) * mean) * scale
        return self._task(
            s,
            steps,
            x,
            y,
            lambda: nn.Linear(self.dim, 1),
            nn.functional.binary_cross_entropy_with_logits,
            _binary_accuracy,
        )


def two_moons(n: int, noise: float, g: torch.Generator) -> tuple[Tensor, Tensor]:
    y = torch.randint(0, 2, (n,), generator=g)
    t = torch.rand(n, generator=g) * math.pi
    upper = torch.stack([torch.cos(t), torch.sin(t)], 1)
    lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1)
    x = torch.where(y[:, None] == 0, upper, lower) + noise * torch.randn(n, 2, generator=g)
    return x, y


class TwoMoonsMLP(_Family):
    """Two-moons classification (random noise level and rotation) with a 2-16-16-2 MLP."""

    name = "two_moons_mlp"

    def sample(self, seed: int, split: str = "train") -> Task:
        s, g, steps = self._setup(seed, split)
        x, y = two_moons(512, float(0.05 + 0.2 * torch.rand(1, generator=g)), g)
        angle = float(torch.rand(1, generator=g)) * 2 * math.pi
        rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        x = x @ rot

        def model() -> nn.Module:
            return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))

        return self._task(s, steps, x, y, model, nn.functional.cross_entropy, _accuracy)


class _RosenbrockModel(nn.Module):
    def __init__(self, start: Tensor) -> None:
        super().__init__()
        self.xy = nn.Parameter(start.clone())


class _RosenbrockTask(Task):
    def __init__(self, seed: int, num_steps: int, start: Tensor, a: float, b: float) -> None:
        self.seed, self.num_steps, self.start, self.a, self.b = seed, num_steps, start, a, b

    def init_model(self) -> nn.Module:
        return _RosenbrockModel(self.start)

    def train_batch(self, step: int) -> None:
        return None

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        x, y = model.xy[0], model.xy[1]
        # log(1 + f): the raw function spans 6 orders of magnitude across starts.
        return torch.log1p((self.a - x) ** 2 + self.b * (y - x**2) ** 2)

    def evaluate(self, model: nn.Module) -> tuple[float, float | None]:
        return float(self.loss(model, None)), None


class Rosenbrock(_Family):
    """log(1 + Rosenbrock) from a random start, a in [0.5, 1.5], b = 100."""

    name = "rosenbrock"

    def sample(self, seed: int, split: str = "train") -> Task:
        s, g, steps = self._setup(seed, split)
        start = torch.rand(2, generator=g) * torch.tensor([4.0, 4.0]) - torch.tensor([2.0, 1.0])
        a = float(0.5 + torch.rand(1, generator=g))
        return _RosenbrockTask(s, steps, start, a, 100.0)


class Mixture(TaskFamily):
    """Tasks drawn from several families, the family chosen by the seed."""

    def __init__(self, families: list[TaskFamily]) -> None:
        if not families:
            raise ValueError("Mixture needs at least one family")
        self.families = families
        self.name = "+".join(f.name for f in families)

    def sample(self, seed: int, split: str = "train") -> Task:
        return self.families[seed % len(self.families)].sample(seed // len(self.families), split)


CLASSIC_FAMILIES = {cls.name: cls for cls in (LinearRegression, LogisticRegression, TwoMoonsMLP, Rosenbrock)}


def classic_family(name: str, **kwargs: Any) -> TaskFamily:
    """A classic family by name; ``a+b`` makes a mixture."""
    parts = name.split("+")
    for part in parts:
        if part not in CLASSIC_FAMILIES:
            raise ValueError(f"unknown task family {part!r}; known: {sorted(CLASSIC_FAMILIES)}")
    if len(parts) == 1:
        return CLASSIC_FAMILIES[name](**kwargs)
    return Mixture([CLASSIC_FAMILIES[p](**kwargs) for p in parts])
