"""Where each step's training loss comes from (docs/design.md §1 "Loss and time").

L3RS's features need the loss of the step it takes. Loops can pass it to ``step(loss=...)``
or announce it with ``observe_loss``; frameworks that call ``optimizer.step()`` with no
arguments (``transformers.Trainer``, Accelerate) are served by a forward hook on the model that
reads ``output.loss`` the way Hugging Face models return it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class MissingLossError(RuntimeError):
    """``step()`` was called without the loss of the step (argument, closure, hook or
    ``observe_loss``)."""


def as_loss(loss: Tensor | float) -> Tensor:
    """A detached float32 scalar; anything with more than one element is an error."""
    t = loss.detach() if isinstance(loss, Tensor) else torch.tensor(float(loss))
    if t.numel() != 1:
        raise ValueError(f"L3RS: the loss must be a scalar, got shape {tuple(t.shape)}")
    return t.reshape(()).float()


class LossSource:
    """The announced loss, else the mean of the losses captured since the last step."""

    def __init__(self) -> None:
        self._pending: Tensor | None = None
        self._sum: Tensor | None = None
        self._count = 0
        self._hook: Any = None

    def observe(self, loss: Tensor | float) -> None:
        self._pending = as_loss(loss)

    def watch(self, module: nn.Module) -> None:
        """Capture ``output.loss`` (or ``output["loss"]``) of every forward of ``module`` in
        training mode with grad enabled (gradient accumulation: their mean is the step's)."""
        self.unwatch()
        self._hook = module.register_forward_hook(self._capture)

    @property
    def watching(self) -> bool:
        """Whether a module's forward passes feed this source."""
        return self._hook is not None

    def unwatch(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _capture(self, module: nn.Module, args: Any, output: Any) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        loss = getattr(output, "loss", None)
        if loss is None and isinstance(output, dict):
            loss = output.get("loss")
        if isinstance(loss, Tensor) and loss.numel() == 1:
            value = loss.detach().float().reshape(())
            self._sum = value if self._sum is None else self._sum + value
            self._count += 1

    def for_step(self, closure: Any, given: Tensor | float | None, missing: str) -> tuple[Tensor, Any]:
        """An optimizer step's loss: run ``closure`` (with grad) when given, then :meth:`take`;
        returns (the loss as a float32 scalar, what ``step()`` returns). ``missing`` is the
        error message when no loss came from anywhere."""
        if closure is not None:
            with torch.enable_grad():
                closure_loss = closure()
            if given is None:
                given = closure_loss
        loss = self.take(given)
        if loss is None:
            raise MissingLossError(missing)
        return loss, given if isinstance(given, Tensor) else loss

    def take(self, given: Tensor | float | None = None) -> Tensor | None:
        """This step's loss (``given`` first, then the announced one, then the captured mean),
        and forget what was collected for it."""
        loss = as_loss(given) if given is not None else self._pending
        if loss is None and self._count:
            loss = self._sum / self._count
        self._pending, self._sum, self._count = None, None, 0
        return loss
