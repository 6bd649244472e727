"""Base directions against references that do not share their code: torch's own Adam and
Adamax, and hand-computed Lion and LAMB steps (docs/design.md §1, table of directions)."""

from __future__ import annotations

import math

import numpy as np
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


def _inverse_sqrt_numpy(r: np.ndarray, damping: float) -> np.ndarray:
    e, v = np.linalg.eigh(r)
    e = np.clip(e, 0.0, None)
    e = e + damping * e.max()
    return (v / np.sqrt(e)) @ v.T


def test_shampoo_whitens_a_linear_weight_by_hand() -> None:
    """d = m̂·(R̂ + δ·λ_max·I)^(-1/2), R the EMA of GᵀG over the fan-in, m Adam's momentum;
    the reference recomputed with NumPy's eigendecomposition."""
    hp = {"beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "damping": 1e-3}
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(3)]
    ours = _run("shampoo", hp, grads, torch.zeros(4, 3, dtype=torch.float64))
    m, r = np.zeros((4, 3)), np.zeros((3, 3))
    for step, (gt, d) in enumerate(zip(grads, ours), start=1):
        gn = gt.numpy()
        m = 0.9 * m + 0.1 * gn
        r = 0.99 * r + 0.01 * gn.T @ gn
        expected = (m / (1 - 0.9**step)) @ _inverse_sqrt_numpy(r / (1 - 0.99**step), 1e-3)
        np.testing.assert_allclose(d.numpy(), expected, rtol=1e-8, atol=1e-10)


def test_shampoo_removes_the_shared_input_mean() -> None:
    """Why the direction exists: gradients of a head on features with a large shared mean
    (post-ReLU pooled features) point mostly along that mean under Adam; the whitened
    direction does not (its component along the mean is a small fraction)."""
    g = torch.Generator().manual_seed(0)
    mean = torch.ones(8, dtype=torch.float64) * 5.0
    grads = []
    for _ in range(6):
        x = mean + torch.randn(16, 8, generator=g, dtype=torch.float64)  # 16 inputs
        err = torch.randn(16, 3, generator=g, dtype=torch.float64)  # softmax - onehot, 3 classes
        grads.append(err.T @ x / 16)
    hp = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "damping": 1e-4}
    unit = mean / mean.norm()

    def along_mean(d: torch.Tensor) -> float:
        return float((d @ unit).norm() / d.norm())

    adam = _run("adam", hp, grads, torch.zeros(3, 8, dtype=torch.float64))[-1]
    whitened = _run("shampoo", hp, grads, torch.zeros(3, 8, dtype=torch.float64))[-1]
    assert along_mean(adam) > 0.6
    assert along_mean(whitened) < 0.5 * along_mean(adam)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 3, 3), (2, 600)])
def test_shampoo_is_adam_where_it_does_not_precondition(shape: tuple[int, ...]) -> None:
    """Vectors, convolutions and layers wider than ``max_fan_in`` get Adam's direction."""
    hp = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "damping": 1e-4}
    g = torch.Generator().manual_seed(2)
    grads = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3)]
    p = torch.zeros(shape, dtype=torch.float64)
    for d, a in zip(_run("shampoo", hp, grads, p), _run("adam", hp, grads, p)):
        torch.testing.assert_close(d, a, rtol=0, atol=0)


def test_shampoo_returns_nan_when_its_preconditioner_is_not_finite() -> None:
    """A non-finite gradient must not reach the weights: the direction's norm is NaN, which
    the L3RS step treats as a non-finite component and skips, leaving the state untouched."""
    hp = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "damping": 1e-4}
    p = torch.zeros(2, 3, dtype=torch.float64)
    state = get_direction("shampoo").init_state(p)
    g = torch.tensor([[1.0, math.inf, 0.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
    d, _ = get_direction("shampoo").reference(p, g, state, hp, 1)
    assert not math.isfinite(float(d.norm()))
