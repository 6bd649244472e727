"""Controllers of the learned rate: the opt-in machinery around the meta-network's output,
behind one small protocol so that none of it is inline in the step (docs/adr/0003, 0004).

A step calls, in order: ``observe_probe`` (the base directions' norms are known, nothing has
moved) and ``modulate`` (the network's rates in, the rates the step uses out). Each
controller keeps its own explicit state and saves it under its ``key`` in the optimizer's
``state_dict``.

- :class:`RateAdaptation` (``hypergradient_rate`` > 0): log a += β·(cos(g_t, m_{t−1}) − target)
  per tensor, clamped. (Prodigy's distance estimate as a step-size scale was a second
  controller; it lost on the dev split and went, docs/adr/0014.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from hf_l3rs.optim.config import L3RSConfig
from hf_l3rs.optim.sampling import adam_sums, estimates, is_sampled


@dataclass
class StepView:
    """What a controller may read of one step: all components' tensors and torch's per-tensor
    state, the active components and which of them are finite, the probe's norms."""

    params: list[Tensor]
    state: Any
    active: list[int]
    finite: Tensor  # bool [len(active)]
    gnorm: Tensor  # float64 [len(active)]
    agreement: Tensor | None  # [len(active), 2]: g·m and |m|² (Adam's momentum) where the backend computed them
    sample_offset: int = 0  # which pages the sums of large tensors read (optim/sampling.py)


class RateController(Protocol):
    key: str

    def observe_probe(self, view: StepView) -> None: ...

    def modulate(self, rate: Tensor, active: list[int]) -> Tensor: ...

    def state(self) -> Any: ...

    def load(self, saved: Any, params: list[Tensor]) -> None: ...


class RateAdaptation:
    """log a += β·(cos(g_t, m_{t−1}) − target) per component, each from its own cosine (Adam's
    momentum before this step's update; one cosine for the whole model lost on the dev split,
    docs/adr/0014), clamped to [min, max]. A component without momentum yet (its first step)
    keeps its multiplier."""

    key = "log_adapt"

    def __init__(self, config: L3RSConfig, n: int) -> None:
        self.config = config
        self.log_multiplier = torch.zeros(n, dtype=torch.float64)

    def observe_probe(self, view: StepView) -> None:
        cfg = self.config
        finite = view.finite
        if not bool(finite.any()):
            return
        gg = view.gnorm.to(torch.float64) ** 2
        if view.agreement is not None and cfg.momentum_direction == "adam":  # from the backend's probe
            dots, mm = view.agreement[:, 0], view.agreement[:, 1]
        else:
            dots, mm = self._agreement(view)
        # NaN: not finite, or a sampled tensor whose sample saw no gradient (optim/sampling.py)
        known = finite & torch.isfinite(dots) & torch.isfinite(mm)
        seen = known & (gg > 0) & (mm > 0)  # not the first step (no momentum yet) nor a zero gradient
        if not bool(seen.any()):
            return
        low, high = math.log(cfg.adaptation_min), math.log(cfg.adaptation_max)
        cos = (dots[seen] / torch.sqrt(gg[seen] * mm[seen]).clamp_min(1e-300)).clamp(-1.0, 1.0)
        idx = torch.tensor(view.active, dtype=torch.long)[seen]
        change = cfg.hypergradient_rate * (cos - cfg.adaptation_target)
        self.log_multiplier[idx] = (self.log_multiplier[idx] + change).clamp(low, high)

    def _agreement(self, view: StepView) -> tuple[Tensor, Tensor]:
        """g·m and |m|² per active component (NaN where not finite), computed here: the sampling
        rule on large tensors (optim/sampling.py), exact sums on the others."""
        n = len(view.active)
        dots = torch.full((n,), math.nan, dtype=torch.float64)
        mm = torch.full((n,), math.nan, dtype=torch.float64)
        ok = [pos for pos, f in enumerate(view.finite.tolist()) if f]
        params = [view.params[view.active[pos]] for pos in ok]
        moms = [view.state[p][f"{self.config.momentum_direction}.exp_avg"] for p in params]
        grads = [p.grad.to(m.dtype) for p, m in zip(params, moms)]  # float16 grads, float32 state
        if ok:
            at = torch.tensor(ok, dtype=torch.long)
            dots[at] = torch.stack([torch.vdot(g.reshape(-1), m.reshape(-1)) for g, m in zip(grads, moms)]).to(
                "cpu", torch.float64
            )
            mm[at] = torch.stack(torch._foreach_norm(moms)).to("cpu", torch.float64) ** 2
        for pos, p, g, m in zip(ok, params, grads, moms):
            if is_sampled(p.numel()):
                sums = adam_sums(p, None, g, m, view.sample_offset)[None].cpu()
                gg = view.gnorm[pos : pos + 1].to(torch.float64) ** 2
                dots[pos], mm[pos] = estimates(torch.tensor([float(p.numel())]), gg, sums)[1][0]
        return dots, mm

    def modulate(self, rate: Tensor, active: list[int]) -> Tensor:
        return rate * torch.exp(self.log_multiplier).to(rate)

    def state(self) -> Tensor:
        return self.log_multiplier.clone()

    def load(self, saved: Any, params: list[Tensor]) -> None:
        # a float in states saved before per-tensor adaptation
        self.log_multiplier = torch.as_tensor(saved, dtype=torch.float64).cpu().expand(len(params)).clone()


def controllers_for(config: L3RSConfig, n: int) -> list[RateController]:
    """The controllers a config switches on, in the order they scale the rate."""
    out: list[RateController] = []
    if config.adapts:
        out.append(RateAdaptation(config, n))
    return out
