"""The training horizon T when the user did not announce it (docs/design.md §1 "Horizon").

``transformers.Trainer`` builds its learning-rate scheduler on the optimizer it was given and
never tells the optimizer how long the run is; its decaying schedules carry the horizon in
their lambdas. Reading it from there lets the one-liner ``Trainer(optimizers=(opt, None))``
use L3RS's time features without a callback.
"""

from __future__ import annotations

import functools
import gc

import torch

from hf_l3rs.verbosity import get_logger


def total_steps_from_scheduler(optimizer: torch.optim.Optimizer) -> int | None:
    """The horizon of a learning-rate scheduler built on ``optimizer`` by
    ``transformers.get_scheduler`` (its lambdas are partials with ``num_training_steps``).
    Logged, since it is inferred; ``None`` when there is no such scheduler."""
    # A scheduler holds the optimizer (or a wrapper such as accelerate's AcceleratedOptimizer
    # whose .optimizer is this one) in its __dict__: walk owners of attribute dicts, 3 levels.
    schedulers, frontier, seen = [], [optimizer], {id(optimizer)}
    for _ in range(3):
        owners = []
        for obj in frontier:
            for ref in gc.get_referrers(obj):
                # Python 3.11+ reports the owning object itself; older ones its __dict__.
                cands = (
                    [o for o in gc.get_referrers(ref) if getattr(o, "__dict__", None) is ref]
                    if isinstance(ref, dict)
                    else [ref]
                )
                for owner in cands:
                    if id(owner) not in seen and getattr(owner, "optimizer", None) is obj:
                        seen.add(id(owner))
                        owners.append(owner)
        schedulers += [o for o in owners if isinstance(o, torch.optim.lr_scheduler.LRScheduler)]
        frontier = owners
    for ref in schedulers:
        for fn in getattr(ref, "lr_lambdas", []):
            steps = fn.keywords.get("num_training_steps") if isinstance(fn, functools.partial) else None
            if isinstance(steps, int) and steps > 0:
                name = getattr(fn.func, "__name__", "schedule")
                get_logger(__name__).warning(
                    "L3RS: total_steps=%d taken from the attached learning-rate scheduler (%s). That "
                    "scheduler also multiplies L3RS's learned rate; use lr_scheduler_type='constant' "
                    "to keep L3RS's own schedule.",
                    steps,
                    name,
                )
                return steps
    return None


def run_horizon_free(optimizer: torch.optim.Optimizer) -> None:
    """Run a learned optimizer with no horizon (time features of an unbounded run); after
    this, :func:`resolve_horizon` neither looks for a scheduler nor logs. Meta-training's
    horizon-free share chooses it on purpose (tasks/augment.py)."""
    optimizer.total_steps = None
    optimizer._horizon_free = True


def resolve_horizon(optimizer: torch.optim.Optimizer, hint: str) -> None:
    """Before a step of a learned optimizer with no announced horizon: take it from a scheduler,
    or run horizon-free (docs/design.md §1 "Horizon": the time features read as an unbounded
    run, the rate prior stays constant) and say so once at INFO with ``hint``."""
    if optimizer.total_steps is not None or getattr(optimizer, "_horizon_free", False):
        return
    inferred = total_steps_from_scheduler(optimizer)
    if inferred is None:
        run_horizon_free(optimizer)
        get_logger(__name__).info(
            "%s: no total_steps given and none found on a scheduler: running horizon-free%s",
            type(optimizer).__name__,
            hint,
        )
    else:
        optimizer.set_total_steps(inferred)
