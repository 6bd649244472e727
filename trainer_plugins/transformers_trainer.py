"""L3RS in ``transformers.Trainer``.

``Trainer(model=m, optimizers=(L3RS.from_pretrained(path, m), None))`` works as written: L3RS
reads each step's loss from the model's output (a forward hook) and takes the horizon from the
Trainer's scheduler. ``L3RSCallback`` (or ``L3RSTrainer``) makes both explicit: it sets
``total_steps = state.max_steps`` and attaches the loss hook, which is what an optimizer built
through ``optimizer_cls_and_kwargs`` needs (it never sees the model).
"""

from __future__ import annotations

from typing import Any

from transformers import Trainer, TrainerCallback

from hf_l3rs.optim import L3RS


def find_l3rs(optimizer: Any) -> L3RS | None:
    """The L3RS inside an optimizer wrapper (accelerate's ``AcceleratedOptimizer``)."""
    seen = 0
    while optimizer is not None and seen < 5:
        if isinstance(optimizer, L3RS):
            return optimizer
        optimizer = getattr(optimizer, "optimizer", None)
        seen += 1
    return None


class L3RSCallback(TrainerCallback):
    """Gives L3RS the Trainer's step count and the model's loss."""

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        opt = find_l3rs(optimizer)
        if opt is None:
            return
        if opt.total_steps is None or opt.total_steps != state.max_steps:
            opt.set_total_steps(int(state.max_steps))
        if model is not None and opt._hook is None:
            opt.capture_loss_from(model)


class L3RSTrainer(Trainer):
    """``Trainer`` with :class:`L3RSCallback` and, unless you chose one, a constant
    ``lr_scheduler_type`` so Trainer's default linear decay does not rescale L3RS's learned
    schedule."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if not any(isinstance(c, L3RSCallback) for c in callbacks):
            callbacks.append(L3RSCallback())
        super().__init__(*args, callbacks=callbacks, **kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and find_l3rs(optimizer or self.optimizer) is not None:
            if self.args.lr_scheduler_type in ("linear", "SchedulerType.LINEAR") or str(
                self.args.lr_scheduler_type
            ).endswith("LINEAR"):
                from transformers.optimization import get_constant_schedule

                self.lr_scheduler = get_constant_schedule(optimizer or self.optimizer)
                self._created_lr_scheduler = True
                return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer)
