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
        (e.g. ``"hyper_raw"``) or part of it with an index of integers and ``:``
        (e.g. ``"biases.2[:, 0]"``, the rate logit's bias), for searches that treat some
        coordinates differently."""
        base, index = _split_index(name)
        names = dict(self.named_parameters())
        if base not in names:
            raise KeyError(f"{type(self).__name__} has no parameter {base!r}; known: {sorted(names)}")
        parts = []
        for n, p in self.named_parameters():
            part = torch.zeros(p.shape, dtype=torch.bool)
            if n == base:
                try:  # torch reports an index out of range or with too many entries
                    part[index if index is not None else ...] = True
                except IndexError as exc:
                    raise KeyError(f"{name!r}: {exc} (shape {tuple(p.shape)})") from None
            parts.append(part.reshape(-1))
        return torch.cat(parts)

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


def _split_index(name: str) -> tuple[str, tuple[int | slice, ...] | None]:
    """``"weights.2[:, 0, 0]"`` -> ("weights.2", (slice(None), 0, 0)); no brackets -> (name, None)."""
    if "[" not in name:
        return name, None
    base, _, rest = name.partition("[")
    if not rest.endswith("]"):
        raise KeyError(f"{name!r}: an index is written [i, :, j]")
    index: list[int | slice] = []
    for item in (s.strip() for s in rest[:-1].split(",")):
        if item == ":":
            index.append(slice(None))
        elif item.lstrip("-").isdigit():
            index.append(int(item))
        else:
            raise KeyError(f"{name!r}: index entries are integers or ':', got {item!r}")
    return base.strip(), tuple(index)
