"""Agreement variants of the rate adaptation, patched into RateAdaptation for probes."""

import math

import torch

from hf_l3rs.optim import controllers as C

MODE = {"mode": "m"}
_orig = C.RateAdaptation.observe_probe


def observe_probe(self, view):
    if MODE["mode"] == "m":
        return _orig(self, view)
    cfg = self.config
    n = len(view.active)
    dots = torch.full((n,), math.nan, dtype=torch.float64)
    mm = torch.full((n,), math.nan, dtype=torch.float64)
    gg = torch.full((n,), math.nan, dtype=torch.float64)
    for pos, j in enumerate(view.active):
        if not bool(view.finite[pos]):
            continue
        p = view.params[j]
        st = view.state[p]
        m, v = st["adam.exp_avg"], st["adam.exp_avg_sq"]
        if MODE["mode"] == "u":  # Adam-HD: the previous Adam direction m/(sqrt v + eps)
            u = m / (v.sqrt() + 1e-8)
        g = p.grad
        dots[pos] = float(torch.vdot(g.reshape(-1), u.reshape(-1)))
        mm[pos] = float(u.pow(2).sum())
        gg[pos] = float(g.pow(2).sum())
    known = torch.isfinite(dots) & (gg > 0) & (mm > 0)
    if not bool(known.any()):
        return
    low, high = math.log(cfg.adaptation_min), math.log(cfg.adaptation_max)
    cos = (dots[known] / torch.sqrt(gg[known] * mm[known]).clamp_min(1e-300)).clamp(-1, 1)
    idx = torch.tensor(view.active, dtype=torch.long)[known]
    self.log_multiplier[idx] = (
        self.log_multiplier[idx] + cfg.hypergradient_rate * (cos - cfg.adaptation_target)
    ).clamp(low, high)


C.RateAdaptation.observe_probe = observe_probe
