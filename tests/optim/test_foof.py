"""FOOF (hf_l3rs.optim.foof): the input-whitened step checked by hand with NumPy, what its
hooks record, SGD where it does not precondition, and its registry kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hf_l3rs.optim.foof import FOOF
from hf_l3rs.registry import parse_family, parse_optimizer


def _layer(seed: int = 0, bias: bool = True) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(4, 3, bias=bias).double()


def _grad_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _expected(w: np.ndarray, g: np.ndarray, moment: np.ndarray, lr: float, damping: float) -> np.ndarray:
    e, v = np.linalg.eigh(moment)
    e = np.clip(e, 0, None)
    e = e + damping * e.max()
    return w - lr * (g @ v / e) @ v.T


def test_foof_step_by_hand_with_the_bias_as_an_input_coordinate() -> None:
    """Two steps: [W, b] -= lr·[G, g_b]·(Â + δλ_max I)^(-1), Â the bias-corrected EMA of
    [x, 1][x, 1]ᵀ over the batch."""
    layer = _layer()
    opt = FOOF(layer.parameters(), model=layer, lr=0.7, beta=0.9, damping=1e-2)
    gen = torch.Generator().manual_seed(1)
    ema = np.zeros((5, 5))
    for step in (1, 2):
        x = torch.randn(6, 4, generator=gen, dtype=torch.float64) + 2.0  # a shared mean, as pooled ReLU features
        y = torch.randint(0, 3, (6,), generator=gen)
        xa = np.concatenate([x.numpy(), np.ones((6, 1))], axis=1)
        ema = 0.9 * ema + 0.1 * xa.T @ xa / 6
        layer.zero_grad()
        nn.functional.cross_entropy(layer(x), y).backward()
        wb = np.concatenate([layer.weight.detach().numpy(), layer.bias.detach().numpy()[:, None]], axis=1)
        g = np.concatenate([layer.weight.grad.numpy(), layer.bias.grad.numpy()[:, None]], axis=1)
        want = _expected(wb, g, ema / (1 - 0.9**step), 0.7, 1e-2)
        opt.step()
        np.testing.assert_allclose(layer.weight.detach().numpy(), want[:, :4], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(layer.bias.detach().numpy(), want[:, 4], rtol=1e-9, atol=1e-12)
    assert opt.state[layer.weight]["count"] == 2


def test_foof_records_only_forwards_with_gradients_and_sums_accumulated_ones() -> None:
    """Evaluation under no_grad does not enter the moment; two forwards before one step count
    as one batch of their rows together (gradient accumulation)."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (8,), generator=gen)
    whole, split = _layer(bias=False), _layer(bias=False)
    opt_whole = FOOF(whole.parameters(), model=whole, lr=0.5)
    opt_split = FOOF(split.parameters(), model=split, lr=0.5)
    with torch.no_grad():
        split(torch.randn(5, 4, dtype=torch.float64) * 100)  # an evaluation pass: not recorded
    _grad_step(whole, opt_whole, x, y)
    opt_split.zero_grad()
    for half in (slice(0, 4), slice(4, 8)):
        (nn.functional.cross_entropy(split(x[half]), y[half]) / 2).backward()
    opt_split.step()
    torch.testing.assert_close(split.weight, whole.weight)
    torch.testing.assert_close(opt_split.state[split.weight]["input_moment"], x.T @ x / 8 * 0.05)


def test_foof_is_sgd_where_it_does_not_precondition() -> None:
    """Convolutions, norms and linear layers wider than max_fan_in step like SGD; so does a
    linear layer before its first recorded input."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    wide = FOOF(model.parameters(), model=model, lr=0.1, max_fan_in=8)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(5, 1, 6, 6), torch.randint(0, 3, (5,))
    _grad_step(model, wide, x, y)
    for p, b in zip(model.parameters(), before):
        torch.testing.assert_close(p.detach(), b - 0.1 * p.grad)
    linear = _layer()
    unseen = FOOF(linear.parameters(), model=linear, lr=0.1)
    before = [p.detach().clone() for p in linear.parameters()]
    for p in linear.parameters():
        p.grad = torch.ones_like(p)
    unseen.step()  # no forward was recorded: SGD
    for p, b in zip(linear.parameters(), before):
        torch.testing.assert_close(p.detach(), b - 0.1)


def test_foof_skips_a_layer_whose_inputs_are_not_finite_and_recovers() -> None:
    """A step whose recorded inputs are not finite leaves the layer as it was and stays out
    of the moment's EMA, so the next finite step whitens as if it had not happened."""
    layer, clean = _layer(), _layer()
    opt = FOOF(layer.parameters(), model=layer, lr=0.1)
    opt_clean = FOOF(clean.parameters(), model=clean, lr=0.1)
    before = layer.weight.detach().clone()
    x = torch.ones(3, 4, dtype=torch.float64)
    x[0, 0] = float("inf")
    layer(x).sum().backward()
    layer.weight.grad.zero_()
    layer.bias.grad.zero_()
    opt.step()
    torch.testing.assert_close(layer.weight.detach(), before)
    assert "input_moment" not in opt.state[layer.weight]
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    _grad_step(layer, opt, x, y)
    _grad_step(clean, opt_clean, x, y)
    torch.testing.assert_close(layer.weight, clean.weight)
    assert not torch.equal(layer.weight.detach(), before)


def test_foof_needs_its_model_and_removes_its_hooks() -> None:
    layer = _layer()
    with pytest.raises(TypeError, match="needs the model"):
        FOOF(layer.parameters(), model=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="damping"):
        FOOF(layer.parameters(), model=layer, damping=0.0)
    opt = FOOF(layer.parameters(), model=layer, lr=0.1)
    opt.remove_hooks()
    layer(torch.ones(2, 4, dtype=torch.float64)).sum().backward()
    expected = [(p - 0.1 * p.grad).detach().clone() for p in layer.parameters()]
    opt.step()  # nothing was recorded: every tensor takes SGD's step
    for p, e in zip(layer.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)


def test_registry_builds_foof_with_the_model() -> None:
    spec = parse_optimizer("foof-const-head-3")
    assert spec.family == "foof-const-head" and spec.label == "FOOF (const, head) 3"
    assert parse_family("foof-cos").kind == "foof"
    layer = _layer()
    with pytest.raises(ValueError, match="model="):
        spec.build(layer.parameters(), 10)
    opt = parse_optimizer("foof-cos-0.5").factory()(layer, 10)
    x, y = torch.randn(4, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    before = layer.weight.detach().clone()
    _grad_step(layer, opt, x, y)
    assert not torch.equal(before, layer.weight.detach())
    assert opt.inner.state[layer.weight]["count"] == 1
