"""A step-size scale that needs no learning rate: Prodigy's estimate of the distance to the
solution (Mishchenko & Defazio 2023), used as L3RS's scale in place of ``base_lr``
(docs/adr/0003-distance-scale.md).

After step k, with weights x_k (before they move), gradient g_k and the step's weight
w_k = d_k² · λ_k (λ_k the group ``lr``, the multiplier an outside scheduler may change),

    r ← β₃·r + w_k·⟨g_k, x₀ − x_k⟩,    s ← β₃·s + w_k·g_k,    d ← max(d, r / ‖s‖₁)

per tensor (scope ``component``) or with r and ‖s‖₁ summed over the model (scope ``model``,
Prodigy's). d starts at ``D0`` and never shrinks. The meta-network's rate, divided by
``base_lr``, modulates d per tensor and over time; the step of tensor l is d_l·ρ_l·u_l with
u_l the mix of unit-RMS base directions. State: x₀ and s per tensor (two copies of the
weights), r and d per tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

#: Prodigy's published start: small enough that the first steps cannot overshoot.
D0 = 1e-6
SCOPES = ("model", "component")


@dataclass
class DistanceState:
    """Explicit state of the estimate for n tensors (x₀ and s allocated at a tensor's first step)."""

    d: Tensor  # [n] float64
    numerator: Tensor  # [n] float64, r per tensor
    x0: list[Tensor | None] = field(default_factory=list)
    s: list[Tensor | None] = field(default_factory=list)
    #: the geometric mean of the network's rates over tensors at the first step: the network
    #: sets relative rates (between tensors, over time), d the absolute scale
    reference: float | None = None

    @classmethod
    def fresh(cls, n: int) -> DistanceState:
        return cls(
            torch.full((n,), D0, dtype=torch.float64), torch.zeros(n, dtype=torch.float64), [None] * n, [None] * n
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "d": self.d.clone(),
            "numerator": self.numerator.clone(),
            "x0": list(self.x0),
            "s": list(self.s),
            "reference": self.reference,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], params: list[Tensor]) -> DistanceState:
        n = len(params)
        out = cls(data["d"].to(torch.float64).cpu().clone(), data["numerator"].to(torch.float64).cpu().clone())
        if out.d.shape != (n,) or out.numerator.shape != (n,) or len(data["x0"]) != n or len(data["s"]) != n:
            raise ValueError("L3RS.load_state_dict: the distance scale's state was saved for another number of tensors")
        for key in ("x0", "s"):
            saved = []
            for t, p in zip(data[key], params):
                if t is not None and t.shape != p.shape:
                    raise ValueError(
                        f"L3RS.load_state_dict: the distance scale's {key!r} has shape {tuple(t.shape)} where the "
                        f"parameter has {tuple(p.shape)}: the state was saved for another model"
                    )
                saved.append(None if t is None else t.to(p).clone())
            setattr(out, key, saved)
        out.reference = None if data.get("reference") is None else float(data["reference"])
        return out


def observe(
    state: DistanceState,
    idx: list[int],
    params: list[Tensor],
    grads: list[Tensor],
    weight: Tensor,
    beta3: float,
    scope: str,
) -> None:
    """Fold one step (weights before they move) of tensors ``idx`` into ``state`` and raise d.

    ``weight`` [len(idx)] is w_k = d_k²·λ_k per tensor. Tensors seen for the first time record
    x₀ (their numerator term is 0 that step)."""
    if scope not in SCOPES:
        raise ValueError(f"distance scale: scope must be one of {SCOPES}, got {scope!r}")
    if not idx:
        return
    for j, p in zip(idx, params):
        if state.x0[j] is None:
            wide = torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else p.dtype
            state.x0[j] = p.detach().to(wide).clone()
            state.s[j] = torch.zeros_like(p, dtype=wide)
    x0 = [state.x0[j] for j in idx]
    s = [state.s[j] for j in idx]
    g32 = [g.to(si.dtype) for g, si in zip(grads, s)]
    diff = torch._foreach_sub(x0, [p.detach().to(x.dtype) for p, x in zip(params, x0)])
    dots = torch.stack([torch.vdot(a.reshape(-1), b.reshape(-1)) for a, b in zip(diff, g32)]).to("cpu", torch.float64)
    at = torch.tensor(idx, dtype=torch.long)
    w = weight.to(torch.float64).cpu()
    state.numerator[at] = beta3 * state.numerator[at] + w * dots
    torch._foreach_mul_(s, beta3)
    torch._foreach_add_(s, torch._foreach_mul(g32, [float(x) for x in w.tolist()]))
    l1 = torch.stack([n.to(torch.float64) for n in torch._foreach_norm(s, 1)]).cpu()
    if scope == "model":
        seen = torch.tensor([x is not None for x in state.x0])
        total_l1 = float(l1.sum()) + _l1_outside(state, idx, seen)
        if total_l1 > 0:
            d_hat = float(state.numerator[seen].sum()) / total_l1
            state.d[:] = torch.clamp(state.d, min=d_hat)
        return
    ok = l1 > 0
    d_hat = torch.where(ok, state.numerator[at] / torch.where(ok, l1, torch.ones_like(l1)), torch.zeros_like(l1))
    state.d[at] = torch.maximum(state.d[at], d_hat)


def _l1_outside(state: DistanceState, idx: list[int], seen: Tensor) -> float:
    """‖s‖₁ of the tensors that did not step this time (a frozen-for-now tensor still counts)."""
    stepped = set(idx)
    rest = [state.s[j] for j in range(len(state.s)) if bool(seen[j]) and j not in stepped]
    if not rest:
        return 0.0
    return float(sum(float(n) for n in torch._foreach_norm(rest, 1)))
