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
from hf_l3rs.verbosity import get_logger

logger = get_logger(__name__)


def find_l3rs(optimizer: Any) -> L3RS | None:
    """The L3RS inside an optimizer wrapper (accelerate's ``AcceleratedOptimizer``)."""
    seen = 0
    while optimizer is not None and seen < 5:
        if isinstance(optimizer, L3RS):
            return optimizer
        optimizer = getattr(optimizer, "optimizer", None)
        seen += 1
    return None


def learned_rate_stats(opt: L3RS) -> dict[str, float]:
    """The last step's learned rate η (mean/min/max over tensors) and mean mixing α per base
    direction, as flat log entries (``l3rs/rate_mean``, ``l3rs/mix_adam``, ...), and the
    rate-adaptation multiplier (``l3rs/rate_multiplier``; per tensor also its min and max)
    when it is on."""
    if opt.last_rate is None or opt.last_mix is None:
        return {}
    rate = opt.last_rate.detach().float().cpu()
    mix = opt.last_mix.detach().float().cpu().mean(dim=0)
    stats = {"l3rs/rate_mean": float(rate.mean()), "l3rs/rate_min": float(rate.min())}
    stats["l3rs/rate_max"] = float(rate.max())
    stats.update({f"l3rs/mix_{name}": float(a) for name, a in zip(opt.direction_names, mix)})
    if opt.config.adapts:
        stats["l3rs/rate_multiplier"] = opt.rate_multiplier
        multipliers = opt.rate_multipliers
        stats["l3rs/rate_multiplier_min"] = float(multipliers.min())
        stats["l3rs/rate_multiplier_max"] = float(multipliers.max())
    return stats


class L3RSCallback(TrainerCallback):
    """Gives L3RS the Trainer's step count and the model's loss, and puts the learned rate
    and mixing into the Trainer's logs."""

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        opt = find_l3rs(optimizer)
        if opt is None:
            return
        if opt.total_steps is not None and opt.total_steps != state.max_steps:
            # e.g. a run resumed with a larger max_steps: its optimizer state carries the old horizon
            logger.info(
                "L3RS: horizon changed from %d to the Trainer's max_steps=%d (time features and the "
                "rate prior now follow the new horizon)",
                opt.total_steps,
                state.max_steps,
            )
        if opt.total_steps != state.max_steps:
            opt.set_total_steps(int(state.max_steps))
        if model is not None and not opt.captures_loss:
            opt.capture_loss_from(model)

    def on_log(self, args, state, control, logs=None, optimizer=None, **kwargs):
        """Adds the statistics to the entry being logged (seen by the callbacks after this one)
        and to ``state.log_history``; :class:`L3RSTrainer` adds them before every callback."""
        opt = find_l3rs(optimizer)
        if opt is None or logs is None or "loss" not in logs:
            return
        stats = {k: v for k, v in learned_rate_stats(opt).items() if k not in logs}
        logs.update(stats)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(stats)


class L3RSTrainer(Trainer):
    """``Trainer`` with :class:`L3RSCallback` and, unless you chose one, a constant
    ``lr_scheduler_type`` so Trainer's default linear decay does not rescale L3RS's learned
    schedule."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if not any(isinstance(c, L3RSCallback) for c in callbacks):
            callbacks.append(L3RSCallback())
        super().__init__(*args, callbacks=callbacks, **kwargs)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Trainer's log with the learned-rate statistics added before any integration
        (TensorBoard, trackio, ...) sees the entry."""
        opt = find_l3rs(self.optimizer)
        if opt is not None and "loss" in logs:
            logs = {**logs, **learned_rate_stats(opt)}
        super().log(logs, *args, **kwargs)

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
