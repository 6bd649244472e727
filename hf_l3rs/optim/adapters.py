"""Low-rank adapters (peft LoRA): the rate multiplier that turns an adapter's step into a step
of the weight it adapts (docs/design.md §1 "Low-rank adapters").

A LoRA layer trains A (r × in) and B (out × r) and adds ΔW = s·B·A to a frozen weight W, with
s = α / r. L3RS gives each tensor a per-element step η for its normalised direction, the step
the meta-network learned for a weight matrix of the model. Moving B by η per element moves W
by about s·√r·rms(A)·η per element (B starts at zero, A at its random initialisation), far
less than the η the rule meant for a weight matrix (a factor 0.17 for MiniLM's r = 8, α = 16
adapters). So both adapter matrices take η / (s·√r·rms(A₀)), with A₀ the adapter's A when the
optimizer is built: the rule's step, expressed in the units of W.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from hf_l3rs.verbosity import get_logger

logger = get_logger(__name__)

#: Bounds on the multiplier (an adapter initialised at zero, or a huge α, must not give an
#: unbounded or vanishing rate).
ADAPTER_SCALE_RANGE = (1 / 100, 100.0)


def _lora_pairs(model: nn.Module) -> Iterator[tuple[Tensor, Tensor, float, int]]:
    """(A, B, s, r) for every adapter of every peft LoRA layer of ``model`` (``lora_A`` /
    ``lora_B`` module dicts with ``scaling`` and ``r``)."""
    for module in model.modules():
        lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
        scaling, ranks = getattr(module, "scaling", None), getattr(module, "r", None)
        if not (isinstance(lora_a, nn.ModuleDict) and isinstance(lora_b, nn.ModuleDict)):
            continue
        if not (isinstance(scaling, dict) and isinstance(ranks, dict)):
            continue
        for name in lora_a.keys() & lora_b.keys():
            a, b = getattr(lora_a[name], "weight", None), getattr(lora_b[name], "weight", None)
            if isinstance(a, Tensor) and isinstance(b, Tensor) and name in scaling and name in ranks:
                yield a, b, float(scaling[name]), int(ranks[name])


def _lora_params(model: nn.Module, params: list[Tensor]) -> Iterator[tuple[list[int], Tensor, float, int]]:
    """For every LoRA pair of ``model``: the indices into ``params`` of its A and B (those that
    are there), A, s and r."""
    where = {id(p): j for j, p in enumerate(params)}
    for a, b, scaling, rank in _lora_pairs(model):
        yield [where[id(t)] for t in (a, b) if id(t) in where], a, scaling, rank


def lora_matrices(model: nn.Module | None, params: list[Tensor]) -> Tensor:
    """[len(params)] bool: which parameters are LoRA matrices of ``model``."""
    mask = torch.zeros(len(params), dtype=torch.bool)
    for indices, *_ in _lora_params(model, params) if model is not None else ():
        mask[indices] = True
    return mask


def adapter_rate_scales(model: nn.Module | None, params: list[Tensor]) -> Tensor:
    """[len(params)] float32: the multiplier of each parameter's rate, 1 for every tensor that
    is not a LoRA matrix of ``model``."""
    scale = torch.ones(len(params), dtype=torch.float32)
    low, high = ADAPTER_SCALE_RANGE
    for indices, a, scaling, rank in _lora_params(model, params) if model is not None else ():
        factor = abs(scaling) * math.sqrt(rank) * float(a.detach().float().pow(2).mean().sqrt())
        if factor > 0 and math.isfinite(factor):
            scale[indices] = min(high, max(low, 1.0 / factor))
    return scale


_LOGGED: set[tuple[int, float, float]] = set()


def log_adapter_scales(scales: Tensor) -> None:
    """Say once per adapter layout that LoRA matrices are stepped in the units of W, and by how
    much (never silently); nothing when there are none."""
    scaled = scales[scales != 1.0]
    if not len(scaled):
        return
    key = (len(scaled), round(float(scaled.min()), 3), round(float(scaled.max()), 3))
    if key in _LOGGED:
        return
    _LOGGED.add(key)
    logger.info(
        "L3RS: %d LoRA adapter matrices are stepped in the units of the weight they adapt "
        "(adapter_steps='weight'): their rates x %.3g to %.3g",
        len(scaled),
        float(scaled.min()),
        float(scaled.max()),
    )
