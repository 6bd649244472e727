"""A readable, loop-per-component L3RS step, for parity tests against :class:`L3RS`.

It follows docs/design.md §1 line by line and shares only the meta-network (``L3RSNet``) and the
directions' ``reference`` formulas with the fast optimizer. Slow on purpose.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hf_l3rs.optim.components import Component
from hf_l3rs.optim.config import ROLES
from hf_l3rs.optim.directions import get_direction
from hf_l3rs.optim.network import L3RSNet
from hf_l3rs.optim.rule import FEATURE_EPS


def _sampled_mask(p: Tensor, t: int) -> Tensor:
    """Which elements of a contiguous ``p`` Adam's sums read at step ``t``: on tensors of at
    least 64 pages of 1024 elements, the pages whose index is t mod 8 (docs/adr/0012)."""
    index = torch.arange(p.numel()).reshape(p.shape)
    if p.numel() < 64 * 1024:
        return torch.ones_like(index, dtype=torch.bool)
    return (index // 1024) % 8 == t % 8


class ReferenceL3RS:
    """Same constructor shape as L3RS: groups of (params, lr, weight_decay)."""

    def __init__(
        self,
        groups: list[dict],
        net: L3RSNet,
        components: list[Component],
        total_steps: int | None,
        component_map: Tensor | None = None,
    ) -> None:
        self.groups = [{"lr": 1.0, "weight_decay": 0.0, **g} for g in groups]
        self.params = [p for g in self.groups for p in g["params"]]
        self.net = net
        self.cfg = net.config
        self.components = components
        self.total_steps = total_steps
        self.component_map = component_map if component_map is not None else torch.arange(len(self.params))
        self.t = 0
        self.state: list[dict] = [{} for _ in self.params]
        nb = len(self.cfg.ema_betas)
        self.ema = [[[0.0] * nb for _ in range(3)] for _ in self.params]
        self.ema_count = [0] * len(self.params)
        self.dirlog = [[0.0] * len(self.cfg.directions) for _ in self.params]
        self.log_adapt = [0.0] * len(self.params)

    def _features(self, j: int) -> list[float]:
        cfg = self.cfg
        row: list[float] = []
        for s in range(3):
            for b, beta in enumerate(cfg.ema_betas):
                c = self.ema_count[j]
                corr = 1 - beta**c if c > 0 else 1.0
                row.append(self.ema[j][s][b] / corr if corr > 0 else self.ema[j][s][b])
        r = cfg.relative_time_points
        for i in range(r):
            ref = i / (r - 1) if r > 1 else 0.0
            progress = self.t / self.total_steps if self.total_steps else 0.0  # horizon-free: t/T = 0
            row.append(math.tanh(cfg.relative_time_sharpness * (progress - ref)))
        for s in cfg.absolute_time_scales:
            row.append(math.tanh(self.total_steps / s) if self.total_steps else 1.0)
        row.extend(self.dirlog[j])
        if cfg.descriptor:
            comp = self.components[j]
            row.extend([1.0 if comp.role == role else 0.0 for role in ROLES])
            row.extend([comp.depth, math.log(max(comp.numel, 1))])
        return row

    def _adapt(self, agreement: dict[int, tuple[float, float, float]]) -> None:
        """log a += β·(cos − target), each component from its own cosine."""
        cfg = self.cfg
        low, high = math.log(cfg.adaptation_min), math.log(cfg.adaptation_max)
        for j, (dot, gg, mm) in agreement.items():
            if gg > 0 and mm > 0:
                cos = max(-1.0, min(1.0, dot / math.sqrt(gg * mm)))
                change = cfg.hypergradient_rate * (cos - cfg.adaptation_target)
                self.log_adapt[j] = max(low, min(high, self.log_adapt[j] + change))

    @torch.no_grad()
    def step(self, loss: float) -> None:
        cfg = self.cfg
        self.t += 1
        hyper = self.net.hyper_values()
        eps = FEATURE_EPS
        pending = {}
        agreement = {}  # rate adaptation: j -> (g_t·m_{t-1}, |g_t|², |m_{t-1}|²) of the finite components
        for j, p in enumerate(self.params):
            if p.grad is None:
                continue
            st = self.state[j]
            if not st:
                st["step"] = 0
                for dname in cfg.directions:
                    st[dname] = get_direction(dname).init_state(p)
            step = st["step"] + 1
            dirs, news = [], []
            for dname in cfg.directions:
                d, new = get_direction(dname).reference(p, p.grad, st[dname], hyper[dname], step)
                dirs.append(d)
                news.append(new)
            gnorm = float(torch.linalg.vector_norm(p.grad))
            dnorms = [float(torch.linalg.vector_norm(d)) for d in dirs]
            mask = _sampled_mask(p, self.t)
            if "adam" in cfg.directions and not bool(mask.all()):  # Adam's norm from the sampled pages
                d = dirs[cfg.directions.index("adam")].double()
                dd = float((d * d)[mask].sum())
                dnorms[cfg.directions.index("adam")] = math.sqrt(dd * p.numel() / int(mask.sum()))
            finite = math.isfinite(gnorm) and all(math.isfinite(x) for x in dnorms) and math.isfinite(loss)
            if finite:
                pnorm = float(torch.linalg.vector_norm(p))
                stats = [math.log(pnorm + eps), math.log(gnorm + eps), loss]
                for s in range(3):
                    for b, beta in enumerate(cfg.ema_betas):
                        self.ema[j][s][b] = beta * self.ema[j][s][b] + (1 - beta) * stats[s]
                self.ema_count[j] += 1
                self.dirlog[j] = [math.log(x + eps) for x in dnorms]
                pending[j] = (dirs, news, dnorms)
                if cfg.adapts:  # the sample's own cosine, scaled to ‖g‖²
                    g, m_prev = p.grad.double(), st[cfg.momentum_direction]["exp_avg"].double()
                    gg, gs = float((g * g).sum()), float((g * g)[mask].sum())
                    if bool(mask.all()):
                        agreement[j] = (float((g * m_prev).sum()), gg, float((m_prev * m_prev).sum()))
                    elif gs > 0 or gg == 0:
                        w = gg / gs if gs > 0 else 0.0
                        gm, mm = float((g * m_prev)[mask].sum()), float((m_prev * m_prev)[mask].sum())
                        agreement[j] = (w * gm, gg, w * mm)
        self._adapt(agreement)
        feats = torch.tensor([self._features(j) for j in range(len(self.params))], dtype=torch.float32)
        rate, mix = self.net(feats, self.component_map)
        group_of = [g for g in self.groups for _ in g["params"]]
        for j, (dirs, news, dnorms) in pending.items():
            p, group = self.params[j], group_of[j]
            eta = group["lr"] * float(rate[j])
            eta *= math.exp(self.log_adapt[j])
            update = torch.zeros_like(p)
            for k, d in enumerate(dirs):
                scale = dnorms[k] / math.sqrt(p.numel()) if cfg.norm == "rms" else dnorms[k]
                update += (eta * float(mix[j, k]) / (scale + 1e-12)) * d
            p.mul_(1 - eta * group["weight_decay"])
            p.sub_(update)
            for dname, new in zip(cfg.directions, news):
                for key, value in new.items():
                    self.state[j][dname][key] = value
            self.state[j]["step"] += 1
