"""One base direction as a hand-designed optimizer: ``p -= lr · d`` with fixed hyper-parameters.

Why: a direction L3RS mixes must also be a baseline a user could tune on its own (the
tuned benchmark's ``shampoo`` kind), so that a learned rule that uses it is compared with
it, not only with Adam and SGD (docs/adr/0006, "A whitened head direction"). It reuses
the direction's single-tensor formula, the one the tests check by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from hf_l3rs.optim.directions import get_direction


def closure_loss(closure: Callable[[], Any] | None) -> Any:
    """``closure()`` with autograd on (``step`` runs under ``no_grad``), or None: the
    prologue of a hand-designed optimizer's ``step`` (torch's convention)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class DirectionOptimizer(torch.optim.Optimizer):
    """``p -= lr · d`` with ``d`` the registered base direction ``direction`` (its hyper-parameters
    at their defaults unless given in ``hyper``)."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        direction: str = "shampoo",
        hyper: dict[str, float] | None = None,
    ) -> None:
        base = get_direction(direction)
        values = {name: spec.default for name, spec in base.hyper_defaults.items()}
        unknown = sorted(set(hyper or {}) - set(values))
        if unknown:
            raise ValueError(f"direction {direction!r} has no hyper-parameters {unknown}; it has {sorted(values)}")
        values.update(hyper or {})
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr!r}")
        super().__init__(params, {"lr": lr})
        self.direction, self.hyper = base, values

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = closure_loss(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state.update(self.direction.init_state(p))
                step = state["step"] + 1
                inner = {k: state[k] for k in self.direction.state_keys}
                d, new = self.direction.reference(p, p.grad, inner, self.hyper, step)
                if not bool(torch.isfinite(d).all()):
                    continue  # a non-finite gradient or preconditioner: skip, state untouched
                p.sub_(d, alpha=group["lr"])
                for k, v in new.items():
                    state[k] = v
                state["step"] = step
        return loss
