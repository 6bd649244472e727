"""Deal independent work items over Accelerate processes and give everyone every result.

Used by NES (candidate × task fitnesses) and by the evaluation protocol (optimizer × task
runs). Items are assigned longest-first to the least-loaded process, deterministically, so
processes agree without talking; each process fills the rows it owns and one all-reduce
(sum; every row has exactly one owner, so the sum is exact) completes the table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor


def balanced_assignment(costs: Sequence[float], processes: int) -> list[list[int]]:
    """Item indices per process: longest first, to the least loaded (ties: lowest index)."""
    loads = [0.0] * processes
    owned: list[list[int]] = [[] for _ in range(processes)]
    for k in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        target = min(range(processes), key=lambda r: (loads[r], r))
        owned[target].append(k)
        loads[target] += costs[k]
    return [sorted(o) for o in owned]


def shard_map(
    fn: Callable[[Any], Tensor],
    items: Sequence[Any],
    width: int,
    accelerator: Any = None,
    costs: Sequence[float] | None = None,
    timing: dict[str, float] | None = None,
    on_done: Callable[[int], None] | None = None,
) -> Tensor:
    """``torch.stack([fn(item) for item in items])`` ([n, width] float64, NaN allowed),
    computed across processes. ``timing`` accumulates compute / imbalance / communicate."""
    n = len(items)
    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    mine = balanced_assignment(costs or [1.0] * n, world)[rank]
    out = torch.zeros(n, width, dtype=torch.float64)
    nan = torch.zeros(n, width, dtype=torch.bool)
    t0 = time.perf_counter()
    for k in mine:
        row = fn(items[k]).to(torch.float64).reshape(width)
        nan[k] = torch.isnan(row)
        out[k] = torch.nan_to_num(row, nan=0.0, posinf=math.inf, neginf=-math.inf)
        if on_done is not None:
            on_done(1)
    t1 = time.perf_counter()
    if world > 1:
        accelerator.wait_for_everyone()  # time spent here is load imbalance
        t2 = time.perf_counter()
        inf_pos, inf_neg = torch.isposinf(out), torch.isneginf(out)
        finite = torch.where(inf_pos | inf_neg, torch.zeros_like(out), out)
        flags = torch.stack([nan, inf_pos, inf_neg]).to(torch.float64)
        packed = torch.cat([finite.reshape(-1), flags.reshape(-1)]).to(accelerator.device)
        packed = accelerator.reduce(packed, reduction="sum").cpu()
        out = packed[: n * width].reshape(n, width).clone()
        flags = packed[n * width :].reshape(3, n, width) > 0
        out[flags[1]] = math.inf
        out[flags[2]] = -math.inf
        nan = flags[0]
        if timing is not None:
            timing["imbalance"] = timing.get("imbalance", 0.0) + t2 - t1
            timing["communicate"] = timing.get("communicate", 0.0) + time.perf_counter() - t2
    out[nan] = math.nan
    if timing is not None:
        timing["evaluate"] = timing.get("evaluate", 0.0) + t1 - t0
    return out
