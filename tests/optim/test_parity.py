"""The fast L3RS step (fused and foreach) agrees with the loop reference (docs/design.md §1)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import grouped, lively, small_cnn, train_step

from hf_l3rs import L3RS, L3RSConfig
from hf_l3rs.optim.fused import load_fused
from hf_l3rs.optim.reference import ReferenceL3RS

STEPS = 50
# Every network here is made lively (conftest.lively): a large output scale makes the mixing
# and rate differ per component and per step, so every direction contributes; the default
# init would make them all ≈ normalised Adam.


def _fast(config: L3RSConfig, implementation: str) -> torch.nn.Module:
    model = small_cnn()
    opt = lively(L3RS(grouped(model), config, total_steps=40, implementation=implementation, seed=3), seed=3)
    for t in range(STEPS):  # 50 steps with total_steps=40: stepping past T is allowed
        loss = train_step(model, t)
        opt.step(loss=loss)
    return model


def _reference(config: L3RSConfig) -> torch.nn.Module:
    model = small_cnn()
    groups = grouped(model)
    probe = lively(L3RS(copy.deepcopy(groups), config, total_steps=40, implementation="foreach", seed=3), seed=3)
    plain = [{**g, "params": [p for _, p in g["params"]]} for g in groups]
    ref = ReferenceL3RS(plain, probe.net, probe.components, total_steps=40)
    for t in range(STEPS):
        loss = train_step(model, t)
        ref.step(loss.item())
    return model


def _assert_close(a: torch.nn.Module, b: torch.nn.Module, tol: float = 1e-6) -> None:
    moved = 0.0
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        rel = float((p - q).detach().norm() / q.detach().norm())
        assert rel <= tol, f"{name}: relative difference {rel:.2e} > {tol:g}"
        moved += float((p - small_cnn().get_parameter(name)).detach().norm())
    assert moved > 1e-3, "the parameters did not move: the comparison would be vacuous"


CASES = {
    "default": {},
    "every_direction": {"directions": ("sgd", "adam", "lion", "lamb", "adamax", "weight_decay")},
    "sgd+lion": {"directions": ("sgd", "lion")},
    "adam+lamb": {"directions": ("adam", "lamb")},
    "adamax+wd": {"directions": ("adamax", "weight_decay")},
    "sgd+adam+wd": {"directions": ("sgd", "adam", "weight_decay")},
    "sgd+shampoo": {"directions": ("sgd", "shampoo")},
    "global": {"variant": "global"},
    "per_layer_mlp": {"variant": "per_layer_mlp"},
    "no_embedding": {"embedding": False},
    "no_descriptor": {"descriptor": False},
    "ema_raw": {"ema_betas": (0.0,)},
    "ema_none": {"ema_betas": ()},
    "l2_norm": {"norm": "l2"},
    "hypergradient": {"hypergradient_rate": 0.3, "adaptation_min": 0.2, "adaptation_max": 5.0},
    "hypergradient_target": {"hypergradient_rate": 0.3, "adaptation_target": 0.1},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_foreach_matches_reference(case: str) -> None:
    config = L3RSConfig(**CASES[case])
    _assert_close(_fast(config, "foreach"), _reference(config))


@pytest.mark.parametrize(
    "case",
    [
        "default",
        "sgd+adam+wd",
        "global",
        "per_layer_mlp",
        "l2_norm",
        "hypergradient",
        "hypergradient_target",
    ],
)
def test_fused_matches_reference(case: str) -> None:
    if load_fused() is None:
        pytest.skip("no C++ toolchain: fused kernels unavailable")
    config = L3RSConfig(**CASES[case])
    _assert_close(_fast(config, "fused"), _reference(config))


def test_one_hot_adam_is_normalised_adam() -> None:
    """Mixing forced one-hot on adam, rate logit forced to 0: L3RS is normalised Adam at η₀."""
    config = L3RSConfig(base_lr=3e-3)
    model, twin = small_cnn(), small_cnn()
    opt = L3RS(model, config, total_steps=30)
    with torch.no_grad():
        opt.net.weights[-1].zero_()
        opt.net.biases[-1].copy_(torch.tensor([0.0, -1e4, 1e4]))  # rate logit 0, α = (0, 1)
    m = [torch.zeros_like(p) for p in twin.parameters()]
    v = [torch.zeros_like(p) for p in twin.parameters()]
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 3e-3
    for t in range(1, 31):
        opt.step(loss=train_step(model, t))
        train_step(twin, t)
        with torch.no_grad():
            for p, mi, vi in zip(twin.parameters(), m, v):
                mi.mul_(b1).add_(p.grad, alpha=1 - b1)
                vi.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                d = (mi / (1 - b1**t)) / ((vi / (1 - b2**t)).sqrt() + eps)
                rms = d.norm() / d.numel() ** 0.5
                p.sub_(lr * d / (rms + 1e-12))
    assert float(opt.last_mix[:, 1].min()) == 1.0
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        rel = float((p - q).detach().norm() / q.detach().norm())
        assert rel < 2e-6, f"{name}: {rel:.2e}"


def test_untrained_l3rs_is_mostly_adam_at_base_rate(model) -> None:
    opt = L3RS(model, total_steps=10)
    opt.step(loss=train_step(model, 0))
    assert torch.allclose(opt.last_mix[:, 1], torch.full((opt.num_components,), 0.9), atol=0.02)
    assert torch.allclose(opt.last_rate, torch.full_like(opt.last_rate, 1e-3), rtol=0.1)


def test_loss_enters_the_features_raw() -> None:
    """The loss columns of the EMA features hold the loss; after one step the bias-corrected
    EMAs equal it exactly."""
    model = torch.nn.Linear(3, 1)
    opt = L3RS(model, L3RSConfig(), total_steps=5)
    (model(torch.ones(1, 3)).sum() ** 2).backward()
    opt.step(loss=99.0)
    ema = opt.state_dict()["l3rs"]  # the features' EMAs and their step counts, as saved
    betas = torch.tensor(opt.config.ema_betas)
    corrected = ema["ema_value"] / (1 - betas[None, :] ** ema["ema_count"][:, None])[:, None, :]
    loss_columns = corrected[:, 2, :]
    torch.testing.assert_close(loss_columns, torch.full_like(loss_columns, 99.0))


def test_horizon_free_matches_reference() -> None:
    """total_steps unknown: the fast step and the loop reference agree (t/T = 0, T = ∞)."""
    config = L3RSConfig()
    fast_model, ref_model = small_cnn(), small_cnn()
    fast = lively(L3RS(fast_model, config, implementation="foreach", seed=3))
    ref = ReferenceL3RS(
        [{"params": list(ref_model.parameters()), "lr": 1.0, "weight_decay": 0.0}], fast.net, fast.components, None
    )
    for t in range(20):
        fast.step(loss=train_step(fast_model, t))
        ref.step(train_step(ref_model, t).item())
    _assert_close(fast_model, ref_model)


def _quadratic_multiplier(base_lr: float, steps: int = 40) -> float:
    """Rate multiplier after ``steps`` on f(w) = ½·Σ c_i·w_i² (full-batch, no noise)."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(64))
    c = torch.linspace(0.5, 2.0, 64)
    config = L3RSConfig(base_lr=base_lr, hypergradient_rate=0.1, descriptor=False)
    opt = L3RS([("w", w)], config, total_steps=steps, implementation="foreach")
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * (c * w * w).sum()
        loss.backward()
        opt.step(loss=loss)
    return opt.rate_multiplier


def test_hypergradient_grows_a_small_rate_and_shrinks_an_oscillating_one() -> None:
    """Successive gradients agree when the step is far too small (a > 1) and alternate in
    sign when it overshoots (a < 1): the two regimes the adaptation exists to correct."""
    small, large = _quadratic_multiplier(1e-4), _quadratic_multiplier(3.0)
    assert small > 2.0, small
    assert large < 0.7, large


def test_adaptation_grows_a_flat_tensor_and_shrinks_a_sharp_one() -> None:
    """Two tensors, one learned rate: one starts far from its minimum (every step too short,
    successive gradients agree), the other next to it (every step overshoots). Per-tensor
    adaptation raises the first one's multiplier and lowers the second's (one model-wide
    multiplier could not do both: it lost on the dev split, docs/adr/0014)."""
    torch.manual_seed(0)
    flat, sharp = torch.nn.Parameter(10 * torch.randn(64)), torch.nn.Parameter(1e-3 * torch.randn(64))
    config = L3RSConfig(base_lr=0.05, hypergradient_rate=0.2, descriptor=False)
    opt = L3RS([("flat", flat), ("sharp", sharp)], config, total_steps=40, implementation="foreach")
    for _ in range(40):
        opt.zero_grad()
        loss = 0.5 * (flat.square().sum() + sharp.square().sum())
        loss.backward()
        opt.step(loss=loss)
    per_tensor = opt.rate_multipliers
    assert per_tensor[0] > 2.0 and per_tensor[1] < 0.7, per_tensor


def test_rate_multiplier_survives_state_dict_round_trip() -> None:
    model, twin = small_cnn(), small_cnn()
    config = L3RSConfig(hypergradient_rate=0.5)
    opt = L3RS(model, config, total_steps=20, implementation="foreach")
    for t in range(5):
        opt.step(loss=train_step(model, t))
    assert opt.rate_multiplier != 1.0
    twin.load_state_dict(model.state_dict())
    copy_opt = L3RS(twin, opt.net, total_steps=20, implementation="foreach")
    copy_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # as torch.save would
    assert copy_opt.rate_multiplier == opt.rate_multiplier
    for t in range(5, 8):
        opt.step(loss=train_step(model, t))
        copy_opt.step(loss=train_step(twin, t))
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)
