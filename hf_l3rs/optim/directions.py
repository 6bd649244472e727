"""Base directions (docs/design.md §1): the update directions L3RS mixes, as a registry by name.

Each direction keeps its own per-parameter state and declares its meta-learned
hyper-parameters. It is written twice: ``reference`` (one tensor, reads like the paper)
and ``compute`` (``torch._foreach_*`` over a list). Both return the direction and the
*new* state without writing it, so L3RS can skip a component whose gradient is not
finite and leave its state untouched. Adding a direction never touches the L3RS step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

State = dict[str, Tensor]


@dataclass(frozen=True)
class Hyper:
    """A meta-learned hyper-parameter: stored unconstrained, mapped by ``transform``."""

    transform: str  # "sigmoid" (betas) or "exp" (epsilons, decay rates)
    default: float

    def to_raw(self, value: float) -> float:
        if self.transform == "sigmoid":
            return math.log(value / (1.0 - value))
        return math.log(value)

    def from_raw(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw) if self.transform == "sigmoid" else torch.exp(raw)


class BaseDirection:
    """One base optimizer's direction ``d`` (the update is ``p -= ...·d``)."""

    name: ClassVar[str]
    #: the direction this one generalises (same hyper-parameters and more): meta-weights
    #: trained with that one may load with this one in its place (``hub.with_directions``)
    extends: ClassVar[str | None] = None
    hyper_defaults: ClassVar[dict[str, Hyper]] = {}
    state_keys: ClassVar[tuple[str, ...]] = ()

    def init_state(self, p: Tensor) -> State:
        return {k: torch.zeros_like(p, memory_format=torch.preserve_format) for k in self.state_keys}

    def reference(self, p: Tensor, g: Tensor, state: State, hp: dict[str, float], step: int) -> tuple[Tensor, State]:
        raise NotImplementedError

    def compute(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        states: dict[str, list[Tensor]],
        hp: dict[str, float],
        step: int,
    ) -> tuple[list[Tensor], dict[str, list[Tensor]]]:
        raise NotImplementedError


DIRECTIONS: dict[str, BaseDirection] = {}


def register_direction(cls: type[BaseDirection]) -> type[BaseDirection]:
    """Class decorator: make a direction available to ``L3RSConfig.directions``."""
    if cls.name in DIRECTIONS:
        raise ValueError(f"base direction {cls.name!r} is already registered")
    DIRECTIONS[cls.name] = cls()
    return cls


def get_direction(name: str) -> BaseDirection:
    try:
        return DIRECTIONS[name]
    except KeyError:
        raise KeyError(f"unknown base direction {name!r}; known: {sorted(DIRECTIONS)}") from None


_BETA1 = Hyper("sigmoid", 0.9)
_BETA2 = Hyper("sigmoid", 0.999)
_EPS = Hyper("exp", 1e-8)


@register_direction
class SGD(BaseDirection):
    """Plain gradient (no momentum), as in the paper's L3RS."""

    name = "sgd"

    def reference(self, p, g, state, hp, step):
        return g.clone(), {}

    def compute(self, params, grads, states, hp, step):
        return list(grads), {}


@register_direction
class WeightDecay(BaseDirection):
    """The parameter itself: mixing it in is a learned, per-layer decay."""

    name = "weight_decay"

    def reference(self, p, g, state, hp, step):
        return p.clone(), {}

    def compute(self, params, grads, states, hp, step):
        return list(params), {}


def widened(t: Tensor) -> Tensor:
    """``t`` in the dtype its directions are computed in: float16 as float32, as torch's fused
    AdamW does (Adam's ε, 1e-8, and a squared gradient underflow in half precision and every
    step would be skipped); any other tensor as it is."""
    return t.to(torch.float32) if t.dtype == torch.float16 else t


def init_direction_state(state: dict, p: Tensor, directions: tuple[str, ...]) -> None:
    """Fill torch's per-tensor ``state`` with each direction's buffers (``"adam.exp_avg"``, …)
    and ``step`` 0, once: a tensor seen before keeps its state (float32 for a float16 tensor)."""
    if "step" in state:
        return
    state["step"] = 0
    for dname in directions:
        for key, value in get_direction(dname).init_state(widened(p)).items():
            state[f"{dname}.{key}"] = value


def _adam_moments(hp: dict[str, float], step: int) -> tuple[float, float, float, float, float]:
    b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]
    return b1, b2, eps, 1.0 - b1**step, 1.0 - b2**step


@register_direction
class Adam(BaseDirection):
    """Bias-corrected Adam: m̂ / (√v̂ + ε)."""

    name = "adam"
    hyper_defaults = {"beta1": _BETA1, "beta2": _BETA2, "eps": _EPS}
    state_keys = ("exp_avg", "exp_avg_sq")

    def reference(self, p, g, state, hp, step):
        b1, b2, eps, bc1, bc2 = _adam_moments(hp, step)
        m = b1 * state["exp_avg"] + (1 - b1) * g
        v = b2 * state["exp_avg_sq"] + (1 - b2) * g * g
        d = (m / bc1) / (torch.sqrt(v / bc2) + eps)
        return d, {"exp_avg": m, "exp_avg_sq": v}

    def compute(self, params, grads, states, hp, step):
        b1, b2, eps, bc1, bc2 = _adam_moments(hp, step)
        m = torch._foreach_mul(states["exp_avg"], b1)
        torch._foreach_add_(m, grads, alpha=1 - b1)
        v = torch._foreach_mul(states["exp_avg_sq"], b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_mul_(denom, 1.0 / math.sqrt(bc2))
        torch._foreach_add_(denom, eps)
        d = torch._foreach_mul(m, 1.0 / bc1)
        torch._foreach_div_(d, denom)
        return d, {"exp_avg": m, "exp_avg_sq": v}


@register_direction
class Lamb(BaseDirection):
    """Adam direction plus λ·p (LAMB's trust ratio cancels after normalisation)."""

    name = "lamb"
    hyper_defaults = {"beta1": _BETA1, "beta2": _BETA2, "eps": Hyper("exp", 1e-6), "weight_decay": Hyper("exp", 0.01)}
    state_keys = ("exp_avg", "exp_avg_sq")

    def reference(self, p, g, state, hp, step):
        d, new = DIRECTIONS["adam"].reference(p, g, state, hp, step)
        return d + hp["weight_decay"] * p, new

    def compute(self, params, grads, states, hp, step):
        d, new = DIRECTIONS["adam"].compute(params, grads, states, hp, step)
        torch._foreach_add_(d, params, alpha=hp["weight_decay"])
        return d, new


@register_direction
class Lion(BaseDirection):
    """sign(β1·m + (1−β1)·g), then m ← β2·m + (1−β2)·g."""

    name = "lion"
    hyper_defaults = {"beta1": _BETA1, "beta2": Hyper("sigmoid", 0.99)}
    state_keys = ("exp_avg",)

    def reference(self, p, g, state, hp, step):
        b1, b2 = hp["beta1"], hp["beta2"]
        m = state["exp_avg"]
        d = torch.sign(b1 * m + (1 - b1) * g)
        return d, {"exp_avg": b2 * m + (1 - b2) * g}

    def compute(self, params, grads, states, hp, step):
        b1, b2 = hp["beta1"], hp["beta2"]
        c = torch._foreach_mul(states["exp_avg"], b1)
        torch._foreach_add_(c, grads, alpha=1 - b1)
        d = torch._foreach_sign(c)
        m = torch._foreach_mul(states["exp_avg"], b2)
        torch._foreach_add_(m, grads, alpha=1 - b2)
        return d, {"exp_avg": m}


@register_direction
class Adamax(BaseDirection):
    """m̂ / (max(β2·u, |g|) + ε)."""

    name = "adamax"
    hyper_defaults = {"beta1": _BETA1, "beta2": _BETA2, "eps": _EPS}
    state_keys = ("exp_avg", "exp_inf")

    def reference(self, p, g, state, hp, step):
        b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]
        m = b1 * state["exp_avg"] + (1 - b1) * g
        u = torch.maximum(b2 * state["exp_inf"], g.abs())
        return (m / (1 - b1**step)) / (u + eps), {"exp_avg": m, "exp_inf": u}

    def compute(self, params, grads, states, hp, step):
        b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]
        m = torch._foreach_mul(states["exp_avg"], b1)
        torch._foreach_add_(m, grads, alpha=1 - b1)
        u = torch._foreach_mul(states["exp_inf"], b2)
        torch._foreach_maximum_(u, torch._foreach_abs(grads))
        denom = torch._foreach_add(u, eps)
        d = torch._foreach_mul(m, 1.0 / (1 - b1**step))
        torch._foreach_div_(d, denom)
        return d, {"exp_avg": m, "exp_inf": u}


def damped_eigh(r: Tensor, damping: float | Tensor) -> tuple[Tensor, Tensor] | None:
    """Eigenvalues and vectors of R + damping·λ_max·I for a symmetric PSD matrix R (negative
    round-off clamped to 0); None if R is not finite or its eigendecomposition fails. Shared
    by the ``shampoo`` direction and :class:`~hf_l3rs.optim.foof.FOOF`."""
    if not bool(torch.isfinite(r).all()):
        return None
    try:
        e, v = torch.linalg.eigh(r)
    except RuntimeError:  # torch.linalg.LinAlgError: ill-conditioned beyond LAPACK's reach
        return None
    e = e.clamp(min=0.0)
    return e + damping * e.max().clamp(min=torch.finfo(e.dtype).tiny), v


def _inverse_root(r: Tensor, damping: float | Tensor) -> Tensor | None:
    """(R + damping·λ_max·I)^(-1/2); None where :func:`damped_eigh` fails (the caller then
    returns a non-finite direction, which the L3RS step skips like a non-finite gradient,
    leaving the state as it was)."""
    eig = damped_eigh(r, damping)
    if eig is None:
        return None
    e, v = eig
    return (v * e.rsqrt()) @ v.T


@register_direction
class Shampoo(BaseDirection):
    """Adam's momentum, preconditioned on the input side: m̂ · R̂^(-1/2) with R the EMA of GᵀG
    over the tensor's fan-in (one-sided Shampoo, docs/design.md §1 "Base directions").

    Why: a classifier head trained on pooled post-ReLU features gets gradients dominated by
    the features' shared mean; Adam's per-coordinate scaling keeps that component, while the
    fan-in whitening removes it and one step lands near the class centroids (measured on the
    kanji tasks: docs/adr/0006 "A whitened head direction"). Only linear layers' weights
    (2-D) up to ``max_fan_in`` inputs are preconditioned (one eigendecomposition each per
    step); convolutions (measured: no significant gain for twice the step time), vectors and
    wider layers get Adam's diagonal direction with the same hyper-parameters.
    It *extends* ``adam``: meta-weights trained with Adam can start from it (``load_net``)."""

    name = "shampoo"
    extends = "adam"
    max_fan_in = 512
    hyper_defaults = {"beta1": _BETA1, "beta2": _BETA2, "eps": _EPS, "damping": Hyper("exp", 1e-4)}
    state_keys = ("exp_avg", "exp_avg_sq", "precond")

    def eligible(self, p: Tensor) -> bool:
        return p.dim() == 2 and p.shape[1] <= self.max_fan_in

    def init_state(self, p: Tensor) -> State:
        matrix = self.eligible(p)
        fan_in = p.shape[1] if matrix else 0
        return {
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": p.new_zeros(0) if matrix else torch.zeros_like(p, memory_format=torch.preserve_format),
            "precond": p.new_zeros(fan_in, fan_in, dtype=torch.float64) if matrix else p.new_zeros(0),
        }

    def reference(self, p, g, state, hp, step):
        if state["precond"].numel() == 0:
            d, new = DIRECTIONS["adam"].reference(p, g, state, hp, step)
            return d, {**new, "precond": state["precond"]}
        b1, b2, _, bc1, bc2 = _adam_moments(hp, step)
        m = b1 * state["exp_avg"] + (1 - b1) * g
        g2 = g.double()
        r = b2 * state["precond"] + (1 - b2) * (g2.T @ g2)
        root = _inverse_root(r / bc2, hp["damping"])
        if root is None:  # not finite: the step skips this component (L3RS checks ‖d‖)
            d = torch.full_like(m, math.nan)
        else:
            d = ((m / bc1).double() @ root).to(m.dtype)
        return d, {"exp_avg": m, "exp_avg_sq": state["exp_avg_sq"], "precond": r}

    def compute(self, params, grads, states, hp, step):
        n = len(params)
        out: list[Tensor | None] = [None] * n
        new: dict[str, list[Tensor | None]] = {k: [None] * n for k in self.state_keys}
        diagonal = [i for i in range(n) if states["precond"][i].numel() == 0]
        if diagonal:
            sub = {k: [states[k][i] for i in diagonal] for k in ("exp_avg", "exp_avg_sq")}
            ps, gs = [params[i] for i in diagonal], [grads[i] for i in diagonal]
            d, st = DIRECTIONS["adam"].compute(ps, gs, sub, hp, step)
            for pos, i in enumerate(diagonal):
                out[i] = d[pos]
                new["exp_avg"][i], new["exp_avg_sq"][i] = st["exp_avg"][pos], st["exp_avg_sq"][pos]
                new["precond"][i] = states["precond"][i]
        for i in range(n):
            if out[i] is None:
                one = {k: states[k][i] for k in self.state_keys}
                out[i], st = self.reference(params[i], grads[i], one, hp, step)
                for k in self.state_keys:
                    new[k][i] = st[k]
        return out, new  # type: ignore[return-value]
