"""Natural Evolution Strategies with antithetic sampling and Adam on θ (docs/design.md §2).

Evosax-style: a strategy is a pure object with explicit, saveable state and two verbs.
``ask`` makes the population from the state; ``tell`` turns fitnesses into the next state.
Noise is regenerated from (seed, generation, pair index), so only fitnesses need to travel
between processes, and it knows nothing about how fitness was computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from hf_l3rs.meta.shaping import centered_rank
from hf_l3rs.seeding import hash_seed


@dataclass(frozen=True)
class NESParams:
    """Hyper-parameters of the strategy (not of L3RS)."""

    popsize: int = 32
    sigma: float = 0.01
    learning_rate: float = 3e-3
    decay_every: float = 500.0  # λ and σ halve smoothly every this many generations
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.popsize < 2 or self.popsize % 2:
            raise ValueError(f"NESParams.popsize must be even and >= 2 (antithetic pairs), got {self.popsize}")
        if not self.sigma > 0:
            raise ValueError(f"NESParams.sigma must be > 0, got {self.sigma}")
        if not self.learning_rate > 0:
            raise ValueError(f"NESParams.learning_rate must be > 0, got {self.learning_rate}")
        if not self.decay_every > 0:
            raise ValueError(f"NESParams.decay_every must be > 0, got {self.decay_every}")


@dataclass(frozen=True)
class NESState:
    """Everything needed to continue exactly: θ, Adam moments, generation."""

    theta: Tensor
    adam_m: Tensor
    adam_v: Tensor
    generation: int = 0

    def tensors(self) -> dict[str, Tensor]:
        return {"theta": self.theta, "adam_m": self.adam_m, "adam_v": self.adam_v}


class NES:
    """Antithetic NES; fitness is maximised.

    ``scales`` (optional, one positive number per coordinate) multiplies both the noise and
    the step of each coordinate: the search runs on φ with θ = θ₀ + scales·(φ − φ₀). A few
    coordinates with a global effect (a base direction's β1 among thousands of MLP weights)
    need it: at the common σ their perturbation does not change the fitness measurably, and
    Adam moves every coordinate by at most λ per generation.
    """

    def __init__(
        self,
        params: NESParams,
        shaping: Callable[[Tensor], Tensor] = centered_rank,
        scales: Tensor | None = None,
    ) -> None:
        self.params = params
        self.shaping = shaping
        if scales is not None:
            scales = scales.detach().to(torch.float64).reshape(-1)
            if not bool((scales > 0).all()) or not bool(torch.isfinite(scales).all()):
                raise ValueError("NES scales must be finite and > 0")
        self.scales = scales

    def _scaled(self, eps: Tensor) -> Tensor:
        if self.scales is None:
            return eps
        if self.scales.numel() != eps.numel():
            raise ValueError(f"NES scales have {self.scales.numel()} entries, θ has {eps.numel()}")
        return self.scales * eps

    def init(self, theta: Tensor) -> NESState:
        theta = theta.detach().to(torch.float64).clone()
        return NESState(theta, torch.zeros_like(theta), torch.zeros_like(theta), 0)

    def schedule(self, generation: int) -> tuple[float, float]:
        """(meta-learning rate, σ) at a generation: ×0.5 every ``decay_every``, smoothly."""
        factor = 0.5 ** (generation / self.params.decay_every)
        return self.params.learning_rate * factor, self.params.sigma * factor

    def noise(self, generation: int, pair: int, dim: int) -> Tensor:
        g = torch.Generator().manual_seed(hash_seed(self.params.seed, generation, pair))
        return torch.randn(dim, generator=g, dtype=torch.float64)

    def ask(self, state: NESState) -> Tensor:
        """Population [P, D]: rows 2i and 2i+1 are θ + σε_i and θ − σε_i."""
        _, sigma = self.schedule(state.generation)
        rows = []
        for pair in range(self.params.popsize // 2):
            eps = self._scaled(self.noise(state.generation, pair, state.theta.numel()))
            rows += [state.theta + sigma * eps, state.theta - sigma * eps]
        return torch.stack(rows)

    def gradient(self, state: NESState, fitness: Tensor) -> Tensor:
        """ĝ = Σᵢ rᵢ εᵢ / (P σ) over the shaped fitnesses of the population (with respect
        to φ, the unscaled search coordinates)."""
        p = self.params.popsize
        if fitness.shape != (p,):
            raise ValueError(f"tell: expected {p} fitnesses, got shape {tuple(fitness.shape)}")
        _, sigma = self.schedule(state.generation)
        shaped = self.shaping(fitness)
        grad = torch.zeros_like(state.theta)
        for pair in range(p // 2):
            eps = self.noise(state.generation, pair, state.theta.numel())
            grad += (shaped[2 * pair] - shaped[2 * pair + 1]) * eps
        return grad / (p * sigma)

    def tell(self, state: NESState, fitness: Tensor) -> NESState:
        """Adam ascent step on θ with the estimated gradient."""
        grad = self.gradient(state, fitness.to(torch.float64).cpu())
        lr, _ = self.schedule(state.generation)
        b1, b2 = self.params.adam_betas
        t = state.generation + 1
        m = b1 * state.adam_m + (1 - b1) * grad
        v = b2 * state.adam_v + (1 - b2) * grad * grad
        step = lr * (m / (1 - b1**t)) / (torch.sqrt(v / (1 - b2**t)) + self.params.adam_eps)
        step = self._scaled(step)
        return replace(state, theta=state.theta + step, adam_m=m, adam_v=v, generation=t)
