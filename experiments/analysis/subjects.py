"""What `hf-l3rs analyze` opens up (docs/design.md §6): learned meta-weights, or a
hand-designed optimizer to compare them with, behind one small interface."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: hand-designed optimizers the analyses can be checked against
HAND_DESIGNED = {
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999)),
    "sgd-momentum": lambda params: torch.optim.SGD(params, lr=1e-2, momentum=0.9),
}


@dataclass
class Subject:
    """``make(model, total_steps)`` builds a fresh optimizer over ``model``; ``learned`` ones
    need the loss at every step."""

    name: str
    make: Callable[[nn.Module, int], torch.optim.Optimizer]
    learned: bool

    def step(self, opt: torch.optim.Optimizer, loss: float) -> None:
        if self.learned:
            opt.step(loss=loss)
        else:
            opt.step()


def get_subject(name: str) -> Subject:
    """``adam``, ``sgd-momentum``, or meta-weights (bundled name, folder or Hub id)."""
    if name in HAND_DESIGNED:
        build = HAND_DESIGNED[name]
        return Subject(name, lambda model, steps: build(list(model.parameters())), learned=False)
    from hf_l3rs.optim.hub import load_net
    from hf_l3rs.registry import learned_factory

    net = load_net(name)
    factory = learned_factory(net)

    return Subject(name, factory, learned=True)


class ProbeNet(nn.Module):
    """Tensors with the roles and depths of a fine-tuned network (stem conv and its norm, a
    deeper conv with bias, the linear head): every analysis reports per tensor. Never run
    forward; the analyses write its gradients."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.ModuleDict({"conv": nn.Conv2d(3, 8, 3, bias=False), "bn": nn.BatchNorm2d(8)})
        self.block = nn.ModuleDict({"conv": nn.Conv2d(8, 16, 3)})
        self.head = nn.Linear(64, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape) * 0.1)


def noise(step: int, shapes: list[torch.Size], seed: int) -> list[Tensor]:
    """Unit-variance gradients for ``step`` (the same in every run of one analysis)."""
    gen = torch.Generator().manual_seed(seed * 100_003 + step)
    return [torch.randn(s, generator=gen) for s in shapes]
