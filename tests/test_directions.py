"""Base directions against references that do not share their code: torch's own Adam and
Adamax, and hand-computed Lion and LAMB steps (docs/design.md §1, table of directions)."""

from __future__ import annotations

import pytest
import torch

from hf_l3rs.optim.directions import get_direction


def _run(name: str, hp: dict[str, float], grads: list[torch.Tensor], p: torch.Tensor) -> list[torch.Tensor]:
    """Directions of ``name`` for a sequence of gradients, through both implementations."""
    direction = get_direction(name)
    state = direction.init_state(p)
    out = []
    for step, g in enumerate(grads, start=1):
        states = {k: [v] for k, v in state.items()}
        (d,), new = direction.compute([p], [g], states, hp, step)
        d_ref, new_ref = direction.reference(p, g, state, hp, step)
        torch.testing.assert_close(d, d_ref)
        state = {k: v[0] for k, v in new.items()}
        for k in state:
            torch.testing.assert_close(state[k], new_ref[k])
        out.append(d)
    return out


def _grads(n: int = 6) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(5, generator=g, dtype=torch.float64) * (i + 1) for i in range(n)]


@pytest.mark.parametrize(("name", "torch_cls"), [("adam", torch.optim.Adam), ("adamax", torch.optim.Adamax)])
def test_adam_and_adamax_match_torch(name: str, torch_cls: type) -> None:
    """torch's update divided by its lr is the direction (same β, ε; tolerance for where ε
    enters Adamax's max)."""
    hp = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    grads = _grads()
    ours = _run(name, hp, grads, torch.zeros(5, dtype=torch.float64))
    w = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    opt = torch_cls([w], lr=1.0, betas=(0.9, 0.999), eps=1e-8)
    for g, d in zip(grads, ours):
        before = w.detach().clone()
        w.grad = g.clone()
        opt.step()
        torch.testing.assert_close(before - w.detach(), d, rtol=1e-6, atol=1e-9)


def test_lion_by_hand() -> None:
    """d = sign(β1·m + (1 − β1)·g), then m ← β2·m + (1 − β2)·g; worked out on paper."""
    g1 = torch.tensor([0.5, -2.0, 0.0])
    g2 = torch.tensor([1.0, 1.0, -1.0])
    d1, d2 = _run("lion", {"beta1": 0.9, "beta2": 0.99}, [g1, g2], torch.zeros(3))
    # step 1: m = 0 -> sign(0.1·g1) = (1, -1, 0); m = 0.01·g1 = (0.005, -0.02, 0)
    assert d1.tolist() == [1.0, -1.0, 0.0]
    # step 2: 0.9·m + 0.1·g2 = (0.1045, 0.082, -0.1)
    assert d2.tolist() == [1.0, 1.0, -1.0]


def test_lamb_is_the_adam_direction_plus_decay_by_hand() -> None:
    """At step 1 Adam's bias-corrected direction is g / (|g| + ε) ≈ sign(g); LAMB adds λ·p."""
    p = torch.tensor([1.0, 2.0, -4.0], dtype=torch.float64)
    g = torch.tensor([0.5, -0.25, 3.0], dtype=torch.float64)
    (d,) = _run("lamb", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-6, "weight_decay": 0.01}, [g], p)
    expected = torch.tensor([1.0 + 0.01, -1.0 + 0.02, 1.0 - 0.04], dtype=torch.float64)
    torch.testing.assert_close(d, expected, rtol=0, atol=1e-5)
