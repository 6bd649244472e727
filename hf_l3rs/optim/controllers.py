"""Controllers of the learned rate: the opt-in machinery around the meta-network's output,
behind one small protocol so that none of it is inline in the step (docs/adr/0003, 0004).

A step calls, in order: ``observe_probe`` (the base directions' norms are known, nothing has
moved), ``modulate`` (the network's rates in, the rates the step uses out) and
``observe_update`` (the coefficients are known, the weights are about to move). Each
controller keeps its own explicit state and saves it under its ``key`` in the optimizer's
``state_dict``.

- :class:`DistanceScale` (``step_scale="distance"|"distance_per_tensor"``): Prodigy's
  distance estimate d as the step-size scale, the network's rates relative to their
  first-step level modulating it.
- :class:`RateAdaptation` (``rate_adaptation="hypergradient"``): log a += β·(cos(g_t, m_{t−1})
  − target), per model or per tensor, clamped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from hf_l3rs.optim.config import L3RSConfig
from hf_l3rs.optim.distance import DistanceState, observe
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
    hyper: dict[str, dict[str, float]]
    sample_offset: int = 0  # which pages the sums of large tensors read (optim/sampling.py)


class RateController(Protocol):
    key: str

    def observe_probe(self, view: StepView) -> None: ...

    def modulate(self, rate: Tensor, active: list[int]) -> Tensor: ...

    def observe_update(self, view: StepView, multiplier: Tensor) -> None: ...

    def state(self) -> Any: ...

    def load(self, saved: Any, params: list[Tensor]) -> None: ...


class DistanceScale:
    """d × the network's modulation (docs/adr/0003-distance-scale.md)."""

    key = "distance"

    def __init__(self, config: L3RSConfig, n: int) -> None:
        self.scope = "model" if config.step_scale == "distance" else "component"
        self.estimate = DistanceState.fresh(n)

    def observe_probe(self, view: StepView) -> None:
        pass

    def modulate(self, rate: Tensor, active: list[int]) -> Tensor:
        est = self.estimate
        if est.reference is None:  # the network's level at the first step is d's unit
            est.reference = float(torch.exp(torch.log(rate.detach()[active]).mean()))
        return rate * (est.d / est.reference).to(rate)

    def observe_update(self, view: StepView, multiplier: Tensor) -> None:
        """Fold this step into the estimate (weights not yet moved), finite tensors only."""
        ok = [pos for pos, f in enumerate(view.finite.tolist()) if f]
        idx = [view.active[pos] for pos in ok]
        params = [view.params[j] for j in idx]
        d = self.estimate.d[idx]  # empty when no tensor is finite: observe then returns at once
        beta3 = math.sqrt(view.hyper.get("adam", {}).get("beta2", 0.999))
        observe(self.estimate, idx, params, [p.grad for p in params], d * d * multiplier[ok], beta3, self.scope)

    def state(self) -> dict[str, Any]:
        return self.estimate.to_dict()

    def load(self, saved: Any, params: list[Tensor]) -> None:
        self.estimate = DistanceState.from_dict(saved, params)


class RateAdaptation:
    """log a += β·(cos(g_t, m_{t−1}) − target), the cosine over all finite components
    concatenated (scope ``model``) or each component's own (scope ``component``; Adam's
    momentum before this step's update), clamped to [min, max]. A component without momentum
    yet (its first step) keeps its multiplier."""

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
        dot, g_all, m_all = float(dots[known].sum()), float(gg[known].sum()), float(mm[known].sum())
        if not (g_all > 0 and m_all > 0 and math.isfinite(dot)):
            return  # the first step (no momentum yet) or nothing to compare
        low, high = math.log(cfg.adaptation_min), math.log(cfg.adaptation_max)
        if cfg.adaptation_scope == "model":
            agreement = max(-1.0, min(1.0, dot / math.sqrt(g_all * m_all)))
            step = cfg.hypergradient_rate * (agreement - cfg.adaptation_target)
            self.log_multiplier = (self.log_multiplier + step).clamp(low, high)
            return
        seen = known & (gg > 0) & (mm > 0)
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

    def observe_update(self, view: StepView, multiplier: Tensor) -> None:
        pass

    def state(self) -> Tensor:
        return self.log_multiplier.clone()

    def load(self, saved: Any, params: list[Tensor]) -> None:
        # a float in states saved before per-tensor adaptation
        self.log_multiplier = torch.as_tensor(saved, dtype=torch.float64).cpu().expand(len(params)).clone()


def controllers_for(config: L3RSConfig, n: int) -> list[RateController]:
    """The controllers a config switches on, in the order they scale the rate."""
    out: list[RateController] = []
    if config.step_scale != "base_lr":
        out.append(DistanceScale(config, n))
    if config.rate_adaptation != "none":
        out.append(RateAdaptation(config, n))
    return out
