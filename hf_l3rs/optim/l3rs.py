"""The L3RS optimizer (docs/design.md §1): per-component learned rate and mixing of base
directions. The class owns the state and the order of a step; the math is in ``rule``, the
passes over the tensors in the backends, the opt-in rate controllers in ``controllers``,
boundary checks in ``validation`` and Hub I/O in ``pretrained``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from hf_l3rs.optim.backends import fill_missing_norms, sample_offset
from hf_l3rs.optim.compiled import choose_backend, implementation_blocker
from hf_l3rs.optim.components import (
    bind_components,
    describe,
    descriptor_matrix,
    in_model_order,
    network_for,
    normalize_params,
)
from hf_l3rs.optim.config import ROLES, L3RSConfig
from hf_l3rs.optim.controllers import RateAdaptation, StepView, controllers_for
from hf_l3rs.optim.directions import init_direction_state
from hf_l3rs.optim.features import EMAFeatures, assemble, time_features
from hf_l3rs.optim.horizon import resolve_horizon
from hf_l3rs.optim.loss_source import LossSource
from hf_l3rs.optim.network import L3RSNet
from hf_l3rs.optim.pretrained import PretrainedMixin
from hf_l3rs.optim.rule import FEATURE_EPS, coefficients, direction_log_norms, norm_statistics
from hf_l3rs.optim.validation import (
    active_components,
    align_state_layouts,
    check_group_rates,
    check_rate,
    check_state_shapes,
    check_tensors,
)

IMPLEMENTATIONS = ("auto", "fused", "foreach", "compiled")

_MISSING_LOSS = (
    "L3RS needs the training loss of every step (it is one of its input features). "
    "Pass it as opt.step(loss=loss), call opt.observe_loss(loss) before opt.step(), "
    "or pass a closure that returns the loss. With transformers.Trainer use "
    "hf_l3rs.trainer_plugins (L3RSTrainer or L3RSCallback), which does this for you."
)


class L3RS(PretrainedMixin, torch.optim.Optimizer):
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
        lr, weight_decay = check_rate("lr", lr), check_rate("weight_decay", weight_decay)
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"L3RS: implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        groups, names, module = normalize_params(params)
        model = model if model is not None else module
        self._loss = LossSource()  # before super().__init__: add_param_group may fail first
        super().__init__(groups, {"lr": lr, "weight_decay": weight_decay})
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
        net = network_for(net, self.components, seed)
        self.config: L3RSConfig = net.config
        check_tensors([(n, p) for _, n, p in entries])
        self.device = self._params[0].device
        self.net = net.to(self.device)
        mapping, presented = bind_components(
            self.components, net.trained_roles.cpu(), net.trained_depths.cpu(), map_embeddings
        )
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
        reason = implementation_blocker(implementation, self.config.directions, self._params)
        if reason:
            raise ValueError(f"L3RS: implementation={implementation!r} is not possible here: {reason}")
        watch = loss_from if loss_from is not None else model
        if watch is not None:
            self.capture_loss_from(watch)
        self._reset_run_state()
        self.record_dynamics = False
        self.dynamics: list[dict[str, Tensor | int]] = []
        self.last_rate: Tensor | None = None
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

    @property
    def rate_multipliers(self) -> Tensor:
        """Each tensor's rate-adaptation multiplier, in component order (1 without adaptation)."""
        adapt = next((c for c in self._controllers if isinstance(c, RateAdaptation)), None)
        return torch.exp(adapt.log_multiplier) if adapt else torch.ones(len(self._params), dtype=torch.float64)

    @property
    def rate_multiplier(self) -> float:
        """The geometric mean of :attr:`rate_multipliers`."""
        return math.exp(float(torch.log(self.rate_multipliers).mean()))

    # --------------------------------------------------------------- state
    def _reset_run_state(self) -> None:
        n, k = len(self._params), len(self.config.directions)
        self._step = 0
        self._ema = EMAFeatures(self.config, n, self.device)
        self._pnorm = torch.full((n,), math.nan, dtype=torch.float64)
        self._dirlog = torch.zeros(n, k, device=self.device)
        self._nonfinite = torch.zeros(n, dtype=torch.long)
        self._skipped_loss = 0
        self._controllers = controllers_for(self.config, n)

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
            **{c.key: c.state() for c in self._controllers},
        }
        return out

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
        names = {id(p): c.name for p, c in zip(self._params, self.components)}
        check_state_shapes(state_dict, [p for g in self.param_groups for p in g["params"]], names)
        super().load_state_dict(state_dict)
        align_state_layouts(self.state, self._params)
        self.net.load_state_dict(extra["net"], strict=True)
        self._step = int(extra["step"])
        if extra["total_steps"] is not None:
            self.total_steps = int(extra["total_steps"])
        self._ema.load(extra)
        self._pnorm = extra["pnorm"].to(torch.float64).cpu().clone()
        self._dirlog = extra["dirlog"].to(self._dirlog).clone()
        self._nonfinite = extra["nonfinite"].to(torch.long).cpu().clone()
        self._skipped_loss = int(extra["skipped_loss"])
        for controller in self._controllers:
            if controller.key in extra:
                controller.load(extra[controller.key], self._params)

    # ---------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None, *, loss: Tensor | float | None = None) -> Tensor | None:  # type: ignore[override]
        """One L3RS update. Needs the step's training loss (argument, closure or
        :meth:`observe_loss`). Returns the loss."""
        loss_t, returned = self._loss.for_step(closure, loss, _MISSING_LOSS)
        check_group_rates(self.param_groups)
        resolve_horizon(self, " (pass total_steps=T, call set_total_steps(T) or use L3RSCallback when T is known)")
        self._step += 1
        active = active_components(self._params, self.components)
        if not active:
            return returned
        for j in active:
            init_direction_state(self.state[self._params[j]], self._params[j], self.config.directions)
        loss_finite = bool(torch.isfinite(loss_t))
        if not loss_finite:
            self._skipped_loss += 1
        self._update(active, loss_t.to(self.device), loss_finite)
        return returned

    def _update(self, active: list[int], loss: Tensor, loss_finite: bool) -> None:
        """Probe the base directions, run the features and the network once for all
        components, scale the rates through the controllers, commit the coefficients."""
        cfg, dev = self.config, self.device
        hyper = self.net.hyper_values()
        fill_missing_norms(self._pnorm, self._params, active)
        states = [self.state[p] for p in self._params]
        steps = {states[j]["step"] + 1 for j in active}
        backend = choose_backend(self.implementation, steps, self.config.directions, self._params, states)
        probe = backend.probe(self, active, hyper)
        finite = torch.isfinite(probe.gnorm) & torch.isfinite(probe.dnorm).all(dim=1) & loss_finite
        act = torch.tensor(active, dtype=torch.long)
        self._nonfinite[act[~finite]] += 1
        view = StepView(self._params, self.state, active, finite, probe.gnorm, probe.agreement, sample_offset(self))
        for controller in self._controllers:
            controller.observe_probe(view)

        n = len(self._params)
        rows = torch.zeros(n, dtype=torch.bool)
        rows[act[finite]] = True
        stats = norm_statistics(self._pnorm, probe.gnorm, float(loss) if loss_finite else None, act, n, FEATURE_EPS)
        self._ema.update(stats.to(dev, torch.float32), rows.to(dev))
        act_dev = act.to(dev)
        dl = direction_log_norms(probe.dnorm, FEATURE_EPS).to(self._dirlog)
        self._dirlog[act_dev] = torch.where(finite.to(dev)[:, None], dl.to(dev), self._dirlog[act_dev])
        feats = assemble(
            self._ema.read(), time_features(cfg, self._step, self.total_steps).to(dev), self._dirlog, self.descriptor
        )
        rate, mix = self.net(feats, self.component_map)
        for controller in self._controllers:
            rate = controller.modulate(rate, active)
        self.last_rate, self.last_mix = rate, mix
        if self.record_dynamics:
            self.dynamics.append(
                {"step": self._step, "rate": rate.detach().cpu().clone(), "mix": mix.detach().cpu().clone()}
            )

        rate64 = rate.detach().to("cpu", torch.float64)[act]
        mix64 = mix.detach().to("cpu", torch.float64)[act]
        # A non-finite network output (meta-weights that overflow on unusual features) is
        # skipped like a non-finite gradient: nothing non-finite reaches the weights.
        net_ok = torch.isfinite(rate64) & torch.isfinite(mix64).all(dim=1)
        self._nonfinite[act[finite & ~net_ok]] += 1
        finite = finite & net_ok
        groups = [self.param_groups[self._group_index[j]] for j in active]
        lr = torch.tensor([g["lr"] for g in groups], dtype=torch.float64)
        wd = torch.tensor([g["weight_decay"] for g in groups], dtype=torch.float64)
        numel = self._numel[act] if cfg.norm == "rms" else None
        coef, decay = coefficients(rate64, mix64, probe.dnorm, lr, wd, finite, numel)
        backend.commit(self, active, coef, decay, finite, probe)
