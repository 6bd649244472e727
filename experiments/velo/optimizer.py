"""VeLO-lite: a per-parameter learned optimizer in the VeLO family, the paper's learned
baseline ("VeLO (ft)"), built and meta-trained here with L3RS's own NES and tasks
(docs/design.md §5). No pretrained VeLO weights exist offline; its meta-weights come from
`examples/configs/cpu-kanji-velo.yaml`.

Per step, for every tensor: momenta at several timescales and an RMS EMA are updated; a
per-tensor LSTM reads tensor-level statistics (log-RMS of g, p, m, Adam's direction; loss;
time; role and depth) and outputs a log step scale s and mixing weights over a bank of tiny
MLPs; the mixed MLP reads per-element features and outputs a direction d and magnitude m:

    p ← p·(1 − η·wd) − η · (â + d) · exp(c·m),    η = lr · η₀ · prior(t) · h_j · exp(s)

with â Adam's bias-corrected direction and h_j L3RS's optional head/backbone prior (a fixed
factor per tensor). At initialisation d = m = s = 0: Adam on the prior.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from experiments.velo.config import VeLOLiteConfig
from experiments.velo.network import VeLOLiteNet
from hf_l3rs.optim.components import describe, in_model_order, normalize_params, role_indices
from hf_l3rs.optim.config import ROLES
from hf_l3rs.optim.features import time_features
from hf_l3rs.optim.horizon import resolve_horizon
from hf_l3rs.optim.loss_source import LossSource

_MISSING_LOSS = (
    "VeLO-lite needs the training loss of every step (a tensor-level feature): pass "
    "opt.step(loss=loss), call opt.observe_loss(loss) first, or pass a closure."
)


def _rms(t: Tensor) -> Tensor:
    return torch.sqrt(torch.mean(t.float() * t.float()))


def rate_schedule_factor(config: VeLOLiteConfig, step: int, total_steps: int | None) -> float:
    """The prior multiplying the learned rate at the ``step``-th update (1-based) of a run of
    ``total_steps``: 1 for ``constant``; for ``cosine`` the same 0.5·(1 + cos(π·(step−1)/T))
    as a cosine-scheduled baseline (1 at the first update, 0 from step T + 1 on)."""
    if config.rate_schedule == "constant" or not total_steps:
        return 1.0
    progress = min(step - 1, total_steps) / total_steps
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class VeLOLite(torch.optim.Optimizer):
    """Per-parameter learned optimizer (VeLO-style). Same calling conventions as L3RS:
    ``step(loss=loss)`` every step, ``total_steps`` for the time features (or a decaying
    scheduler, or horizon-free), ``lr`` and ``weight_decay`` per group."""

    def __init__(
        self,
        params: Any,
        net: VeLOLiteNet | VeLOLiteConfig | None = None,
        *,
        total_steps: int | None = None,
        lr: float = 1.0,
        weight_decay: float = 0.0,
        seed: int = 0,
        loss_from: nn.Module | None = None,
        model: nn.Module | None = None,
    ) -> None:
        if not (isinstance(lr, (int, float)) and lr >= 0):
            raise ValueError(f"VeLOLite: lr must be a number >= 0, got {lr!r}")
        if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
            raise ValueError(f"VeLOLite: weight_decay must be >= 0, got {weight_decay!r}")
        groups, names, module = normalize_params(params)
        model = model if model is not None else module
        self._loss = LossSource()
        super().__init__(groups, {"lr": float(lr), "weight_decay": float(weight_decay)})
        entries = [
            (gi, n, p) for gi, (ns, g) in enumerate(zip(names, self.param_groups)) for n, p in zip(ns, g["params"])
        ]
        if model is not None:
            entries = in_model_order(entries, model)
        self._params: list[Tensor] = [p for _, _, p in entries]
        self._group_index = [gi for gi, _, _ in entries]
        self.components = describe([(n, p) for _, n, p in entries], model)
        if net is None or isinstance(net, VeLOLiteConfig):
            net = VeLOLiteNet(net, seed=seed)
        if not isinstance(net, VeLOLiteNet):
            raise TypeError(f"VeLOLite: net must be a VeLOLiteNet or VeLOLiteConfig, got {type(net).__name__}")
        self.device = self._params[0].device
        self.net = net.to(self.device)
        self.config: VeLOLiteConfig = net.config
        roles = torch.nn.functional.one_hot(role_indices(self.components), len(ROLES)).float()
        depths = torch.tensor([[c.depth] for c in self.components])
        self.descriptor = torch.cat([roles, depths], dim=1).to(self.device)
        cfg = net.config
        if cfg.init_head_fraction > 0:
            head = depths[:, 0] >= 1 - cfg.init_head_fraction
            self.prior_rate = torch.where(head, cfg.init_head_rate, cfg.init_backbone_rate).to(self.device)
        else:
            self.prior_rate = torch.ones(len(self.components), device=self.device)
        self.total_steps: int | None = None
        self._horizon_free = False
        if total_steps is not None:
            self.set_total_steps(total_steps)
        watch = loss_from if loss_from is not None else model
        if watch is not None:
            self._loss.watch(watch)
        self._step = 0
        self._loss_ema: float | None = None
        self._nonfinite = torch.zeros(len(self._params), dtype=torch.long)
        self._skipped_loss = 0
        #: the last step's rate η per tensor (lr · η₀ · prior(t) · h_j · exp(s)), for analyses
        self.last_rate: Tensor | None = None

    # ------------------------------------------------------------------ API
    def set_total_steps(self, total_steps: int) -> None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
            raise ValueError(f"VeLOLite: total_steps must be a positive int, got {total_steps!r}")
        self.total_steps = total_steps
        self._horizon_free = False

    def observe_loss(self, loss: Tensor | float) -> None:
        self._loss.observe(loss)

    @property
    def nonfinite_skips(self) -> dict[str, Any]:
        return {"loss": self._skipped_loss, "components": self._nonfinite.clone()}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if getattr(self, "_params", None) is not None:
            raise RuntimeError("VeLOLite: components are fixed at construction; create a new optimizer instead.")
        super().add_param_group(param_group)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out["velo_lite"] = {
            "step": self._step,
            "total_steps": self.total_steps,
            "config": self.config.to_dict(),
            "net": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
            "loss_ema": self._loss_ema,
            "nonfinite": self._nonfinite.clone(),
            "skipped_loss": self._skipped_loss,
        }
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("velo_lite", None)
        if extra is None:
            raise ValueError("VeLOLite.load_state_dict: no 'velo_lite' entry (not saved by VeLOLite)")
        if VeLOLiteConfig.from_dict(dict(extra["config"])) != self.config:
            raise ValueError("VeLOLite.load_state_dict: the saved meta-network config differs from this optimizer's")
        super().load_state_dict(state_dict)
        self.net.load_state_dict(extra["net"], strict=True)
        self._step = int(extra["step"])
        if extra["total_steps"] is not None:
            self.total_steps = int(extra["total_steps"])
        self._loss_ema = None if extra["loss_ema"] is None else float(extra["loss_ema"])
        self._nonfinite = extra["nonfinite"].to(torch.long).cpu().clone()
        self._skipped_loss = int(extra["skipped_loss"])

    # ---------------------------------------------------------------- step
    def _init_state(self, p: Tensor) -> dict[str, Any]:
        state = self.state[p]
        if "step" not in state:
            h = self.config.lstm_hidden
            state["step"] = 0
            for i in range(len(self.config.momentum_betas)):
                state[f"m{i}"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["lstm_h"] = torch.zeros(h, device=p.device)
            state["lstm_c"] = torch.zeros(h, device=p.device)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None, *, loss: Tensor | float | None = None) -> Tensor | None:  # type: ignore[override]
        loss_t, returned = self._loss.for_step(closure, loss, _MISSING_LOSS)
        resolve_horizon(self, "")
        self._step += 1
        active = [j for j, p in enumerate(self._params) if p.grad is not None]
        if any(self._params[j].grad.is_sparse for j in active):
            raise RuntimeError("VeLOLite does not support sparse gradients")
        loss_value = float(loss_t)
        if not active:
            return returned
        if not math.isfinite(loss_value):
            self._skipped_loss += 1
            return returned
        self._update(active, loss_value)
        return returned

    def _update(self, active: list[int], loss: float) -> None:
        cfg = self.config
        betas = cfg.momentum_betas
        adam_i = len(betas) // 2  # the momentum Adam's direction uses (0.9 by default)
        lloss = math.copysign(math.log1p(abs(loss)), loss)
        ema = lloss if self._loss_ema is None else self._loss_ema
        self._loss_ema = 0.9 * ema + 0.1 * lloss
        time = time_features(cfg, self._step, self.total_steps).to(self.device)  # type: ignore[arg-type]

        prospective, rows = [], []
        for j in active:
            p = self._params[j]
            g = p.grad
            st = self._init_state(p)
            t = st["step"] + 1
            ms = [b * st[f"m{i}"] + (1 - b) * g for i, b in enumerate(betas)]
            v = cfg.rms_beta * st["v"] + (1 - cfg.rms_beta) * g * g
            denom = torch.sqrt(v / (1 - cfg.rms_beta**t)) + cfg.eps
            adam = (ms[adam_i] / (1 - betas[adam_i] ** t)) / denom
            stats = torch.stack([_rms(g), _rms(p), _rms(ms[adam_i]), _rms(adam)])
            prospective.append((j, t, ms, v, denom, adam))
            rows.append(stats)
        stats = torch.stack(rows)
        finite = torch.isfinite(stats).all(dim=1)
        n = len(active)
        loss_feats = torch.tensor([lloss, lloss - ema], device=self.device).expand(n, 2)
        feats = torch.cat(
            [
                torch.log(torch.nan_to_num(stats, nan=0.0, posinf=0.0) + cfg.eps),
                loss_feats,
                time.expand(n, -1),
                self.descriptor[active],
            ],
            dim=1,
        )
        h = torch.stack([self.state[self._params[j]]["lstm_h"] for j in active])
        c = torch.stack([self.state[self._params[j]]["lstm_c"] for j in active])
        log_scale, mixing, h2, c2 = self.net.tensor_step(feats, h, c)
        prior = rate_schedule_factor(cfg, self._step, self.total_steps)  # type: ignore[arg-type]

        w1, b1, w2, b2 = self.net.mixed_mlps(mixing)  # every tensor's MLP in one call
        # η per active tensor (the group's lr · η₀ · prior(t) as one float32 scalar each, as the
        # scalar-times-tensor product rounds it), kept for analyses in last_rate
        base = torch.tensor(
            [self.param_groups[self._group_index[j]]["lr"] * cfg.base_lr * prior for j in active],
            dtype=torch.float32,
            device=self.device,
        )
        eta_all = base * self.prior_rate[active] * torch.exp(log_scale)
        self.last_rate = torch.zeros(len(self._params))
        self.last_rate[active] = eta_all.detach().cpu()
        for pos, (j, t, ms, v, denom, adam) in enumerate(prospective):
            if not bool(finite[pos]):
                self._nonfinite[j] += 1
                continue
            p = self._params[j]
            group = self.param_groups[self._group_index[j]]
            raw = [p.grad, *ms, adam, p.grad / denom, p]
            elem = torch.stack([(x / (_rms(x) + cfg.eps)).reshape(-1) for x in raw], dim=1)
            d, mag = self.net.apply_mlp(elem, w1[pos], b1[pos], w2[pos], b2[pos])
            eta = eta_all[pos]
            update = (adam.reshape(-1) + d) * torch.exp(cfg.magnitude_scale * mag.clamp(-5.0, 5.0))
            new_p = p * (1 - eta * group["weight_decay"]) - eta * update.view_as(p)
            if not (torch.isfinite(new_p).all() and torch.isfinite(h2[pos]).all() and torch.isfinite(c2[pos]).all()):
                self._nonfinite[j] += 1
                continue
            st = self.state[p]
            p.copy_(new_p)
            for i, m in enumerate(ms):
                st[f"m{i}"].copy_(m)
            st["v"].copy_(v)
            st["lstm_h"].copy_(h2[pos])
            st["lstm_c"].copy_(c2[pos])
            st["step"] = t

    # --------------------------------------------------------------- hub
    @classmethod
    def from_pretrained(cls, name_or_path: str, params: Any, *, total_steps: int | None = None, **kwargs: Any):
        """Load VeLO-lite meta-weights (a folder or Hub id) and bind them to ``params``."""
        from hf_l3rs.optim.hub import load_net

        net = load_net(name_or_path)
        if not isinstance(net, VeLOLiteNet):
            raise TypeError(f"{name_or_path!r} holds {type(net).__name__} meta-weights, not VeLO-lite's")
        return cls(params, net, total_steps=total_steps, **kwargs)

    def save_pretrained(self, save_directory: str, *, card: dict[str, Any] | None = None) -> None:
        from hf_l3rs.optim.hub import save_net

        save_net(self.net, save_directory, components=self.components, card=card)
