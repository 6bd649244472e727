"""Fine-tune one task with any optimizer and report what meta-training and evaluation need."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from hf_l3rs.tasks.base import OptimizerFactory, Task


@dataclass
class TaskResult:
    train_losses: list[float]
    eval_loss: float
    eval_accuracy: float | None
    diverged: bool
    #: step -> (eval loss, eval accuracy) at the requested evaluation steps.
    curve: dict[int, tuple[float, float | None]] = field(default_factory=dict)

    def fitness(self, objective: str, blowup_factor: float | None = None) -> float:
        """Higher is better. ``final_loss`` (paper), ``mean_train_loss`` (Li & Malik's
        cumulative regret), ``accuracy``. A diverged run scores ``-inf``; with
        ``blowup_factor``, so does one whose final evaluation loss exceeds that many times
        its first training loss (finite, but exploded)."""
        if self.diverged or self.blew_up(blowup_factor):
            return -math.inf
        if objective == "final_loss":
            return -self.eval_loss
        if objective == "mean_train_loss":
            return -sum(self.train_losses) / max(len(self.train_losses), 1)
        if objective == "accuracy":
            if self.eval_accuracy is None:
                raise ValueError("objective 'accuracy' needs a task that reports accuracy")
            return self.eval_accuracy
        raise ValueError(f"unknown fitness objective {objective!r}")

    def blew_up(self, factor: float | None) -> bool:
        return factor is not None and bool(self.train_losses) and self.eval_loss > factor * abs(self.train_losses[0])


OBJECTIVES = ("final_loss", "mean_train_loss", "accuracy")


def run_task(
    task: Task,
    make_optimizer: OptimizerFactory,
    *,
    num_steps: int | None = None,
    eval_steps: Iterable[int] = (),
    timer: dict[str, float] | None = None,
) -> TaskResult:
    """Train ``task.num_steps`` (or ``num_steps``) steps; evaluate at the end and at
    ``eval_steps``. The optimizer gets each step's loss when it wants one (L3RS). An
    augmented task (tasks/augment.py) multiplies the param groups' rates by ``lr_scale`` and,
    with ``hide_horizon``, builds the optimizer with ``None`` steps.
    ``timer`` (optional) accumulates seconds per phase: setup, batch, forward, backward,
    step, evaluate."""
    clock = _Clock(timer)
    steps = task.num_steps if num_steps is None else num_steps
    model = task.init_model()
    opt = make_optimizer(model, None if getattr(task, "hide_horizon", False) else steps)
    lr_scale = getattr(task, "lr_scale", 1.0)
    if lr_scale != 1.0:
        for group in opt.param_groups:
            group["lr"] *= lr_scale
    clock.lap("setup")
    wants_loss = hasattr(opt, "observe_loss")
    wanted = {s for s in eval_steps if 0 <= s <= steps}
    curve: dict[int, tuple[float, float | None]] = {}
    losses: list[float] = []
    model.train()
    if 0 in wanted:
        curve[0] = _evaluate(task, model)
        clock.lap("evaluate")
    for t in range(steps):
        batch = task.train_batch(t)
        clock.lap("batch")
        loss = task.loss(model, batch)
        value = float(loss.detach())
        clock.lap("forward")
        losses.append(value)
        if not math.isfinite(value):
            return TaskResult(losses, math.inf, None, True, curve)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clock.lap("backward")
        if wants_loss:
            opt.observe_loss(loss)
        opt.step()
        clock.lap("step")
        if t + 1 in wanted and t + 1 != steps:
            curve[t + 1] = _evaluate(task, model)
            clock.lap("evaluate")
    eval_loss, acc = _evaluate(task, model)
    clock.lap("evaluate")
    curve[steps] = (eval_loss, acc)
    return TaskResult(losses, eval_loss, acc, not math.isfinite(eval_loss), curve)


class _Clock:
    """Accumulates wall time per phase into a dict (no-op without one)."""

    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink
        self.last = time.perf_counter() if sink is not None else 0.0

    def lap(self, phase: str) -> None:
        if self.sink is None:
            return
        now = time.perf_counter()
        self.sink[phase] = self.sink.get(phase, 0.0) + now - self.last
        self.last = now


def _evaluate(task: Task, model: torch.nn.Module) -> tuple[float, float | None]:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        loss, acc = task.evaluate(model)
    model.train(was_training)
    return float(loss), acc
