"""The L3RS optimizer (docs/design.md §1): per-component learned rate and mixing of base directions."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hf_l3rs.optim.backends import FOREACH, FUSED, Backend
from hf_l3rs.optim.compiled import COMPILED, compiled_unavailable_reason
from hf_l3rs.optim.components import (
    EmbeddingMismatchError,
    describe,
    descriptor_matrix,
    in_model_order,
    log_mapping,
    map_components,
    normalize_params,
    role_indices,
    stand_in_roles,
)
from hf_l3rs.optim.config import ROLES, L3RSConfig
from hf_l3rs.optim.directions import get_direction
from hf_l3rs.optim.distance import DistanceState, observe
from hf_l3rs.optim.features import (
    EMAFeatures,
    assemble,
    time_features,
)
from hf_l3rs.optim.fused import FUSED_DIRECTIONS, fused_unavailable_reason, load_fused
from hf_l3rs.optim.horizon import resolve_horizon
from hf_l3rs.optim.hub import load_net, save_net
from hf_l3rs.optim.hub import push_to_hub as upload_folder
from hf_l3rs.optim.loss_source import LossSource
from hf_l3rs.optim.network import L3RSNet
from hf_l3rs.verbosity import get_logger

IMPLEMENTATIONS = ("auto", "fused", "foreach", "compiled")
_NORM_EPS = 1e-12


def _dense(t: Tensor) -> bool:
    """Contiguous in some dimension order (plain or channels-last), no overlap, no gaps."""
    return t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)


logger = get_logger(__name__)

#: lr multipliers outside this range are almost always a learning rate typed by habit (timm's
#: ``lr=1e-3``): warned about once, with the fix
_PLAUSIBLE_MULTIPLIER = (0.05, 20.0)


def check_group_rates(groups: list[dict[str, Any]], warn: bool = False) -> None:
    """Every group's ``lr`` and ``weight_decay`` finite and >= 0 (a scheduler or a user may
    write them at any step: a NaN would reach the weights); with ``warn``, a WARNING when an
    ``lr`` multiplier looks like a learning rate."""
    for i, g in enumerate(groups):
        for key in ("lr", "weight_decay"):
            v = g[key]
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(
                    f"L3RS: param group {i} has {key}={v!r}; it must be finite and >= 0 "
                    f"(for lr: a multiplier of the learned rate, 1.0 = as learned)"
                )
        lo, hi = _PLAUSIBLE_MULTIPLIER
        if warn and g["lr"] > 0 and not lo <= g["lr"] <= hi:
            logger.warning(
                "L3RS: param group %d has lr=%g. For L3RS, lr multiplies the learned rate (1.0 = as learned); "
                "it is not a learning rate. Leave it at 1.0 (timm: lr=1.0; Trainer: learning_rate=1.0) unless you "
                "mean to scale the learned steps by %g.",
                i,
                g["lr"],
                g["lr"],
            )


_MISSING_LOSS = (
    "L3RS needs the training loss of every step (it is one of its input features). "
    "Pass it as opt.step(loss=loss), call opt.observe_loss(loss) before opt.step(), "
    "or pass a closure that returns the loss. With transformers.Trainer use "
    "hf_l3rs.trainer_plugins (L3RSTrainer or L3RSCallback), which does this for you."
)


class L3RS(torch.optim.Optimizer):
    """Learned optimizer mixing base-optimizer directions per parameter tensor.

    Args:
        params: a module, parameters, ``(name, parameter)`` pairs, or param groups.
            Components are the tensors that require grad, in this order.
        net: an :class:`L3RSNet` (meta-weights), an :class:`L3RSConfig` (fresh, untrained
            weights that behave like normalised Adam), or ``None`` for the default config.
        total_steps: the number of training steps you will run (time features need it);
            can also be set later with :meth:`set_total_steps`.
        lr: per-group multiplier of the learned rate (schedulers may change it).
        weight_decay: per-group decoupled weight decay, scaled by the learned rate.
        implementation: ``"fused"`` (two-pass C++ kernels, CPU float32, directions in
            {sgd, adam, weight_decay}), ``"foreach"``, ``"compiled"`` (the two passes through
            ``torch.compile``: any direction, dtype and device Inductor supports; compiles on
            the first step), or ``"auto"`` (fused when possible, else foreach).
        map_embeddings: allow a model whose components differ from the checkpoint's to
            borrow embeddings by role and depth (logged once). ``False`` makes it an error.
        seed: initialisation seed of a fresh network.
        loss_from: module whose ``output.loss`` each step's loss is read from (default: the
            model, when one is known).
        model: the module the parameters belong to, when ``params`` are bare tensors or
            groups of them (timm's ``create_optimizer_v2``, Trainer's
            ``optimizer_cls_and_kwargs``): components then take its names, roles and order.

    Call ``step(loss=loss)`` (or ``observe_loss(loss)`` then ``step()``) every step.
    """

    def __init__(
        self,
        params: Any,
        net: L3RSNet | L3RSConfig | None = None,
        *,
        total_steps: int | None = None,
        lr: float = 1.0,
        weight_decay: float = 0.0,
        implementation: str = "auto",
        map_embeddings: bool = True,
        seed: int = 0,
        loss_from: nn.Module | None = None,
        model: nn.Module | None = None,
    ) -> None:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
            raise ValueError(
                f"L3RS: lr (a multiplier of the learned rate, 1.0 = as learned) must be finite and >= 0, got {lr!r}"
            )
        if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"L3RS: weight_decay must be finite and >= 0, got {weight_decay!r}")
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"L3RS: implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        groups, names, module = normalize_params(params)
        model = model if model is not None else module
        self._loss = LossSource()  # before super().__init__: add_param_group may fail first
        super().__init__(groups, {"lr": float(lr), "weight_decay": float(weight_decay)})
        check_group_rates(self.param_groups, warn=True)
        self._frozen_groups = True
        # (group, name, tensor) per component; with a model, in the model's order and names
        # (timm and Trainer hand over regrouped bare tensors: decay / no-decay)
        entries = [
            (gi, n, p) for gi, (ns, g) in enumerate(zip(names, self.param_groups)) for n, p in zip(ns, g["params"])
        ]
        if model is not None:
            entries = in_model_order(entries, model)
        self._params: list[Tensor] = [p for _, _, p in entries]
        self._group_index: list[int] = [gi for gi, _, _ in entries]
        self.components = describe([(n, p) for _, n, p in entries], model)
        num = len(self.components)
        roles = role_indices(self.components)
        depths = torch.tensor([c.depth for c in self.components], dtype=torch.float32)

        if net is None:
            net = L3RSConfig()
        if isinstance(net, L3RSConfig):
            config = net if net.num_components is not None else net.replace(num_components=num)
            if config.num_components == num:
                net = L3RSNet(config, roles, depths, seed=seed)
            else:
                net = L3RSNet(config, seed=seed)
        if not isinstance(net, L3RSNet):
            raise TypeError(f"L3RS: net must be an L3RSNet or L3RSConfig, got {type(net).__name__}")
        self.config: L3RSConfig = net.config
        self.device = self._params[0].device
        self.net = net.to(self.device)
        trained = self.config.num_components
        # Identity only for the architecture the embeddings were trained on: same count AND the
        # same role at every position (a 41-tensor BERT is not the 41-tensor ResNet).
        same_architecture = trained == num and torch.equal(roles.cpu(), net.trained_roles.cpu())
        presented = roles
        if same_architecture:
            mapping = torch.arange(num)
        elif not map_embeddings:
            other = ", with other roles," if trained == num else ""
            raise EmbeddingMismatchError(
                f"L3RS: this model has {num} components{other} but the meta-weights were trained on "
                f"{trained}; pass map_embeddings=True to map each component to the trained one of the "
                "same role and nearest depth, or use meta-weights trained on this model."
            )
        else:
            presented = stand_in_roles(roles, net.trained_roles.cpu())
            mapping = map_components(presented, depths, net.trained_roles.cpu(), net.trained_depths.cpu())
            log_mapping(self.components, mapping, trained, presented)
        self.component_map = mapping.to(self.device)
        #: Each component's role as the meta-network sees it (a stand-in for roles it never saw).
        self.presented_roles = [ROLES[int(r)] for r in presented]
        self.descriptor = (
            descriptor_matrix(self.components, presented).to(self.device) if self.config.descriptor else None
        )
        self._numel = torch.tensor([c.numel for c in self.components], dtype=torch.float64)

        self.total_steps = None
        if total_steps is not None:
            self.set_total_steps(total_steps)
        self.implementation = implementation
        if implementation == "fused":
            reason = self._fused_blocker(check_grads=False)
            if reason:
                raise ValueError(f"L3RS: implementation='fused' is not possible here: {reason}")
        if implementation == "compiled":
            reason = compiled_unavailable_reason()
            if reason:
                raise ValueError(f"L3RS: implementation='compiled' is not possible here: {reason}")
        watch = loss_from if loss_from is not None else model
        if watch is not None:
            self.capture_loss_from(watch)
        self._reset_run_state()
        self.record_dynamics = False
        self.dynamics: list[dict[str, Tensor | int]] = []
        self.last_rate: Tensor | None = None
        self.last_agreement: float | None = None  # cos(g_t, m_{t-1}) of rate adaptation
        self.last_mix: Tensor | None = None

    # ------------------------------------------------------------------ API
    def set_total_steps(self, total_steps: int) -> None:
        """Announce the training length T (time features); stepping past T is allowed."""
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
            raise ValueError(f"L3RS: total_steps must be a positive int, got {total_steps!r}")
        self.total_steps = total_steps
        self._horizon_free = False

    def observe_loss(self, loss: Tensor | float) -> None:
        """Give the loss of the coming ``step()`` (for loops that cannot pass it there)."""
        self._loss.observe(loss)

    def capture_loss_from(self, module: nn.Module) -> None:
        """Read the training loss from ``module``'s outputs (``output.loss`` or
        ``output["loss"]``, as Hugging Face models return it) on every forward pass in
        training mode with grad enabled; ``step()`` then uses the mean over the
        forwards since the last step (gradient accumulation included). L3RS does this
        for the module it was built from, so ``transformers.Trainer`` needs no glue."""
        self._loss.watch(module)

    @property
    def captures_loss(self) -> bool:
        """Whether a module's forward passes feed this optimizer its loss."""
        return self._loss.watching

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if getattr(self, "_frozen_groups", False):
            raise RuntimeError(
                "L3RS: components are fixed at construction (the meta-network has one row per "
                "tensor); create a new L3RS with all parameter groups instead."
            )
        super().add_param_group(param_group)

    @property
    def nonfinite_skips(self) -> dict[str, Any]:
        """How often non-finite values were kept out of the weights: ``loss`` counts
        steps skipped for a non-finite loss, ``components[j]`` skipped updates of j."""
        return {"loss": self._skipped_loss, "components": self._nonfinite.clone()}

    @property
    def num_components(self) -> int:
        return len(self._params)

    @property
    def direction_names(self) -> tuple[str, ...]:
        return self.config.directions

    # --------------------------------------------------------------- state
    def _reset_run_state(self) -> None:
        n, k = len(self._params), len(self.config.directions)
        self._step = 0
        self._ema = EMAFeatures(self.config, n, self.device)
        self._pnorm = torch.full((n,), math.nan, dtype=torch.float64)
        self._dirlog = torch.zeros(n, k, device=self.device)
        self._nonfinite = torch.zeros(n, dtype=torch.long)
        self._skipped_loss = 0
        self._log_adapt = torch.zeros(n, dtype=torch.float64)  # log of each tensor's rate multiplier
        self._distance = DistanceState.fresh(n)  # used only with step_scale="distance*"

    def __getstate__(self) -> dict[str, Any]:
        """Everything, not only torch's defaults/state/param_groups: a pickled or deep-copied
        L3RS (with its model, in one copy) keeps its network, horizon and features and steps
        exactly like the original."""
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out["l3rs"] = {
            "step": self._step,
            "total_steps": self.total_steps,
            "config": self.config.to_dict(),
            "net": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
            **self._ema.state(),
            "pnorm": self._pnorm.clone(),
            "dirlog": self._dirlog.clone(),
            "nonfinite": self._nonfinite.clone(),
            "skipped_loss": self._skipped_loss,
            "log_adapt": self._log_adapt.clone(),
            **({"distance": self._distance.to_dict()} if self.config.step_scale != "base_lr" else {}),
        }
        return out

    def _check_state_shapes(self, state_dict: dict[str, Any]) -> None:
        """Every saved per-tensor state has the shape this optimizer's tensor needs, checked
        before anything is loaded: a state saved for another model (a head of 6 classes into
        a head of 8) is refused by name instead of failing, or corrupting memory, in a kernel."""
        groups = state_dict.get("param_groups", [])
        ours = [p for g in self.param_groups for p in g["params"]]
        saved_ids = [i for g in groups for i in g["params"]]
        if len(saved_ids) != len(ours):
            raise ValueError(
                f"L3RS.load_state_dict: the state holds {len(saved_ids)} tensors, this optimizer {len(ours)}; "
                "it was saved for another model or another grouping"
            )
        names = {id(p): c.name for p, c in zip(self._params, self.components)}
        for pid, p in zip(saved_ids, ours):
            entry = state_dict.get("state", {}).get(pid)
            if not entry:
                continue
            meta = torch.empty_like(p, device="meta")
            for key, value in entry.items():
                if key == "step" or not isinstance(value, Tensor):
                    continue
                direction, _, field_name = key.partition(".")
                try:
                    want = get_direction(direction).init_state(meta)[field_name].shape
                except (KeyError, ValueError):
                    raise ValueError(
                        f"L3RS.load_state_dict: unknown state entry {key!r} for {names.get(id(p))!r}"
                    ) from None
                if value.shape != want:
                    raise ValueError(
                        f"L3RS.load_state_dict: state {key!r} of {names.get(id(p))!r} has shape {tuple(value.shape)}, "
                        f"this parameter needs {tuple(want)}: the state was saved for another model (e.g. a head "
                        "with another number of classes). Load a state saved for this model, or start a fresh L3RS."
                    )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("l3rs", None)
        if extra is None:
            raise ValueError("L3RS.load_state_dict: this state dict has no 'l3rs' entry (not saved by L3RS)")
        saved = L3RSConfig.from_dict(dict(extra["config"]))
        if saved != self.config:
            raise ValueError(
                "L3RS.load_state_dict: the saved meta-network config differs from this optimizer's "
                f"(saved {saved.to_dict()}, here {self.config.to_dict()})"
            )
        self._check_state_shapes(state_dict)
        super().load_state_dict(state_dict)
        self.net.load_state_dict(extra["net"], strict=True)
        self._step = int(extra["step"])
        if extra["total_steps"] is not None:
            self.total_steps = int(extra["total_steps"])
        self._ema.load(extra)
        self._pnorm = extra["pnorm"].to(torch.float64).cpu().clone()
        self._dirlog = extra["dirlog"].to(self._dirlog).clone()
        self._nonfinite = extra["nonfinite"].to(torch.long).cpu().clone()
        self._skipped_loss = int(extra["skipped_loss"])
        # A float in states saved before per-tensor adaptation, absent before adaptation existed.
        log_adapt = extra.get("log_adapt", 0.0)
        self._log_adapt = torch.as_tensor(log_adapt, dtype=torch.float64).cpu().expand(len(self._params)).clone()
        if self.config.step_scale != "base_lr":
            self._distance = DistanceState.from_dict(extra["distance"], self._params)

    # ---------------------------------------------------------------- step
    def _fused_blocker(self, check_grads: bool) -> str | None:
        """Why the fused kernels cannot run now (``None`` when they can)."""
        if not set(self.config.directions) <= FUSED_DIRECTIONS:
            return f"directions {self.config.directions} are not all in {sorted(FUSED_DIRECTIONS)}"
        for p in self._params:
            if p.device.type != "cpu" or p.dtype != torch.float32:
                return "fused kernels need float32 parameters on the CPU"
            if not _dense(p):
                return "fused kernels need dense parameters"
            if check_grads and p.grad is not None and p.grad.stride() != p.stride():
                return "a gradient's memory layout differs from its parameter's"
        if load_fused() is None:
            return f"the C++ kernels could not be built ({fused_unavailable_reason()})"
        return None

    def _backend(self, steps: set[int]) -> Backend:
        """The backend of this step: the two-pass ones need every component at the same step
        (tensors without gradients on some steps fall back to foreach for those steps)."""
        if self.implementation == "foreach" or len(steps) != 1:
            return FOREACH
        if self.implementation == "compiled":
            return COMPILED
        if self.implementation == "fused" or self._fused_blocker(check_grads=True) is None:
            return FUSED
        return FOREACH

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None, *, loss: Tensor | float | None = None) -> Tensor | None:  # type: ignore[override]
        """One L3RS update. Needs the step's training loss (argument, closure or
        :meth:`observe_loss`). Returns the loss."""
        loss_t, returned = self._loss.for_step(closure, loss, _MISSING_LOSS)
        check_group_rates(self.param_groups)
        resolve_horizon(self, " (pass total_steps=T, call set_total_steps(T) or use L3RSCallback when T is known)")
        self._step += 1
        active = []
        for j, p in enumerate(self._params):
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(
                    f"L3RS does not support sparse gradients (component {self.components[j].name!r}); "
                    "use a dense embedding (sparse=False)."
                )
            active.append(j)
        if not active:
            return returned
        for j in active:
            self._init_state(j)
        loss_finite = bool(torch.isfinite(loss_t))
        if not loss_finite:
            self._skipped_loss += 1
        self._update(active, loss_t.to(self.device), loss_finite)
        return returned

    def _init_state(self, j: int) -> None:
        p = self._params[j]
        state = self.state[p]
        if "step" in state:
            return
        state["step"] = 0
        for dname in self.config.directions:
            for key, value in get_direction(dname).init_state(p).items():
                state[f"{dname}.{key}"] = value

    def _missing_pnorms(self, idx: list[int]) -> None:
        missing = [j for j in idx if math.isnan(float(self._pnorm[j]))]
        if missing:
            norms = torch._foreach_norm([self._params[j] for j in missing])
            for j, nrm in zip(missing, norms):
                self._pnorm[j] = float(nrm)

    def _update(self, active: list[int], loss: Tensor, loss_finite: bool) -> None:
        cfg = self.config
        hyper = self.net.hyper_values()
        steps = {self.state[self._params[j]]["step"] + 1 for j in active}
        self._missing_pnorms(active)
        backend = self._backend(steps)
        probe = backend.probe(self, active, hyper)
        dnorm, gnorm = probe.dnorm, probe.gnorm
        finite = torch.isfinite(gnorm) & torch.isfinite(dnorm).all(dim=1) & loss_finite
        act = torch.tensor(active, dtype=torch.long)
        self._nonfinite[act[~finite]] += 1
        loss_value = float(loss) if loss_finite else math.nan
        if cfg.rate_adaptation == "hypergradient":
            self._adapt_rate(active, finite, gnorm, probe.agreement)

        # Features and the meta-network: one batched call for all components.
        n = len(self._params)
        rows = torch.zeros(n, dtype=torch.bool)
        rows[act[finite]] = True
        stats = torch.zeros(n, 3, dtype=torch.float64)
        stats[act, 0] = torch.log(self._pnorm[act] + cfg.feature_eps)
        stats[act, 1] = torch.log(torch.nan_to_num(gnorm, nan=0.0, posinf=0.0) + cfg.feature_eps)
        stats[:, 2] = loss_value if loss_finite else 0.0
        rows_dev = rows.to(self.device)
        self._ema.update(stats.to(self.device, torch.float32), rows_dev)
        dl = torch.log(torch.nan_to_num(dnorm, nan=0.0, posinf=0.0) + cfg.feature_eps).to(self._dirlog)
        self._dirlog[act.to(self.device)] = torch.where(
            finite.to(self.device)[:, None], dl.to(self.device), self._dirlog[act.to(self.device)]
        )
        feats = assemble(
            self._ema.read(),
            time_features(cfg, self._step, self.total_steps).to(self.device),
            self._dirlog,
            self.descriptor,
        )
        rate, mix = self.net(feats, self.component_map)
        if cfg.step_scale != "base_lr":  # docs/adr/0003: d × the network's modulation
            if self._distance.reference is None:  # the network's level at the first step is d's unit
                self._distance.reference = float(torch.exp(torch.log(rate.detach()[act]).mean()))
            rate = rate * (self._distance.d / self._distance.reference).to(rate)
        if cfg.rate_adaptation != "none":
            rate = rate * torch.exp(self._log_adapt).to(rate)
        self.last_rate, self.last_mix = rate, mix
        if self.record_dynamics:
            self.dynamics.append(
                {"step": self._step, "rate": rate.detach().cpu().clone(), "mix": mix.detach().cpu().clone()}
            )

        # Per-component coefficients (float64): coef_k = m_g·η·α_k / (‖d_k‖ + eps).
        rate64 = rate.detach().to("cpu", torch.float64)[act]
        mix64 = mix.detach().to("cpu", torch.float64)[act]
        # A non-finite network output (meta-weights that overflow on unusual features) is
        # skipped like a non-finite gradient: nothing non-finite reaches the weights.
        net_ok = torch.isfinite(rate64) & torch.isfinite(mix64).all(dim=1)
        self._nonfinite[act[finite & ~net_ok]] += 1
        finite = finite & net_ok
        lr = torch.tensor([self.param_groups[self._group_index[j]]["lr"] for j in active], dtype=torch.float64)
        wd = torch.tensor(
            [self.param_groups[self._group_index[j]]["weight_decay"] for j in active], dtype=torch.float64
        )
        scale = dnorm.clone()
        if cfg.norm == "rms":
            scale = scale / torch.sqrt(self._numel[act])[:, None]
        coef = (lr * rate64)[:, None] * mix64 / (scale + _NORM_EPS)
        decay = lr * rate64 * wd
        coef = torch.where(finite[:, None], coef, torch.zeros_like(coef))
        decay = torch.where(finite, decay, torch.zeros_like(decay))
        if cfg.step_scale != "base_lr":
            self._observe_distance(active, finite, lr, hyper)
        backend.commit(self, active, coef, decay, finite, probe)

    def _observe_distance(
        self, active: list[int], finite: Tensor, multiplier: Tensor, hyper: dict[str, dict[str, float]]
    ) -> None:
        """Fold this step into the distance estimate (weights not yet moved), finite tensors only."""
        ok = [pos for pos, f in enumerate(finite.tolist()) if f]
        idx = [active[pos] for pos in ok]
        params = [self._params[j] for j in idx]
        d = self._distance.d[idx] if idx else torch.zeros(0, dtype=torch.float64)
        beta2 = hyper.get("adam", {}).get("beta2", 0.999)
        scope = "model" if self.config.step_scale == "distance" else "component"
        observe(self._distance, idx, params, [p.grad for p in params], d * d * multiplier[ok], math.sqrt(beta2), scope)

    @property
    def distance_scale(self) -> Tensor:
        """Each tensor's d, the step-size scale of ``step_scale="distance*"`` (docs/adr/0003)."""
        return self._distance.d.clone()

    @property
    def rate_multiplier(self) -> float:
        """The adaptation multiplier a on the learned rates (1 without rate adaptation; with
        ``adaptation_scope="component"`` the geometric mean over tensors)."""
        return math.exp(float(self._log_adapt.mean()))

    @property
    def rate_multipliers(self) -> Tensor:
        """Each tensor's adaptation multiplier, in component order (all equal per model)."""
        return torch.exp(self._log_adapt)

    def _adapt_rate(self, active: list[int], finite: Tensor, gnorm: Tensor, agreement: Tensor | None) -> None:
        """docs/design.md §1 "Rate adaptation": log a += β·(cos(g_t, m_{t-1}) − target), the
        cosine over all finite components concatenated (scope ``model``) or each component's
        own (scope ``component``; Adam's momentum before this step's update), clamped to
        [min, max]. A component without momentum yet (its first step) keeps its multiplier."""
        cfg = self.config
        ok = [pos for pos, f in enumerate(finite.tolist()) if f]
        if not ok:
            return
        gg = gnorm[ok].to(torch.float64) ** 2
        if agreement is not None and cfg.momentum_direction == "adam":  # computed in the fused probe's pass
            dots, mm = agreement[ok, 0], agreement[ok, 1]
        else:
            params = [self._params[active[pos]] for pos in ok]
            moms = [self.state[p][f"{cfg.momentum_direction}.exp_avg"] for p in params]
            dots = torch.stack([torch.vdot(p.grad.reshape(-1), m.reshape(-1)) for p, m in zip(params, moms)])
            dots = dots.to("cpu", torch.float64)
            mm = torch.stack(torch._foreach_norm(moms)).to("cpu", torch.float64) ** 2
        dot, g_all, m_all = float(dots.sum()), float(gg.sum()), float(mm.sum())
        if not (g_all > 0 and m_all > 0 and math.isfinite(dot)):
            return  # the first step (no momentum yet) or nothing to compare
        self.last_agreement = max(-1.0, min(1.0, dot / math.sqrt(g_all * m_all)))
        low, high = math.log(cfg.adaptation_min), math.log(cfg.adaptation_max)
        if cfg.adaptation_scope == "model":
            step = cfg.hypergradient_rate * (self.last_agreement - cfg.adaptation_target)
            self._log_adapt = (self._log_adapt + step).clamp(low, high)
            return
        seen = (gg > 0) & (mm > 0) & torch.isfinite(dots)
        cos = (dots / torch.sqrt(gg * mm).clamp_min(1e-300)).clamp(-1.0, 1.0)
        idx = torch.tensor([active[pos] for pos in ok], dtype=torch.long)[seen]
        change = cfg.hypergradient_rate * (cos[seen] - cfg.adaptation_target)
        self._log_adapt[idx] = (self._log_adapt[idx] + change).clamp(low, high)

    # --------------------------------------------------------------- hub
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        params: Any = None,
        *,
        total_steps: int | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool | None = None,
        token: str | bool | None = None,
        lr: float = 1.0,
        weight_decay: float = 0.0,
        implementation: str = "auto",
        map_embeddings: bool = True,
        loss_from: nn.Module | None = None,
        model: nn.Module | None = None,
        **overrides: Any,
    ) -> L3RS:
        """Load meta-weights from a local folder or a Hub repo id and bind them to
        ``params`` (a model, its parameters or param groups; with groups or bare tensors pass
        ``model`` too, as in the constructor, so that components keep their names and roles).
        ``overrides`` replace config fields that do not change the network's shape (e.g.
        ``base_lr``, ``rate_clamp``)."""
        if params is None:
            raise TypeError(
                "L3RS.from_pretrained needs the parameters it will optimise: "
                f"L3RS.from_pretrained({name_or_path!r}, model, total_steps=...) "
                "(or model.named_parameters())."
            )
        net = load_net(
            name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            **overrides,
        )
        if not isinstance(net, L3RSNet):
            raise TypeError(
                f"{name_or_path!r} holds {type(net).__name__} meta-weights, not L3RS's; load them with "
                "hf_l3rs.VeLOLite.from_pretrained(...)"
            )
        return cls(
            params,
            net,
            total_steps=total_steps,
            lr=lr,
            weight_decay=weight_decay,
            implementation=implementation,
            map_embeddings=map_embeddings,
            loss_from=loss_from,
            model=model,
        )

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        card: dict[str, Any] | None = None,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str | None = None,
        create_pr: bool = False,
        branch: str | None = None,
    ) -> str | None:
        """Write ``model.safetensors``, ``config.json`` and a model card (``README.md``;
        ``card`` fills it, see ``hf_l3rs.optim.cards.render_card``; meta-weights loaded with a
        card keep its history). With ``push_to_hub=True`` also upload the folder to
        ``repo_id`` (default: the folder's name) and return the commit URL
        (``huggingface_hub.ModelHubMixin.save_pretrained``'s convention)."""
        save_net(self.net, save_directory, components=self.components, card=card)
        if not push_to_hub:
            return None
        return upload_folder(
            save_directory,
            repo_id or Path(save_directory).name,
            private=private,
            token=token,
            commit_message=commit_message,
            create_pr=create_pr,
            branch=branch,
        )

    def push_to_hub(
        self,
        repo_id: str,
        *,
        card: dict[str, Any] | None = None,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str | None = None,
        create_pr: bool = False,
        branch: str | None = None,
    ) -> str:
        """Save the meta-weights to a temporary folder and upload them to ``repo_id``
        (safetensors, JSON and card only). Returns the commit URL."""
        with tempfile.TemporaryDirectory() as tmp:
            save_net(self.net, tmp, components=self.components, card=card)
            return upload_folder(
                tmp,
                repo_id,
                private=private,
                token=token,
                commit_message=commit_message,
                create_pr=create_pr,
                branch=branch,
            )
