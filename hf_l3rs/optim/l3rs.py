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

from hf_l3rs.optim.adapters import adapter_rate_scales, log_adapter_scales, lora_matrices
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
    GradientShare,
    LossProgress,
    assemble,
    loss_statistic,
    rate_schedule_factor,
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


#: A projected square norm at most this share of the original is rounding, not a direction.
_PARALLEL = 1e-12


def _sums(tensors: list[Tensor]) -> Tensor:
    """Each tensor's sum in float64, on the CPU."""
    return torch.tensor([float(t.sum(dtype=torch.float64)) for t in tensors], dtype=torch.float64)


def _share_layout(
    roles: list[str], depths: list[float], numels: list[int], config: L3RSConfig
) -> tuple[list[int], int | None, Tensor]:
    """The gradient share's parts: the convolutions shallower than the head (the deepest
    linear tensor), the head, and which tensors its multiplier scales (of
    ``gradient_share_roles``, shallower than the head). Nothing where it is off, or the model
    has no linear head, or its backbone is not convolutional (convolutions hold less than half
    of its conv and linear weights: a ViT's patch stem does not make it a CNN)."""
    none = ([], None, torch.zeros(len(roles)))
    linear = [j for j, r in enumerate(roles) if r == "linear"]
    if config.gradient_share_reference <= 0 or not linear:
        return none
    head = max(linear, key=lambda j: (depths[j], j))
    conv = [j for j, r in enumerate(roles) if r == "conv" and depths[j] < depths[head]]
    body_linear = [j for j in linear if depths[j] < depths[head]]
    if sum(numels[j] for j in conv) <= sum(numels[j] for j in body_linear):
        return none
    targets = [float(r in config.gradient_share_roles and depths[j] < depths[head]) for j, r in enumerate(roles)]
    return conv, head, torch.tensor(targets)


def _tangential(params: list[Tensor], grads: list[Tensor], moms: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """g·m, |g|² and |m|² per tensor with g and m projected off the tensor's weights p
    (matrices and kernels; a vector's are left whole):
    x⊥ = x − (x·p̂)p̂, so g⊥·m⊥ = g·m − (g·p)(m·p)/|p|² and |x⊥|² = |x|² − (x·p)²/|p|²
    (docs/design.md §1 "Rate adaptation"). These are differences of nearly equal numbers
    when g is almost parallel to p, so every product is taken in float64, one tensor at a
    time. A zero tensor has no direction to remove; what is left of a vector parallel to p
    (≤ 1e-12 of its square norm, rounding) counts as zero."""
    rows = []
    for p, g, m in zip(params, grads, moms):
        p, g, m = p.double(), g.double(), m.double()
        # A vector (a norm's gain, a bias) keeps its whole signal: its size is its function.
        pv = p if p.dim() >= 2 else torch.zeros_like(p)
        rows.append(
            torch.stack([(g * m).sum(), (g * g).sum(), (m * m).sum(), (g * pv).sum(), (m * pv).sum(), (p * p).sum()])
        )
    gm, gg, mm, gp, mp, pp = torch.stack(rows).cpu().unbind(1)
    inv = torch.where(pp > 0, 1.0 / pp.clamp_min(1e-300), torch.zeros_like(pp))
    g_perp, m_perp = gg - gp * gp * inv, mm - mp * mp * inv
    g_perp = torch.where(g_perp > _PARALLEL * gg, g_perp, torch.zeros_like(gg))
    m_perp = torch.where(m_perp > _PARALLEL * mm, m_perp, torch.zeros_like(mm))
    both = (g_perp > 0) & (m_perp > 0)
    return torch.where(both, gm - gp * mp * inv, torch.zeros_like(gm)), g_perp, m_perp


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
        # docs/design.md §1 "Role prior": a fixed multiplier per role, 1 for roles not listed.
        self._role_scale = torch.tensor(
            [self.config.role_rate_scale.get(role, 1.0) for role in self.presented_roles], dtype=torch.float32
        )
        if self.config.adapter_steps == "weight":  # docs/design.md §1 "Low-rank adapters"
            adapters = adapter_rate_scales(model, self._params)
            self._role_scale = self._role_scale * adapters
            log_adapter_scales(adapters)
        # docs/design.md §1 "A head on a frozen body": which tensors calibrate their step.
        self._calibrated_head = self._frozen_body_head(model, lora_matrices(model, self._params))
        self._calibrates_head = self.config.head_calibration_growth > 1 and bool(self._calibrated_head.any())
        self._role_scale = self._role_scale.to(self.device)
        # docs/design.md §1 "Rate adaptation": the log floor of each component's multiplier.
        self._adapt_floor = torch.tensor(
            [
                math.log(max(self.config.adaptation_min, self.config.role_adaptation_min.get(role, 0.0)))
                for role in self.presented_roles
            ],
            dtype=torch.float64,
        )
        # docs/design.md §1 "The backbone's gradient share": which tensors it reads and scales.
        self._share_conv, self._share_head, self._share_targets = _share_layout(
            self.presented_roles, [c.depth for c in self.components], [c.numel for c in self.components], self.config
        )
        self._share_targets = self._share_targets.to(self.device)
        self._share_head_mask = torch.zeros(len(self.presented_roles), dtype=torch.bool)
        if self._share_head is not None:
            self._share_head_mask[self._share_head] = True
        boost = self.config.gradient_share_boost  # the exponent of m / from per scaled tensor
        self._share_boost_powers = torch.tensor(
            [boost.get(r, 1.0) - 1.0 if t else 0.0 for r, t in zip(self.presented_roles, self._share_targets.tolist())],
            dtype=torch.float64,
        )
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
        self._loss_progress = LossProgress()
        self._floors_released = False
        cfg = self.config
        self._share = GradientShare(cfg.gradient_share_reference, cfg.gradient_share_max, cfg.gradient_share_steps)
        self._head_multiplier, self._head_calibrated, self._head_growths = 1.0, False, 0
        self._head_before: list[float] = []  # the multiplier before each of the last growth steps
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
            **self._loss_progress.state(),
            "floors_released": self._floors_released,
            **self._share.state(),
            "head_multiplier": self._head_multiplier,
            "head_calibrated": self._head_calibrated,
            "head_growths": self._head_growths,
            "head_before": list(self._head_before),
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
        self._loss_progress.load(extra)  # absent before role floors could be released: a fresh tracker
        self._floors_released = bool(extra.get("floors_released", False))
        self._share.load(extra)  # absent before the gradient share existed: undecided, ×1
        self._head_multiplier = float(extra.get("head_multiplier", 1.0))  # absent before head calibration
        self._head_calibrated = bool(extra.get("head_calibrated", False))
        self._head_growths = int(extra.get("head_growths", 0))  # absent before the growth accelerated
        self._head_before = [float(v) for v in extra.get("head_before", [])]
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
        release = cfg.role_adaptation_min_release
        calibrating = self.calibrates_head
        if (release > 0 or calibrating) and loss_finite:
            self._loss_progress.update(loss_value)
            self._floors_released = self._floors_released or (release > 0 and self._loss_progress.reached(release))
            if calibrating:
                self._calibrate_head(loss_value)
        if self._share_conv and not self._share.decided:
            self._record_share(active, finite, gnorm)
        if cfg.rate_adaptation == "hypergradient":
            self._adapt_rate(active, finite, gnorm)

        # Features and the meta-network: one batched call for all components.
        n = len(self._params)
        rows = torch.zeros(n, dtype=torch.bool)
        rows[act[finite]] = True
        stats = torch.zeros(n, 3, dtype=torch.float64)
        stats[act, 0] = torch.log(self._pnorm[act] + cfg.feature_eps)
        stats[act, 1] = torch.log(torch.nan_to_num(gnorm, nan=0.0, posinf=0.0) + cfg.feature_eps)
        stats[:, 2] = loss_statistic(cfg, loss_value) if loss_finite else 0.0
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
        schedule = rate_schedule_factor(cfg, self._step, self.total_steps)
        rate = rate * schedule
        if cfg.step_scale != "base_lr":  # docs/adr/0003: d × the network's modulation
            if self._distance.reference is None:  # the network's level at the first step is d's unit
                self._distance.reference = float(torch.exp(torch.log(rate.detach()[act]).mean()))
            rate = rate * (self._distance.d / self._distance.reference).to(rate)
        if cfg.role_rate_scale or cfg.adapter_steps != "tensor":
            rate = rate * self._role_scale.to(rate)
        if cfg.rate_adaptation != "none":
            rate = rate * torch.exp(self._log_adapt).to(rate)
        if self._share.factor != 1.0:
            rate = rate * (1 + (self._share.factor - 1) * self._share_targets.to(rate))
            if self.gradient_share_boost != 1.0:
                rate = rate * torch.pow(self.gradient_share_boost, self._share_boost_powers).to(rate)
            short, head = self.short_horizon_boost, self.share_head_factor
            if short != 1.0:
                rate = rate * torch.where(self._share_boost_powers > 0, short, 1.0).to(rate)
            if head != 1.0:
                rate = rate * torch.where(self._share_head_mask, head, 1.0).to(rate)
        if self._head_multiplier != 1.0:
            rate = rate * (1 + (self._head_multiplier - 1) * self._calibrated_head.to(rate))
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
            self._observe_distance(active, finite, lr * schedule)
        backend.commit(self, active, coef, decay, finite, probe)

    def _observe_distance(self, active: list[int], finite: Tensor, multiplier: Tensor) -> None:
        """Fold this step into the distance estimate (weights not yet moved), finite tensors only."""
        ok = [pos for pos, f in enumerate(finite.tolist()) if f]
        idx = [active[pos] for pos in ok]
        params = [self._params[j] for j in idx]
        d = self._distance.d[idx] if idx else torch.zeros(0, dtype=torch.float64)
        beta2 = self.net.hyper_values().get("adam", {}).get("beta2", 0.999)
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
    def floors_released(self) -> bool:
        """Whether the role floors of the adaptation have been released for this run
        (``role_adaptation_min_release``)."""
        return self._floors_released

    @property
    def calibrates_head(self) -> bool:
        """Whether this run calibrates a frozen body's head (docs/design.md §1 "A head on a
        frozen body"): the calibration is on and part of the model is frozen."""
        return self._calibrates_head

    @property
    def head_multiplier(self) -> float:
        """The frozen body's head's step multiplier (docs/design.md §1 "A head on a frozen
        body"): 1 where the whole model trains or the calibration is off."""
        return self._head_multiplier

    def _frozen_body_head(self, model: nn.Module | None, lora: Tensor) -> Tensor:
        """[components] 1.0 for the head whose step calibrates on the loss: with part of the
        model frozen, the deepest trained linear tensor that is not a LoRA matrix and every
        bias deeper than it; zeros otherwise (whole-model training, no model known, no head)."""
        none = torch.zeros(len(self.components))
        if model is None or all(p.requires_grad for p in model.parameters()):
            return none
        linear = [j for j, r in enumerate(self.presented_roles) if r == "linear" and not bool(lora[j])]
        if not linear:
            return none
        head = max(linear, key=lambda j: self.components[j].depth)
        depth = self.components[head].depth
        return torch.tensor(
            [
                float(j == head or (self.presented_roles[j] == "bias" and c.depth > depth))
                for j, c in enumerate(self.components)
            ]
        )

    def _calibrate_head(self, loss: float) -> None:
        """One step of the head's calibration: grow while the loss has not come down, then keep;
        back off and keep if the loss rose above the first one by the brake's margin."""
        cfg = self.config
        progress = self._loss_progress
        if self._head_calibrated or progress.count < 2:
            return
        overshot = progress.first > 0 and loss > (1 + cfg.head_calibration_rise) * progress.first
        if cfg.head_calibration_rise > 0 and overshot:
            if cfg.head_calibration_backoff > 0 and self._head_before:
                self._head_multiplier = self._head_before[0]  # before the last `backoff` growth steps
            self._head_calibrated = True
            logger.info("L3RS: the frozen body's head overshot; its step backs off to x%.3g", self._head_multiplier)
            return
        if progress.reached(1 - cfg.head_calibration_drop):
            self._head_calibrated = True
            logger.info("L3RS: the frozen body's head calibrated its step: x%.3g", self._head_multiplier)
            return
        factor = cfg.head_calibration_growth * cfg.head_calibration_acceleration**self._head_growths
        grown = min(cfg.head_calibration_max, self._head_multiplier * factor)
        if grown > self._head_multiplier:  # at the cap nothing grows: nothing to undo, no faster next step
            if cfg.head_calibration_backoff > 0:
                self._head_before = [*self._head_before, self._head_multiplier][-cfg.head_calibration_backoff :]
            self._head_multiplier = grown
            self._head_growths += 1

    @property
    def gradient_share_factor(self) -> float:
        """The backbone's rate multiplier from its gradient share (docs/design.md §1): 1 until
        ``gradient_share_steps`` steps have been seen, where it is off, or without convolutions."""
        return self._share.factor

    @property
    def gradient_share_boost(self) -> float:
        """m / ``gradient_share_boost_from`` while the from-scratch boost is on (m above it,
        through step ``gradient_share_boost_steps``), else 1 (docs/design.md §1)."""
        cfg, m = self.config, self._share.factor
        if not cfg.gradient_share_boost or m <= cfg.gradient_share_boost_from:
            return 1.0
        return m / cfg.gradient_share_boost_from if self._step <= cfg.gradient_share_boost_steps else 1.0

    @property
    def short_horizon_boost(self) -> float:
        """(H / T) ** power on the boosted roles for a run from scratch (m above
        ``gradient_share_boost_from``) whose known horizon T is shorter than H =
        ``gradient_share_boost_horizon``, for the whole run; else 1 (docs/design.md §1)."""
        cfg, m, horizon = self.config, self._share.factor, self.config.gradient_share_boost_horizon
        if not (cfg.gradient_share_boost and horizon > 0 and m > cfg.gradient_share_boost_from):
            return 1.0
        if self.total_steps is None or self.total_steps >= horizon:
            return 1.0
        return (horizon / self.total_steps) ** cfg.gradient_share_boost_horizon_power

    @property
    def share_head_factor(self) -> float:
        """m ** -``gradient_share_head_power`` on the head's weight where 1 < m <=
        ``gradient_share_boost_from`` (a pretrained checkpoint whose backbone must move), else 1
        (docs/design.md §1)."""
        cfg, m = self.config, self._share.factor
        if cfg.gradient_share_head_power <= 0 or not 1.0 < m <= cfg.gradient_share_boost_from:
            return 1.0
        return m**-cfg.gradient_share_head_power

    def _record_share(self, active: list[int], finite: Tensor, gnorm: Tensor) -> None:
        """One step's ‖g‖ of the convolutions over the head's, when all of them are finite."""
        pos = {j: i for i, j in enumerate(active)}
        needed = [*self._share_conv, self._share_head]
        if not all(j in pos and bool(finite[pos[j]]) for j in needed):
            return
        g = gnorm.to("cpu", torch.float64)
        conv = math.sqrt(sum(float(g[pos[j]]) ** 2 for j in self._share_conv))
        self._share.record(conv, float(g[pos[self._share_head]]))

    @property
    def rate_multipliers(self) -> Tensor:
        """Each tensor's adaptation multiplier, in component order (all equal per model)."""
        return torch.exp(self._log_adapt)

    def _adapt_rate(self, active: list[int], finite: Tensor, gnorm: Tensor) -> None:
        """docs/design.md §1 "Rate adaptation": log a += β·(cos(g_t, m_{t-1}) − target), the
        cosine over all finite components concatenated (scope ``model``) or each component's
        own (scope ``component``; Adam's momentum before this step's update), clamped to
        [min, max]. A component without momentum yet (its first step) keeps its multiplier."""
        cfg = self.config
        ok = [pos for pos, f in enumerate(finite.tolist()) if f]
        if not ok:
            return
        params = [self._params[active[pos]] for pos in ok]
        grads = [p.grad for p in params]
        moms = [self.state[p][f"{cfg.momentum_direction}.exp_avg"] for p in params]
        if cfg.adaptation_signal == "tangential":
            dots, gg, mm = _tangential(params, grads, moms)
        else:
            dots = _sums(torch._foreach_mul(grads, moms))
            gg = gnorm[ok].to(torch.float64) ** 2
            mm = torch.stack(torch._foreach_norm(moms)).to("cpu", torch.float64) ** 2
        dot, g_all, m_all = float(dots.sum()), float(gg.sum()), float(mm.sum())
        if not (g_all > 0 and m_all > 0 and math.isfinite(dot)):
            return  # the first step (no momentum yet) or nothing to compare
        self.last_agreement = max(-1.0, min(1.0, dot / math.sqrt(g_all * m_all)))
        high = math.log(cfg.adaptation_max)
        floor = self._adapt_floor
        if self._floors_released:  # role_adaptation_min_release: every component back to adaptation_min
            floor = floor.clamp(max=math.log(cfg.adaptation_min))
        if cfg.adaptation_scope == "model":
            step = cfg.hypergradient_rate * (self.last_agreement - cfg.adaptation_target)
            self._log_adapt = torch.maximum((self._log_adapt + step).clamp(max=high), floor)
            return
        seen = (gg > 0) & (mm > 0) & torch.isfinite(dots)
        cos = (dots / torch.sqrt(gg * mm).clamp_min(1e-300)).clamp(-1.0, 1.0)
        idx = torch.tensor([active[pos] for pos in ok], dtype=torch.long)[seen]
        change = cfg.hypergradient_rate * (cos[seen] - cfg.adaptation_target)
        self._log_adapt[idx] = torch.maximum((self._log_adapt[idx] + change).clamp(max=high), floor[idx])

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
