"""Every hand-designed optimizer the project compares against, by name, in one table.

A name is ``<kind>-<schedule>[-head]-<lr>``: ``adam-cos-1e-3``, ``nesterov-const-3e-2``,
``adamw-warmcos-1e-3``, ``adam-const-head-1e-3``. Without the rate (``adam-cos``) it names a
*family*, which the tuned benchmark sweeps over rates. Kinds:

- ``sgd``: plain SGD; ``momentum``: SGD with heavy-ball momentum 0.9; ``nesterov``: SGD with
  Nesterov momentum 0.9;
- ``adam``; ``adamw`` (decoupled weight decay 0.01, torch's default); ``rmsprop``;
- ``shampoo``: Adam's momentum whitened over each linear layer's inputs (one-sided Shampoo,
  the base direction of that name run on its own; Adam's direction elsewhere);
- ``foof``: each linear layer's gradient times the inverse second moment of its inputs
  (FOOF, :class:`~hf_l3rs.optim.foof.FOOF`; SGD elsewhere). It hooks the model's layers, so
  it is built with the model (``build(..., model=...)``; ``factory()`` passes it).

Schedules (folded into the optimizer's own ``step()``, so plain loops need no scheduler):
``const``; ``cos`` (cosine to zero over the run); ``warmcos`` (linear warm-up over the first
10 % of the run, then cosine to zero). Schedule-dependent optimizers are run once per horizon;
constant ones once to the longest horizon and read at every horizon. ``head`` trains only the
classifier head (a linear probe; the evaluation computes the backbone features once).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from hf_l3rs.optim.direction_optimizer import DirectionOptimizer
from hf_l3rs.optim.foof import FOOF

#: kind -> (torch optimizer class, fixed keyword arguments)
KINDS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {"weight_decay": 0.01}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "shampoo": (DirectionOptimizer, {"direction": "shampoo"}),
    "foof": (FOOF, {}),
}

#: Kinds that read the model's activations: their optimizer takes ``model=`` (no fused form).
NEEDS_MODEL = frozenset({"foof"})

#: Fraction of the run spent in linear warm-up by the ``warmcos`` schedule.
WARMUP_FRACTION = 0.1


def _cosine(t: int, total: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(t, total) / total))


def _warmup_cosine(t: int, total: int) -> float:
    warm = max(1, round(WARMUP_FRACTION * total))
    if t < warm:
        return (t + 1) / warm
    return _cosine(t - warm, max(1, total - warm))


#: schedule -> multiplier of the base rate at step t (0-based) of a run of ``total`` steps;
#: ``None`` for a constant rate.
SCHEDULES: dict[str, Callable[[int, int], float] | None] = {
    "const": None,
    "cos": _cosine,
    "warmcos": _warmup_cosine,
}

_RATE = r"([0-9.]+e-?[0-9]+|[0-9.]+)"
_KIND_SCHED = rf"({'|'.join(KINDS)})-({'|'.join(SCHEDULES)})(-head)?"
_NAME = re.compile(rf"^{_KIND_SCHED}-{_RATE}$")
_FAMILY = re.compile(rf"^{_KIND_SCHED}$")


@dataclass(frozen=True)
class OptimizerSpec:
    """One named optimizer: a kind, a schedule, head-only or not, a base rate."""

    kind: str
    schedule: str = "const"
    lr: float = 1e-3
    head_only: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown optimizer kind {self.kind!r}; known: {sorted(KINDS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {sorted(SCHEDULES)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"learning rate must be positive and finite, got {self.lr!r}")

    @property
    def family(self) -> str:
        """The name without the rate (what the tuned benchmark sweeps)."""
        return f"{self.kind}-{self.schedule}{'-head' if self.head_only else ''}"

    @property
    def name(self) -> str:
        return f"{self.family}-{self.lr:.3g}"

    @property
    def per_horizon(self) -> bool:
        """Whether a run's trajectory depends on its length (then one run per horizon)."""
        return SCHEDULES[self.schedule] is not None

    @property
    def label(self) -> str:
        pretty = {"sgd": "SGD", "momentum": "SGD momentum", "nesterov": "SGD Nesterov", "adam": "Adam"}
        pretty |= {"adamw": "AdamW", "rmsprop": "RMSProp", "shampoo": "one-sided Shampoo", "foof": "FOOF"}
        sched = {"const": "const", "cos": "cosine", "warmcos": "warm-up + cosine"}[self.schedule]
        head = ", head" if self.head_only else ""
        return f"{pretty[self.kind]} ({sched}{head}) {self.lr:g}"

    def with_lr(self, lr: float) -> OptimizerSpec:
        return OptimizerSpec(self.kind, self.schedule, lr, self.head_only)

    def build(
        self, params: Iterable[torch.Tensor], total_steps: int, model: torch.nn.Module | None = None
    ) -> torch.optim.Optimizer:
        """The optimizer for a run of ``total_steps`` steps (its schedule folded in); ``model``
        (the module the parameters belong to) is required by the kinds in ``NEEDS_MODEL``."""
        cls, kwargs = KINDS[self.kind]
        if self.kind in NEEDS_MODEL:
            if model is None:
                raise ValueError(f"{self.kind!r} reads the model's layer inputs: build it with model=<the module>")
            opt = cls(list(params), model=model, lr=self.lr, **kwargs)
        else:
            opt = _fastest(cls, list(params), lr=self.lr, **kwargs)
        schedule = SCHEDULES[self.schedule]
        return opt if schedule is None else Scheduled(opt, schedule, total_steps)

    def factory(self) -> Callable[[torch.nn.Module, int], torch.optim.Optimizer]:
        """``(model, total_steps) -> optimizer`` over all the model's parameters."""
        return lambda model, steps: self.build(model.parameters(), steps, model=model)


def _fastest(cls: type[torch.optim.Optimizer], params: list, **kwargs: Any) -> torch.optim.Optimizer:
    """The fused implementation when torch has one for these tensors (same algorithm, one
    kernel instead of a Python loop over tensors), else torch's default."""
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, **kwargs)


class Scheduled(torch.optim.Optimizer):
    """An optimizer whose rate follows ``schedule(t, total_steps)`` times its base rate,
    advanced by its own ``step()``; the first step already uses ``schedule(0, total)``."""

    def __init__(self, inner: torch.optim.Optimizer, schedule: Callable[[int, int], float], total_steps: int) -> None:
        if total_steps < 1:
            raise ValueError(f"a scheduled optimizer needs total_steps >= 1, got {total_steps}")
        self.inner, self.schedule, self.total_steps, self.t = inner, schedule, total_steps, 0
        self.base = [g["lr"] for g in inner.param_groups]
        self.param_groups, self.state, self.defaults = inner.param_groups, inner.state, inner.defaults
        self._set(0)

    def _set(self, t: int) -> None:
        factor = self.schedule(t, self.total_steps)
        for g, base in zip(self.inner.param_groups, self.base):
            g["lr"] = base * factor

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):  # type: ignore[override]
        loss = self.inner.step(closure)
        self.t += 1
        self._set(self.t)
        return loss


def parse_optimizer(name: str) -> OptimizerSpec:
    """``adam-cos-head-1e-4`` → OptimizerSpec (``ValueError`` naming the accepted form)."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(
            f"unknown optimizer {name!r}: expected <kind>-<schedule>[-head]-<lr> with kind in {sorted(KINDS)} "
            f"and schedule in {sorted(SCHEDULES)}, e.g. adam-cos-1e-3, nesterov-const-3e-2, adam-const-head-1e-3"
        )
    kind, schedule, head, lr = m.groups()
    return OptimizerSpec(kind, schedule, float(lr), bool(head))


def parse_family(name: str) -> OptimizerSpec:
    """``adam-cos`` → the family's spec (its ``lr`` is a placeholder until tuned)."""
    m = _FAMILY.match(name)
    if not m:
        raise ValueError(
            f"unknown optimizer family {name!r}: expected <kind>-<schedule>[-head] with kind in {sorted(KINDS)} "
            f"and schedule in {sorted(SCHEDULES)}, e.g. adam-cos, nesterov-const, adam-const-head"
        )
    kind, schedule, head = m.groups()
    return OptimizerSpec(kind, schedule, 1e-3, bool(head))


def lr_grid(low_exp: float = -4.0, high_exp: float = 0.0, per_decade: int = 2) -> list[float]:
    """Log-spaced learning rates 10^low … 10^high (``per_decade`` points a decade)."""
    n = round((high_exp - low_exp) * per_decade)
    return [10 ** (low_exp + i / per_decade) for i in range(n + 1)]


#: The paper's fixed comparison (docs/design.md §4.1): Adam const/cosine at 1e-3…1e-5, on everything and
#: on the head only, plus SGD with momentum 0.9 at 1e-2.
PAPER_BASELINES = [
    f"adam-{s}{h}-{lr}" for s in ("const", "cos") for h in ("", "-head") for lr in ("1e-3", "1e-4", "1e-5")
] + ["momentum-const-1e-2"]

#: The tuned benchmark's families (issue 10): each tuned per horizon on validation tasks. The two
#: whitened linear probes are the strongest short-horizon baselines measured (docs/adr/0006,
#: "FOOF: a stronger linear probe").
TUNED_FAMILIES = [
    "adam-const",
    "adam-cos",
    "adam-warmcos",
    "adamw-const",
    "adamw-cos",
    "adamw-warmcos",
    "nesterov-const",
    "nesterov-cos",
    "adam-const-head",
    "shampoo-const-head",
    "foof-const-head",
]


def _learned(cls: type, net: Any) -> Callable[[torch.nn.Module, int | None], torch.optim.Optimizer]:
    """Build ``cls(model, net, total_steps=steps)``; ``steps`` None is a task that hides its
    horizon (tasks/augment.py), run horizon-free on purpose."""
    from hf_l3rs.optim.horizon import run_horizon_free

    def make(model: torch.nn.Module, steps: int | None) -> torch.optim.Optimizer:
        opt = cls(model, net, total_steps=steps)
        if steps is None:
            run_horizon_free(opt)
        return opt

    return make


def l3rs_factory(net: Any = None) -> Callable[[torch.nn.Module, int | None], torch.optim.Optimizer]:
    """The one way the meta-trainer and every evaluation build L3RS for a task: over the
    whole model (names, roles and order from it), with the task's horizon announced.
    ``net`` is an ``L3RSNet`` (meta-weights), an ``L3RSConfig`` (an untrained rule) or
    ``None`` (the default untrained rule)."""
    from hf_l3rs.optim.l3rs import L3RS

    return _learned(L3RS, net)


def learned_factory(net: Any = None) -> Callable[[torch.nn.Module, int | None], torch.optim.Optimizer]:
    """:func:`l3rs_factory`, or the registered learned optimizer ``net`` belongs to
    (``hf_l3rs.optim.learned``): the meta-trainer and the evaluations build either this way."""
    import hf_l3rs.optim.learned as learned

    other = learned.for_net(net)
    return _learned(other.optimizer, net) if other else l3rs_factory(net)
