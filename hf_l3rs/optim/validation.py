"""Checks at the optimizer's boundary (issue 39): what a user, a scheduler or a saved file
hands in is refused by name before it can reach the weights or a kernel."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from hf_l3rs.optim.directions import get_direction
from hf_l3rs.verbosity import get_logger

logger = get_logger(__name__)

#: lr multipliers outside this range are almost always a learning rate typed by habit (timm's
#: ``lr=1e-3``): warned about once, with the fix
PLAUSIBLE_MULTIPLIER = (0.05, 20.0)


def _is_rate(value: Any) -> bool:
    """A finite number >= 0: what ``lr`` and ``weight_decay`` must be, at construction and at every step."""
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def check_rate(name: str, value: Any) -> float:
    """A finite number >= 0 (``lr`` and ``weight_decay`` of the constructor)."""
    if not _is_rate(value):
        hint = " (a multiplier of the learned rate, 1.0 = as learned)" if name == "lr" else ""
        raise ValueError(f"L3RS: {name}{hint} must be finite and >= 0, got {value!r}")
    return float(value)


def check_group_rates(groups: list[dict[str, Any]], warn: bool = False) -> None:
    """Every group's ``lr`` and ``weight_decay`` finite and >= 0 (a scheduler or a user may
    write them at any step: a NaN would reach the weights); with ``warn``, a WARNING when an
    ``lr`` multiplier looks like a learning rate."""
    for i, g in enumerate(groups):
        for key in ("lr", "weight_decay"):
            if not _is_rate(g[key]):
                raise ValueError(
                    f"L3RS: param group {i} has {key}={g[key]!r}; it must be finite and >= 0 "
                    f"(for lr: a multiplier of the learned rate, 1.0 = as learned)"
                )
        lo, hi = PLAUSIBLE_MULTIPLIER
        if warn and g["lr"] > 0 and not lo <= g["lr"] <= hi:
            logger.warning(
                "L3RS: param group %d has lr=%g. For L3RS, lr multiplies the learned rate (1.0 = as learned); "
                "it is not a learning rate. Leave it at 1.0 (timm: lr=1.0; Trainer: learning_rate=1.0) unless you "
                "mean to scale the learned steps by %g.",
                i,
                g["lr"],
                g["lr"],
            )


def check_state_shapes(state_dict: dict[str, Any], params: list[Tensor], names: dict[int, str]) -> None:
    """Every saved per-tensor state has the shape its tensor needs, checked before anything is
    loaded: a state saved for another model (a head of 6 classes into a head of 8) is refused by
    name instead of failing, or corrupting memory, in a kernel. ``params`` in group order."""
    groups = state_dict.get("param_groups", [])
    saved_ids = [i for g in groups for i in g["params"]]
    if len(saved_ids) != len(params):
        raise ValueError(
            f"L3RS.load_state_dict: the state holds {len(saved_ids)} tensors, this optimizer {len(params)}; "
            "it was saved for another model or another grouping"
        )
    for pid, p in zip(saved_ids, params):
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
                where = names.get(id(p))
                raise ValueError(f"L3RS.load_state_dict: unknown state entry {key!r} for {where!r}") from None
            if value.shape != want:
                raise ValueError(
                    f"L3RS.load_state_dict: state {key!r} of {names.get(id(p))!r} has shape {tuple(value.shape)}, "
                    f"this parameter needs {tuple(want)}: the state was saved for another model (e.g. a head "
                    "with another number of classes). Load a state saved for this model, or start a fresh L3RS."
                )


def active_components(params: list[Tensor], components: list[Any]) -> list[int]:
    """The components with a gradient this step; a sparse gradient is refused by name."""
    active = []
    for j, p in enumerate(params):
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(
                f"L3RS does not support sparse gradients (component {components[j].name!r}); "
                "use a dense embedding (sparse=False)."
            )
        active.append(j)
    return active


def check_tensors(named: list[tuple[str, Tensor]]) -> None:
    """Complex tensors are refused by name: L3RS's norms, features and directions are
    real-valued, and stepping a complex tensor with them would silently mix its parts."""
    for name, p in named:
        if p.is_complex():
            raise ValueError(
                f"L3RS: parameter {name!r} is complex ({p.dtype}); L3RS steps real tensors only. Keep it as a "
                "real parameter of shape (..., 2) and use torch.view_as_complex(...) in the forward pass."
            )


def align_state_layouts(state: Any, params: list[Tensor]) -> None:
    """Give each loaded per-tensor state its parameter's memory layout (a state saved from a
    contiguous model loaded into a channels-last one): the fused kernels walk memory and would
    otherwise pair the wrong elements."""
    for p in params:
        for key, value in state.get(p, {}).items():
            if isinstance(value, Tensor) and value.shape == p.shape and value.stride() != p.stride():
                aligned = torch.empty_like(p, dtype=value.dtype)
                aligned.copy_(value)
                state[p][key] = aligned
