"""The compiled backend (torch.compile of the two passes): parity with the loop reference for
every base direction, one graph per run, bitwise resume (docs/design.md §1 "Backends")."""

from __future__ import annotations

import pytest
import torch
from conftest import grouped, lively, resume_matches_straight_run, small_cnn, train_step
from test_parity import CASES, _assert_close, _fast, _reference

from hf_l3rs import L3RS, L3RSConfig
from hf_l3rs.optim.compiled import compiled_unavailable_reason

pytestmark = pytest.mark.skipif(compiled_unavailable_reason() is not None, reason="torch.compile unavailable")


@pytest.mark.parametrize("case", ["every_direction", "hypergradient", "hypergradient_target"])
def test_compiled_matches_reference(case: str) -> None:
    config = L3RSConfig(**CASES[case])
    _assert_close(_fast(config, "compiled"), _reference(config))


def test_one_graph_serves_the_whole_run() -> None:
    """Step count, rates and coefficients enter as tensors: no recompilation after step 1."""
    model = small_cnn()
    opt = lively(L3RS(grouped(model), L3RSConfig(), total_steps=10, implementation="compiled"))
    opt.step(loss=train_step(model, 0))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for t in range(1, 10):
            opt.step(loss=train_step(model, t))
    assert all(opt.state[p]["step"] == 10 for p in model.parameters())


def test_compiled_resume_is_bitwise(tmp_path) -> None:
    resume_matches_straight_run(tmp_path, L3RSConfig(), "compiled", live=True)


def test_compiled_skips_a_nonfinite_component_like_the_other_backends() -> None:
    """A NaN gradient in one tensor: that tensor and its state stay as they were, the others move."""
    model = small_cnn()
    opt = lively(L3RS(grouped(model), L3RSConfig(), total_steps=10, implementation="compiled"))
    opt.step(loss=train_step(model, 0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    state_before = opt.state[model.head.weight]["adam.exp_avg"].clone()
    loss = train_step(model, 1)
    model.head.weight.grad[0, 0] = float("nan")
    opt.step(loss=loss)
    assert torch.equal(model.head.weight, before["head.weight"])
    assert torch.equal(opt.state[model.head.weight]["adam.exp_avg"], state_before)
    assert opt.state[model.head.weight]["step"] == 1
    assert not torch.equal(model.conv1.weight, before["conv1.weight"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
