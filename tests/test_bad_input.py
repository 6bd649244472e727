"""Bad input is refused by name before it reaches a kernel (issue 39)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hf_l3rs import L3RS


def _trained_state(classes: int) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, classes))
    opt = L3RS(model, total_steps=5)
    loss = model(torch.randn(3, 4)).sum()
    loss.backward()
    opt.step(loss=loss)
    return opt.state_dict()


@pytest.mark.parametrize(("saved", "here"), [(6, 8), (8, 6)])
def test_a_state_saved_for_another_head_is_refused_by_name(saved, here):
    state = _trained_state(saved)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, here))
    opt = L3RS(model, total_steps=5)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"'2\.weight' has shape \(" + str(saved)):
        opt.load_state_dict(state)
    loss = model(torch.randn(3, 4)).sum()  # the optimizer is still usable, untouched
    loss.backward()
    opt.step(loss=loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_state_of_another_model_size_is_refused():
    state = _trained_state(6)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.Linear(6, 2))
    opt = L3RS(model, total_steps=5)
    with pytest.raises(ValueError, match=r"config differs"):
        opt.load_state_dict(state)


def test_the_same_model_still_resumes():
    state = _trained_state(6)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6))
    opt = L3RS(model, total_steps=5)
    opt.load_state_dict(state)
    assert opt.state_dict()["l3rs"]["step"] == 1
