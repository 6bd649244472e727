"""Property-based tests of the optimizer's invariants across backends (issue 39, hypothesis):
finite weights from finite gradients, a zero gradient moves nothing, fused = foreach, and a
state round trip continues bitwise."""

from __future__ import annotations

import copy

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from conftest import lively  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hf_l3rs import L3RS, L3RSConfig  # noqa: E402
from hf_l3rs.optim.fused import load_fused  # noqa: E402

BACKENDS = ["foreach", "fused"] if load_fused() is not None else ["foreach"]
shapes = st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=3), min_size=1, max_size=4)
scales = st.floats(min_value=1e-6, max_value=1e6)


def _params(shape_list: list[list[int]], seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s, generator=g)) for s in shape_list]


def _grads(params, scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed + 1)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * scale


CONFIG = L3RSConfig(hypergradient_rate=0.05)


@settings(max_examples=15, deadline=None)
@given(shape_list=shapes, scale=scales, seed=st.integers(0, 1000), backend=st.sampled_from(BACKENDS))
def test_finite_gradients_give_finite_weights(shape_list, scale, seed, backend) -> None:
    params = _params(shape_list, seed)
    opt = lively(L3RS(params, CONFIG, total_steps=5, implementation=backend))
    for t in range(3):
        _grads(params, scale, seed + t)
        opt.step(loss=float(scale))
    assert all(torch.isfinite(p).all() for p in params)


@settings(max_examples=10, deadline=None)
@given(shape_list=shapes, seed=st.integers(0, 1000), backend=st.sampled_from(BACKENDS))
def test_a_zero_gradient_moves_nothing(shape_list, seed, backend) -> None:
    params = _params(shape_list, seed)
    before = [p.detach().clone() for p in params]
    opt = lively(L3RS(params, CONFIG, total_steps=5, implementation=backend))
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step(loss=1.0)
    assert all(torch.equal(p, b) for p, b in zip(params, before))


@pytest.mark.skipif(len(BACKENDS) < 2, reason="no C++ toolchain: fused kernels unavailable")
@settings(max_examples=10, deadline=None)
@given(shape_list=shapes, scale=st.floats(min_value=1e-3, max_value=1e3), seed=st.integers(0, 1000))
def test_fused_and_foreach_agree(shape_list, scale, seed) -> None:
    runs = []
    for backend in ("foreach", "fused"):
        params = _params(shape_list, seed)
        opt = lively(L3RS(params, CONFIG, total_steps=5, implementation=backend, seed=2))
        for t in range(3):
            _grads(params, scale, seed + t)
            opt.step(loss=1.0)
        runs.append(params)
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(shape_list=shapes, seed=st.integers(0, 1000), backend=st.sampled_from(BACKENDS))
def test_a_state_round_trip_continues_bitwise(shape_list, seed, backend) -> None:
    params = _params(shape_list, seed)
    opt = lively(L3RS(params, CONFIG, total_steps=6, implementation=backend))
    for t in range(2):
        _grads(params, 1.0, seed + t)
        opt.step(loss=1.0)
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    copy_opt = lively(L3RS(twin, CONFIG, total_steps=6, implementation=backend, seed=9))
    copy_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    for t in range(2, 4):
        _grads(params, 1.0, seed + t)
        _grads(twin, 1.0, seed + t)
        opt.step(loss=1.0)
        copy_opt.step(loss=1.0)
    assert all(torch.equal(p, q) for p, q in zip(params, twin))
