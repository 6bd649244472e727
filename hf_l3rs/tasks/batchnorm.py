"""Evaluation with BatchNorm statistics re-estimated on the task's training images.

After a few fine-tuning steps a BatchNorm model evaluated in ``eval()`` mode still normalises
with running statistics that are mostly the pretraining data's (momentum 0.1: 35 % of them
are left after 10 steps), so its held-out accuracy measures how little the backbone moved as
much as how well it was trained (docs/adr/0006 "BatchNorm statistics at short horizons").
Re-estimating them on the training images at the evaluated weights ("precise BN", as
``torch.optim.swa_utils.update_bn`` does after weight averaging) removes that lag for every
optimizer alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

EVAL_BATCHNORM = ("running", "recalibrated")


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@contextmanager
def recalibrated_batchnorm(model: nn.Module, inputs: Tensor, chunk: int = 256) -> Iterator[nn.Module]:
    """Within the block, ``model``'s BatchNorm layers hold statistics estimated on ``inputs``
    (a cumulative average over chunks, no gradient) and are in eval mode; on exit their
    buffers, momenta and modes are as before, so training continues unchanged."""
    norms = _batchnorms(model)
    if not norms:
        yield model
        return
    saved = [
        (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum, m.training)
        for m in norms
    ]
    try:
        with torch.no_grad():
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the chunks
                m.train()
            for start in range(0, len(inputs), chunk):
                model(inputs[start : start + chunk])
            for m in norms:
                m.eval()
        yield model
    finally:
        with torch.no_grad():
            for m, (mean, var, count, momentum, training) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
                m.momentum = momentum
                m.train(training)
