"""Agreement variants of the rate adaptation, patched into RateAdaptation for probes."""

import math
import os

import torch

from hf_l3rs.optim import controllers as C
from hf_l3rs.optim import l3rs as L

MODE = {"mode": "m"}
#: what each mode changes, for the headers of generated tables
MODES = {
    "m": "agreement of successive momenta (the shipped rule)",
    "u": "agreement against Adam's preconditioned direction m/(√v + ε), Adam-HD's hypergradient",
    "snr": "its target scaled by each tensor's gradient signal fraction, ADR 0015",
    "earned": "the multiplier as a^f, f = the share of the first training loss still left "
    "(EMA 0.9, bias-corrected, in [0, 1]): a rate above the network's must be earned by loss left, ADR 0017",
}
_orig = C.RateAdaptation.observe_probe


def _u_observe(self, view):
    """``MODE["mode"] = "u"``: the agreement against Adam's preconditioned direction."""
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
        u = m / (v.sqrt() + 1e-8)  # Adam-HD: the previous Adam direction m/(sqrt v + eps)
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


#: β1 of the ‖g‖² EMA and of the momentum model in the signal estimate below
SIGNAL_BETA1 = 0.9


def _snr_observe(self, view):
    """``MODE["mode"] = "snr"``: the target scaled by the gradient's signal fraction f = |μ|²/E‖g‖²,
    estimated per tensor from Adam's momentum (|m̂|² ≈ |μ|² + c·σ², c = (1 − β1)/(1 + β1)) and an
    EMA of ‖g‖² with the same β1: noise-dominated gradients cannot reach the target's agreement."""
    cfg = self.config
    n_all = self.log_multiplier.numel()
    if not hasattr(self, "_gg_ema"):
        self._gg_ema = torch.zeros(n_all, dtype=torch.float64)
        self._gg_steps = torch.zeros(n_all, dtype=torch.float64)
    finite = view.finite
    gg = view.gnorm.to(torch.float64) ** 2
    b = SIGNAL_BETA1
    idx_all = torch.tensor(view.active, dtype=torch.long)
    if view.agreement is not None:
        dots, mm = view.agreement[:, 0], view.agreement[:, 1]
    else:
        dots, mm = self._agreement(view)
    known = finite & torch.isfinite(dots) & torch.isfinite(mm)
    seen = known & (gg > 0) & (mm > 0)
    # signal fraction from the EMA so far (before this gradient enters it), m_{t-1} bias-corrected
    k = self._gg_steps[idx_all]
    s_g = self._gg_ema[idx_all] / (1 - b**k).clamp_min(1e-12)
    m_hat2 = mm / (1 - b**k).clamp_min(1e-12) ** 2
    c = (1 - b) / (1 + b)
    mu2 = ((m_hat2 - c * s_g) / (1 - c)).clamp_min(0)
    frac = torch.where(s_g > 0, (mu2 / s_g.clamp_min(1e-300)).clamp(0, 1), torch.zeros_like(s_g))
    upd = finite & (gg > 0)
    self._gg_ema[idx_all[upd]] = b * self._gg_ema[idx_all[upd]] + (1 - b) * gg[upd]
    self._gg_steps[idx_all[upd]] += 1
    seen = seen & (k > 0)
    if not bool(seen.any()):
        return
    low, high = math.log(cfg.adaptation_min), math.log(cfg.adaptation_max)
    cos = (dots[seen] / torch.sqrt(gg[seen] * mm[seen]).clamp_min(1e-300)).clamp(-1, 1)
    idx = idx_all[seen]
    change = cfg.hypergradient_rate * (cos - cfg.adaptation_target * frac[seen])
    self.log_multiplier[idx] = (self.log_multiplier[idx] + change).clamp(low, high)
    if os.environ.get("SNR_DEBUG"):
        print("frac", [round(float(x), 3) for x in frac[seen][:6]])


#: the modes that move the multiplier differently; the others ("m", and "earned", which changes how
#: the multiplier is used, not how it moves) run the shipped rule
_OBSERVERS = {"u": _u_observe, "snr": _snr_observe}


def _dispatch(self, view):
    return _OBSERVERS.get(MODE["mode"], _orig)(self, view)


C.RateAdaptation.observe_probe = _dispatch

#: β of the training-loss EMA of the ``earned`` mode (the network's middle loss feature's)
LOSS_BETA = 0.9
_update = L.L3RS._update
_modulate = C.RateAdaptation.modulate


def _update_tracking_loss(self, active, loss, loss_finite):
    """``MODE["mode"] = "earned"``: each controller learns f = EMA(loss) / first loss in [0, 1]."""
    if MODE["mode"] == "earned" and loss_finite:
        st = self.__dict__.setdefault("_loss_left", {"first": float(loss), "ema": 0.0, "n": 0})
        st["n"] += 1
        st["ema"] = LOSS_BETA * st["ema"] + (1 - LOSS_BETA) * float(loss)
        left = st["ema"] / (1 - LOSS_BETA ** st["n"]) / st["first"] if st["first"] > 0 else 1.0
        for c in self._controllers:
            c.loss_left = min(1.0, max(0.0, left))
    return _update(self, active, loss, loss_finite)


def _earned_modulate(self, rate, active):
    if MODE["mode"] != "earned":
        return _modulate(self, rate, active)
    return rate * torch.exp(self.log_multiplier * getattr(self, "loss_left", 1.0)).to(rate)


L.L3RS._update = _update_tracking_loss
C.RateAdaptation.modulate = _earned_modulate


#: β of the gradient-norm EMA of the ``gscale`` modes (the network's middle gradient feature's)
GRAD_BETA = 0.9


def _track_gradient_scale(self, view):
    """E_t = EMA(‖g‖) per tensor (bias-corrected) and its running maximum; ``self.grad_left`` =
    E_t / max_s E_s in (0, 1]: how much of its largest gradient a tensor still has."""
    n_all = self.log_multiplier.numel()
    if not hasattr(self, "_g_ema"):
        self._g_ema = torch.zeros(n_all, dtype=torch.float64)
        self._g_n = torch.zeros(n_all, dtype=torch.float64)
        self._g_peak = torch.zeros(n_all, dtype=torch.float64)
        self.grad_left = torch.ones(n_all, dtype=torch.float64)
    idx = torch.tensor(view.active, dtype=torch.long)
    g = view.gnorm.to(torch.float64)
    ok = view.finite & torch.isfinite(g) & (g > 0)
    i = idx[ok]
    b = GRAD_BETA
    self._g_ema[i] = b * self._g_ema[i] + (1 - b) * g[ok]
    self._g_n[i] += 1
    e = self._g_ema[i] / (1 - b ** self._g_n[i])
    self._g_peak[i] = torch.maximum(self._g_peak[i], e)
    self.grad_left[i] = e / self._g_peak[i]


def _dispatch_scaled(self, view):
    if MODE["mode"].startswith("gscale"):
        _track_gradient_scale(self, view)
    return _dispatch(self, view)


def _scaled_modulate(self, rate, active):
    mode = MODE["mode"]
    left = getattr(self, "grad_left", None)
    if mode == "gscale" and left is not None:  # the whole rate shrinks with the gradient it has left
        return _earned_modulate(self, rate, active) * left.to(rate)
    if mode == "gscale-adapt" and left is not None:  # only the adaptation's multiplier does: a^(left)
        return rate * torch.exp(self.log_multiplier * left).to(rate)
    return _earned_modulate(self, rate, active)


MODES["gscale"] = (
    "the rate times E_t / max_s E_s, E = EMA 0.9 of the tensor's gradient norm (bias-corrected): "
    "a step shrinks with the share of its largest gradient a tensor still has"
)
MODES["gscale-adapt"] = "the adaptation's multiplier as a^(E_t / max_s E_s), E as in gscale"

#: DoG's defaults (the ``dog-optimizer`` package's): r_ε = REPS_REL·(1 + ‖x_0‖), ε in the sum
DOG_REPS_REL, DOG_EPS = 1e-6, 1e-8


def _dog_observe(self, view):
    """``dog``/``ldog`` (ADR 0020): keep x_0, the largest distance from it and Σ‖g‖² per tensor
    (the weights before this step moves them); the rate adaptation does not move."""
    n_all = self.log_multiplier.numel()
    if not hasattr(self, "_dog_x0"):
        self._dog_x0 = {}
        self._dog_r = torch.zeros(n_all, dtype=torch.float64)
        self._dog_x0norm = torch.zeros(n_all, dtype=torch.float64)
        self._dog_gsum = torch.zeros(n_all, dtype=torch.float64)
        self._dog_g = torch.zeros(n_all, dtype=torch.float64)
        self._dog_d = torch.zeros(n_all, dtype=torch.float64)
    g = view.gnorm.to(torch.float64)
    for pos, j in enumerate(view.active):
        if not bool(view.finite[pos]):
            continue
        p = view.params[j].detach()
        if j not in self._dog_x0:
            self._dog_x0[j] = p.clone()
            self._dog_x0norm[j] = float(p.norm())
        self._dog_d[j] = float((p - self._dog_x0[j]).norm())
        self._dog_r[j] = max(float(self._dog_r[j]), float(self._dog_d[j]))
        self._dog_gsum[j] += float(g[pos]) ** 2
        self._dog_g[j] = float(g[pos])


def _dog_rates(self, rate):
    """The per-element rates: DoG's step RMS η·‖g_l‖/√n_l times the network's relative rate."""
    numel = torch.tensor([float(p.numel()) for p in self._dog_params], dtype=torch.float64)
    seen = self._dog_gsum > 0
    if MODE["mode"] == "ldog":
        r = torch.maximum(self._dog_r, DOG_REPS_REL * (1 + self._dog_x0norm))
        eta = r / torch.sqrt(self._dog_gsum + DOG_EPS)
    else:
        x0 = float(torch.sqrt((self._dog_x0norm[seen] ** 2).sum()))
        dist = float(torch.sqrt((self._dog_d[seen] ** 2).sum()))  # the whole model's distance from x_0
        self._dog_rbar = max(getattr(self, "_dog_rbar", 0.0), dist, DOG_REPS_REL * (1 + x0))
        eta = torch.full_like(self._dog_gsum, self._dog_rbar / math.sqrt(float(self._dog_gsum.sum()) + DOG_EPS))
    dog = torch.where(seen, eta * self._dog_g / numel.sqrt(), torch.zeros_like(eta))
    if MODE["mode"] == "dog-plain":  # DoG's step norms as they are: the network picks only the mix
        return dog.to(rate)
    if not hasattr(self, "_dog_geo0"):
        self._dog_geo0 = float(torch.exp(torch.log(rate.detach().double().clamp_min(1e-30)).mean()))
    return (rate / self._dog_geo0) * dog.to(rate)


DOG_MODES = ("dog", "ldog", "dog-plain")


def output_layer(params) -> list[int]:
    """The output layer's tensors among ``params`` (model order): the last 2-D tensor and a 1-D
    tensor after it with as many elements as its rows (its bias)."""
    two_d = [j for j, p in enumerate(params) if p.dim() == 2]
    if not two_d:
        return []
    w = two_d[-1]
    out = [w]
    if w + 1 < len(params) and params[w + 1].dim() == 1 and params[w + 1].numel() == params[w].shape[0]:
        out.append(w + 1)
    return out


def _body_only(self, rate):
    """``body-only``: the adaptation's multiplier of the output layer held at 1."""
    if not hasattr(self, "_head_idx"):
        return rate * torch.exp(self.log_multiplier).to(rate)
    log_a = self.log_multiplier.clone()
    log_a[self._head_idx] = 0.0
    return rate * torch.exp(log_a).to(rate)


def _dispatch_all(self, view):
    if MODE["mode"] == "body-only" and not hasattr(self, "_head_idx"):
        self._head_idx = torch.tensor(output_layer(view.params), dtype=torch.long)
    if MODE["mode"] in DOG_MODES:
        self._dog_params = view.params
        return _dog_observe(self, view)
    return _dispatch_scaled(self, view)


def _modulate_all(self, rate, active):
    if MODE["mode"] == "body-only":
        return _body_only(self, rate)
    if MODE["mode"] in DOG_MODES:
        return _dog_rates(self, rate) if hasattr(self, "_dog_params") else rate * 0
    return _scaled_modulate(self, rate, active)


MODES["dog"] = (
    "DoG's scale (ADR 0020): per-element rate η·‖g_l‖/√n_l, η = r̄/√(Σ‖g‖² + ε) over the model, times "
    "the network's rate ÷ its first-step geometric mean; the adaptation off"
)
MODES["ldog"] = "as dog with L-DoG's η_l per tensor (ADR 0020)"
MODES["body-only"] = "the adaptation on every tensor but the output layer (its multiplier held at 1), ADR 0021"
MODES["dog-plain"] = "DoG's per-tensor step norms as they are, the network choosing only the direction mix (ADR 0020)"
C.RateAdaptation.observe_probe = _dispatch_all
C.RateAdaptation.modulate = _modulate_all
