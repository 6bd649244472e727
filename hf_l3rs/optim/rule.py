"""The L3RS update rule as pure functions over tensors (docs/design.md §1): the norms become
the network's input statistics, the network's rate and mix become each base direction's
coefficient. The optimizer class owns the state and calls these in its step."""

from __future__ import annotations

import torch
from torch import Tensor

#: keeps a zero-norm direction's coefficient finite
NORM_EPS = 1e-12
#: inside the features' logs (log ‖p‖, log ‖g‖, log ‖d_k‖): a zero norm gives a finite feature
FEATURE_EPS = 1e-12

#: The numbers a step computes from the same weights, gradients and state. Scored results belong
#: to a weights version *and* this (benchmark.run.weights_version hashes both): bump it with any
#: change that moves a step's numbers. 1: every sum exact; 2: Adam's sums on large tensors from
#: one page in eight (docs/adr/0012).
RULE_VERSION = 2


def norm_statistics(pnorm: Tensor, gnorm: Tensor, loss: float | None, active: Tensor, n: int, eps: float) -> Tensor:
    """[n, 3] float64: log ‖p‖, log ‖g‖ of the active rows (a non-finite gradient norm as 0)
    and the step's loss (0 when it is not finite) in every row; the EMA features track them."""
    stats = torch.zeros(n, 3, dtype=torch.float64)
    stats[active, 0] = torch.log(pnorm[active] + eps)
    stats[active, 1] = torch.log(torch.nan_to_num(gnorm, nan=0.0, posinf=0.0) + eps)
    stats[:, 2] = loss if loss is not None else 0.0
    return stats


def direction_log_norms(dnorm: Tensor, eps: float) -> Tensor:
    """log ‖d_k‖ per active component and direction (a non-finite norm as 0)."""
    return torch.log(torch.nan_to_num(dnorm, nan=0.0, posinf=0.0) + eps)


def coefficients(
    rate: Tensor,
    mix: Tensor,
    dnorm: Tensor,
    lr: Tensor,
    weight_decay: Tensor,
    finite: Tensor,
    numel: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """coef_k = λ·η·α_k / (‖d_k‖ + ε) per active component and direction (``numel``: the norm
    as an RMS, ``norm="rms"``) and the decoupled decay λ·η·wd, both float64; zero where not
    ``finite`` so that nothing non-finite reaches the weights. p ← (1 − decay)·p − Σ coef_k·d_k."""
    scale = dnorm.clone()
    if numel is not None:
        scale = scale / torch.sqrt(numel)[:, None]
    coef = (lr * rate)[:, None] * mix / (scale + NORM_EPS)
    decay = lr * rate * weight_decay
    coef = torch.where(finite[:, None], coef, torch.zeros_like(coef))
    decay = torch.where(finite, decay, torch.zeros_like(decay))
    return coef, decay
