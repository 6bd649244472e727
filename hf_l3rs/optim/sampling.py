"""Adam's direction norm and momentum agreement on large tensors, estimated from one memory page
in eight (docs/adr/0012).

Why: the step is two passes over memory (the network needs the directions' norms before any
weight moves) and on a CPU each pass costs what it reads. Summing Adam's sums over every element
made the probe read g, m and v in full, the commit read them again: 1.7-1.9x fused AdamW on
transformer models. ‖g‖ stays exact (it decides whether a tensor is finite); ‖d_adam‖², g·m and
|m|² are summed over the pages whose index is ``step % SAMPLE_EVERY``, every page once in eight
steps. Pages, not strided elements: the hardware prefetcher fetches whole pages, so only skipped
pages save reads (measured in the ADR). Tensors of fewer than ``SAMPLE_MIN_PAGES`` pages are summed
exactly. The fused kernel (``csrc/fused_l3rs.cpp``) implements the same rule; these are the torch
versions for the foreach backend, the rate-adaptation fallback and the loop reference.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: float32 elements in a 4 KiB memory page
PAGE = 1024
#: one page in this many is read
SAMPLE_EVERY = 8
#: tensors of fewer pages are summed exactly
SAMPLE_MIN_PAGES = 64


def is_sampled(numel: int) -> bool:
    return numel >= SAMPLE_MIN_PAGES * PAGE


def memory_flat(t: Tensor, like: Tensor) -> Tensor:
    """The elements of ``t`` in the memory order of ``like`` (its parameter): pages are the
    parameter's memory pages, also for channels-last or transposed weights, as the fused kernel
    walks them, and every tensor of one parameter is flattened in the same order."""
    if like.is_contiguous():
        return t.reshape(-1)
    order = sorted(range(like.dim()), key=lambda i: (-like.stride(i), -like.shape[i]))
    return t.permute(order).reshape(-1)


def sampled_sum(x: Tensor, offset: int | Tensor) -> tuple[Tensor, Tensor]:
    """Σx over the elements the rule reads at a step with this ``offset`` and their count, both
    float64 (every element when ``x`` is small); ``x`` in memory order (:func:`memory_flat`).
    Written with fixed shapes and the offset as a value, so one ``torch.compile`` graph serves
    every step."""
    n = x.numel()
    x = x.double()
    if not is_sampled(n):
        return x.sum(), x.new_tensor(float(n))
    full = n // PAGE
    totals = x[: full * PAGE].reshape(full, PAGE).sum(dim=1)
    counts = torch.full((full,), float(PAGE), dtype=torch.float64, device=x.device)
    if n % PAGE:
        totals = torch.cat([totals, x[full * PAGE :].sum().reshape(1)])
        counts = torch.cat([counts, counts.new_tensor([float(n % PAGE)])])
    keep = (torch.arange(totals.numel(), device=x.device) % SAMPLE_EVERY) == offset
    return torch.where(keep, totals, 0.0).sum(), torch.where(keep, counts, 0.0).sum()


def adam_sums(p: Tensor, d: Tensor | None, g: Tensor, m_before: Tensor, offset: int | Tensor) -> Tensor:
    """float64 [5] over the elements of ``p`` sampled at this offset: Σd², Σg·m, Σm², Σg² and
    their count, as the fused probe returns them (``d`` the prospective Adam direction, 0
    without one; ``m_before`` the momentum before this step)."""
    d_, g_, m_ = (memory_flat(x, p) if x is not None else None for x in (d, g, m_before))
    gg, count = sampled_sum(g_ * g_, offset)
    dd = sampled_sum(d_ * d_, offset)[0] if d_ is not None else torch.zeros_like(gg)
    gm, mm = sampled_sum(g_ * m_, offset)[0], sampled_sum(m_ * m_, offset)[0]
    return torch.stack([dd, gm, mm, gg, count])


def estimates(numel: Tensor, gg: Tensor, sums: Tensor) -> tuple[Tensor, Tensor]:
    """From [n, 5] sampled sums (columns of :func:`adam_sums`) and the exact ‖g‖² [n]: ‖d_adam‖
    [n], scaled by numel / count, and the agreement [n, 2] (g·m, |m|²) as ratio estimates with
    ‖g‖² as the known total, so that a tensor's cosine is the sample's own. NaN where the sample
    saw no gradient on a tensor that has one (nothing to estimate the agreement from)."""
    dd, gm, mm, gs, count = sums.unbind(dim=1)
    exact = count >= numel.to(count)
    if bool(exact.all()):  # nothing sampled (a small model): the sums themselves, a few ops fewer
        return torch.sqrt(dd), torch.stack([gm, mm], dim=1)
    dnorm = torch.sqrt(dd * numel.to(dd) / count.clamp_min(1))
    ratio = torch.where(gs > 0, gg / gs, torch.where(gg > 0, torch.nan, 0.0))
    ratio = torch.where(exact, torch.ones_like(gg), ratio)
    return dnorm, torch.stack([gm * ratio, mm * ratio], dim=1)
