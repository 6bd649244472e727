"""θ as one flat vector: the view of a meta-network that NES perturbs (docs/design.md §2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FlatMetaParameters(nn.Module):
    """Mixin for meta-networks (L3RS's and VeLO-lite's): every parameter is part of θ."""

    @property
    def num_meta_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flat_mask(self, name: str) -> Tensor:
        """Boolean mask over θ (``get_flat`` order) selecting the parameter ``name``
        (e.g. ``"hyper_raw"``), for searches that treat some coordinates differently."""
        names = dict(self.named_parameters())
        if name not in names:
            raise KeyError(f"{type(self).__name__} has no parameter {name!r}; known: {sorted(names)}")
        return torch.cat([torch.full((p.numel(),), n == name, dtype=torch.bool) for n, p in self.named_parameters()])

    def get_flat(self) -> Tensor:
        """θ as one float64 vector (the order of ``parameters()``)."""
        return torch.cat([p.detach().reshape(-1).to(torch.float64) for p in self.parameters()])

    @torch.no_grad()
    def set_flat(self, theta: Tensor) -> None:
        if theta.numel() != self.num_meta_parameters:
            raise ValueError(f"set_flat: expected {self.num_meta_parameters} numbers, got {theta.numel()}")
        offset = 0
        for p in self.parameters():
            p.copy_(theta[offset : offset + p.numel()].view_as(p).to(p.dtype))
            offset += p.numel()
