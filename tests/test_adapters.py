"""LoRA adapters: ``adapter_steps="weight"`` multiplies the adapter matrices' rates by
1 / (s·√r·rms(A₀)) and nothing else (docs/design.md §1 "Low-rank adapters")."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from hf_l3rs import L3RS, L3RSConfig
from hf_l3rs.optim import adapters
from hf_l3rs.optim.adapters import adapter_rate_scales
from hf_l3rs.optim.config import ConfigError


class FakeLoraLinear(nn.Module):
    """peft's LoraLayer as L3RS reads it: a frozen base layer, ``lora_A`` / ``lora_B`` module
    dicts by adapter name, ``scaling`` (α / r) and ``r`` per adapter; B starts at zero."""

    def __init__(self, fan_in: int, fan_out: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.base_layer = nn.Linear(fan_in, fan_out)
        self.base_layer.requires_grad_(False)
        self.lora_A = nn.ModuleDict({"default": nn.Linear(fan_in, rank, bias=False)})
        self.lora_B = nn.ModuleDict({"default": nn.Linear(rank, fan_out, bias=False)})
        nn.init.zeros_(self.lora_B["default"].weight)
        self.scaling = {"default": alpha / rank}
        self.r = {"default": rank}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lora = self.lora_B["default"](self.lora_A["default"](x))
        return self.base_layer(x) + self.scaling["default"] * lora


def adapted_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(FakeLoraLinear(8, 6, rank=2, alpha=4.0), nn.ReLU(), nn.Linear(6, 3))


def one_step(model: nn.Module, adapter_steps: str) -> L3RS:
    opt = L3RS(model, L3RSConfig(adapter_steps=adapter_steps), total_steps=5, seed=0)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step(loss=loss)
    return opt


def test_weight_steps_scale_the_adapters_rates_by_their_weight_space_factor(caplog, monkeypatch) -> None:
    monkeypatch.setattr(adapters, "_LOGGED", set())  # logged once per layout and process
    model = adapted_model()
    a = model[0].lora_A["default"].weight
    want = 1 / (2.0 * math.sqrt(2) * float(a.detach().pow(2).mean().sqrt()))
    with caplog.at_level("INFO", logger="hf_l3rs"):
        plain, weighted = one_step(copy.deepcopy(model), "tensor"), one_step(copy.deepcopy(model), "weight")
    assert "2 LoRA adapter matrices are stepped in the units of the weight" in caplog.text
    names = [c.name for c in weighted.components]
    assert names == ["0.lora_A.default.weight", "0.lora_B.default.weight", "2.weight", "2.bias"]
    ratio = (weighted.last_rate / plain.last_rate).tolist()
    assert ratio[:2] == pytest.approx([want, want], rel=1e-5)
    assert ratio[2:] == pytest.approx([1.0, 1.0], rel=1e-6)
    assert want > 1  # the adapters' plain steps move W less than the rule meant


def test_a_model_without_adapters_is_unchanged() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    assert adapter_rate_scales(model, list(model.parameters())).tolist() == [1.0] * 4
    plain, weighted = one_step(copy.deepcopy(model), "tensor"), one_step(copy.deepcopy(model), "weight")
    assert torch.equal(plain.last_rate, weighted.last_rate)
    assert adapter_rate_scales(None, list(model.parameters())).tolist() == [1.0] * 4


def test_peft_lora_adapters_are_found() -> None:
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    model = peft.get_peft_model(base, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["0"]))
    params = [p for p in model.parameters() if p.requires_grad]
    scales = adapter_rate_scales(model, params)
    a = next(p for n, p in model.named_parameters() if "lora_A" in n)
    want = 1 / (2.0 * math.sqrt(2) * float(a.detach().pow(2).mean().sqrt()))
    assert scales.tolist() == pytest.approx([want, want], rel=1e-5)


def test_bad_adapter_steps_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="adapter_steps"):
        L3RSConfig(adapter_steps="rank")


def test_weight_steps_match_the_loop_reference() -> None:
    """Ten steps of L3RS on a model with a LoRA layer equal the readable per-component loop
    (optim/reference.py) handed the same adapter multipliers."""
    from hf_l3rs.optim.reference import ReferenceL3RS

    config = L3RSConfig(adapter_steps="weight", rate_adaptation="hypergradient", adaptation_scope="component")
    fast_model, ref_model = adapted_model(), adapted_model()
    fast = L3RS(fast_model, config, total_steps=10, implementation="foreach", seed=3)
    params = [p for p in ref_model.parameters() if p.requires_grad]
    scales = adapter_rate_scales(ref_model, params).tolist()
    ref = ReferenceL3RS([{"params": params}], fast.net, fast.components, 10, adapter_scales=scales)
    g = torch.Generator().manual_seed(2)
    for _ in range(10):
        x, y = torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
        losses = []
        for model in (fast_model, ref_model):
            model.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            losses.append(loss.detach())
        fast.step(loss=losses[0])
        ref.step(float(losses[1]))
    moved = 0.0
    for (name, p), q in zip(fast_model.named_parameters(), ref_model.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7), name
        moved += float((p - adapted_model().get_parameter(name)).detach().norm())
    assert moved > 1e-3
