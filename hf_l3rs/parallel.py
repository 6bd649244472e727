"""Deal independent work items over Accelerate processes and give everyone every result.

Used by NES (candidate × task fitnesses) and by the evaluation protocol (optimizer × task
runs). Items are handed out dynamically: each process claims the next item from a counter
in torch.distributed's key-value store (the one every process group already has), longest
first, so a process slowed by the machine or by a long item takes fewer items instead of
making the others wait at the end. Each process fills the rows it computed and one
all-reduce (sum; every row has exactly one owner, so the sum is exact) completes the table.
Results do not depend on which process computed a row, so the table is the same bitwise for
any number of processes. Without a store (a single process, or a backend without one) the
items are dealt statically, longest first to the least-loaded process.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import torch
from torch import Tensor

_CALLS = itertools.count()  # every process calls shard_map in the same order
KEY_PREFIX = "hf_l3rs/shard_map"


def balanced_assignment(costs: Sequence[float], processes: int) -> list[list[int]]:
    """Item indices per process: longest first, to the least loaded (ties: lowest index)."""
    loads = [0.0] * processes
    owned: list[list[int]] = [[] for _ in range(processes)]
    for k in longest_first(costs):
        target = min(range(processes), key=lambda r: (loads[r], r))
        owned[target].append(k)
        loads[target] += costs[k]
    return [sorted(o) for o in owned]


def longest_first(costs: Sequence[float]) -> list[int]:
    return sorted(range(len(costs)), key=lambda i: (-costs[i], i))


def claim_key(call: int, what: str = "claimed") -> str:
    """A store counter (``claimed`` or ``finished``) of the ``call``-th shard_map of this
    run; public for tests."""
    return f"{KEY_PREFIX}/{call}/{what}"


def default_store() -> Any:
    """torch.distributed's store of the default process group, or None."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    getter = getattr(dist.distributed_c10d, "_get_default_store", None)
    try:
        return getter() if getter is not None else None
    except (RuntimeError, ValueError):
        return None


def shutdown(accelerator: Any) -> None:
    """Leave the process group together: without it a process that exits while another
    still holds the store connection (rank 0 serves the store) can abort at exit
    ("terminate called without an active exception") after a run that succeeded."""
    import torch.distributed as dist

    if accelerator is not None and accelerator.num_processes > 1 and dist.is_available() and dist.is_initialized():
        accelerator.wait_for_everyone()
        dist.destroy_process_group()


class LostProcessError(RuntimeError):
    """Another process of the run stopped responding (killed, crashed, machine lost)."""


#: Seconds without a heartbeat after which a process counts as lost (HF_L3RS_PROCESS_TIMEOUT).
PROCESS_TIMEOUT = float(os.environ.get("HF_L3RS_PROCESS_TIMEOUT", "30"))
HEARTBEAT_EVERY = 2.0
_heartbeat: threading.Thread | None = None


def start_heartbeat(store: Any, rank: int) -> None:
    """A daemon thread that bumps this process's counter in the store every few seconds,
    so the others can tell a slow process (still beating) from a dead one."""
    global _heartbeat
    if _heartbeat is not None:
        return

    def beat() -> None:
        key = f"{KEY_PREFIX}/heartbeat/{rank}"
        while True:
            try:
                store.add(key, 1)
            except Exception:  # the store is gone: the run is ending
                return
            time.sleep(HEARTBEAT_EVERY)

    _heartbeat = threading.Thread(target=beat, name="hf_l3rs-heartbeat", daemon=True)
    _heartbeat.start()


def _watch_heartbeats(store: Any, rank: int, world: int, timeout: float, done: Callable[[], bool]) -> None:
    """Until ``done()``, watch the other processes' heartbeats; raise :class:`LostProcessError`
    naming one that has not beaten for ``timeout`` seconds."""
    last_beat: dict[int, tuple[int, float]] = {}
    while not done():
        now = time.monotonic()
        for r in range(world):
            if r == rank:
                continue
            beats = int(store.add(f"{KEY_PREFIX}/heartbeat/{r}", 0))
            if r not in last_beat or beats != last_beat[r][0]:
                last_beat[r] = (beats, now)
            elif now - last_beat[r][1] > timeout:
                raise LostProcessError(
                    f"process {r} of {world} stopped responding ({timeout:.0f} s without a heartbeat): it was "
                    "killed or crashed; continue with --resume from the last checkpoint"
                )
        time.sleep(0.2)


def store_barrier(store: Any, key: str, rank: int, world: int, timeout: float | None = None) -> None:
    """Wait until all ``world`` processes reached ``key``; raise :class:`LostProcessError`
    naming a process whose heartbeat stopped for ``timeout`` seconds (instead of hanging in
    a collective until the backend's 30-minute timeout)."""
    timeout = PROCESS_TIMEOUT if timeout is None else timeout
    start_heartbeat(store, rank)
    try:
        store.add(key, 1)
        _watch_heartbeats(store, rank, world, timeout, lambda: int(store.add(key, 0)) >= world)
    except LostProcessError:
        raise
    except Exception as exc:  # the store lives in process 0: a lost connection means rank 0 is gone
        raise _lost_process_0(exc) from exc


def name_lost_process(store: Any, rank: int, world: int, failure: Exception, timeout: float | None = None) -> NoReturn:
    """A collective failed (e.g. gloo's "Connection closed by peer" when a process died
    between the barrier and the all-reduce): raise :class:`LostProcessError` naming the
    process whose heartbeat stops within ``2 × timeout``; re-raise ``failure`` if none does."""
    timeout = PROCESS_TIMEOUT if timeout is None else timeout
    give_up = time.monotonic() + 2 * timeout
    try:
        _watch_heartbeats(store, rank, world, timeout, lambda: time.monotonic() > give_up)
    except LostProcessError as lost:
        raise lost from failure
    except Exception as exc:  # the store lives in process 0
        raise _lost_process_0(exc) from failure
    raise failure


def _lost_process_0(exc: Exception) -> LostProcessError:
    """The store is served by process 0: losing the connection to it means process 0 is gone."""
    return LostProcessError(f"lost the connection to process 0 ({type(exc).__name__}: {exc})")


_BARRIERS = itertools.count()  # every process passes the same barriers in the same order


def barrier(accelerator: Any, flag: bool = False) -> bool:
    """Wait for every process (through the store, so a dead one is named, see
    :func:`store_barrier`) and return whether ``flag`` was set in any of them."""
    if accelerator is None or accelerator.num_processes == 1:
        return flag
    store = default_store()
    if store is None:
        total = accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), reduction="sum")
        return bool(total.item() > 0)
    n = next(_BARRIERS)
    key = f"{KEY_PREFIX}/barrier/{n}"
    if flag:
        store.add(f"{key}/flag", 1)
    store_barrier(store, f"{key}/arrived", accelerator.process_index, accelerator.num_processes)
    raised = int(store.add(f"{key}/flag", 0)) > 0
    if accelerator.process_index == 0 and n >= 2:  # everyone has left barrier n - 2 by now
        for what in ("arrived", "flag"):
            store.delete_key(f"{KEY_PREFIX}/barrier/{n - 2}/{what}")
    return raised


class ProcessDriftError(RuntimeError):
    """The processes of a run made different ``shard_map`` calls at the same position."""


def check_signatures(store: Any, call: int, rank: int, world: int, signature: str) -> None:
    """After the call's barrier every process has written its signature: compare them.
    The first call where the processes' sequences differ is caught here, so a process that
    made one extra call fails at once instead of desynchronising every later call."""
    for r in range(world):
        other = store.get(claim_key(call, f"signature/{r}")).decode()
        if other != signature:
            raise ProcessDriftError(
                f"shard_map call #{call} differs between processes: process {rank} has {signature}, "
                f"process {r} has {other}. Every process must make the same shard_map calls in the same order."
            )


def _claims(store: Any, key: str, order: list[int]) -> Iterator[int]:
    """Items claimed by this process, in ``order``, until the counter passes the end."""
    while True:
        position = int(store.add(key, 1)) - 1
        if position >= len(order):
            return
        yield order[position]


def shard_map(
    fn: Callable[[Any], Tensor],
    items: Sequence[Any],
    width: int,
    accelerator: Any = None,
    costs: Sequence[float] | None = None,
    timing: dict[str, float] | None = None,
    on_done: Callable[[int], None] | None = None,
    tag: str = "",
) -> Tensor:
    """``torch.stack([fn(item) for item in items])`` ([n, width] float64, NaN allowed),
    computed across processes. ``timing`` accumulates compute / imbalance / communicate
    seconds and the items this process computed (``items_here``). ``on_done(k)`` is called
    after each item this process finishes, with ``k`` items finished so far by all processes
    (dynamic) or an estimate from this process's share (static). ``tag`` names the call
    (e.g. ``"generation 12"``): every process must make the same calls in the same order,
    and a call whose tag or shape differs between processes raises :class:`ProcessDriftError`
    instead of silently pairing different work."""
    n = len(items)
    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    costs = list(costs) if costs is not None else [1.0] * n
    call = next(_CALLS)
    store = default_store() if world > 1 else None
    signature = f"{n} items x {width}, tag {tag!r}"
    if store is not None:
        store.set(claim_key(call, f"signature/{rank}"), signature)
        key = claim_key(call)
        mine: Iterator[int] | list[int] = _claims(store, key, longest_first(costs))
    else:
        mine = balanced_assignment(costs, world)[rank]
        share = max(1, len(mine))
    out = torch.zeros(n, width, dtype=torch.float64)
    nan = torch.zeros(n, width, dtype=torch.bool)
    done_here = 0
    t0 = time.perf_counter()
    for k in mine:
        row = fn(items[k]).to(torch.float64).reshape(width)
        nan[k] = torch.isnan(row)
        out[k] = torch.nan_to_num(row, nan=0.0, posinf=math.inf, neginf=-math.inf)
        done_here += 1
        if on_done is not None:
            if store is not None:
                on_done(int(store.add(claim_key(call, "finished"), 1)))
            else:
                on_done(min(n, round(done_here * n / share)))
    t1 = time.perf_counter()
    if world > 1:
        # time spent here is load imbalance; a process that died is named, not waited for
        if store is not None:
            store_barrier(store, claim_key(call, "left"), rank, world)
            check_signatures(store, call, rank, world, signature)
        else:
            accelerator.wait_for_everyone()
        t2 = time.perf_counter()
        inf_pos, inf_neg = torch.isposinf(out), torch.isneginf(out)
        finite = torch.where(inf_pos | inf_neg, torch.zeros_like(out), out)
        flags = torch.stack([nan, inf_pos, inf_neg]).to(torch.float64)
        packed = torch.cat([finite.reshape(-1), flags.reshape(-1)]).to(accelerator.device)
        try:
            packed = accelerator.reduce(packed, reduction="sum").cpu()
        except RuntimeError as exc:  # a process died after the barrier: name it, as the barrier does
            if store is None:
                raise
            name_lost_process(store, rank, world, exc)
        out = packed[: n * width].reshape(n, width).clone()
        flags = packed[n * width :].reshape(3, n, width) > 0
        out[flags[1]] = math.inf
        out[flags[2]] = -math.inf
        nan = flags[0]
        if store is not None and rank == 0:
            # everyone has left the claim loop once the reduce is done
            for what in ("claimed", "finished", "left", *(f"signature/{r}" for r in range(world))):
                store.delete_key(claim_key(call, what))
        if timing is not None:
            timing["imbalance"] = timing.get("imbalance", 0.0) + t2 - t1
            timing["communicate"] = timing.get("communicate", 0.0) + time.perf_counter() - t2
    out[nan] = math.nan
    if timing is not None:
        timing["evaluate"] = timing.get("evaluate", 0.0) + t1 - t0
        timing["items_here"] = timing.get("items_here", 0) + done_here
    return out
