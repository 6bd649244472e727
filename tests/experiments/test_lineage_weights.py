"""The lineage meta-weights in experiments/weights (research, not bundled since 0.3): each is
the rule its card says it is, relative to the others and to the bundled ones."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import small_cnn, train_step

from hf_l3rs import L3RS
from hf_l3rs.optim.hub import load_net

ROOT = Path(__file__).resolve().parents[2]


def lineage(name: str) -> str:
    return str(ROOT / "experiments" / "weights" / name)


def test_lineage_fast_weights_continue_the_cosine_rule() -> None:
    """l3rs-kanji-fast is l3rs-kanji-cosine's network and configuration with θ moved by the
    short-run continuation (docs/metatraining/cpu-kanji-fast): same shape and config, the base
    directions' hyper-parameters meta-trained further, and a θ near but not equal to the start."""
    cosine, fast = load_net(lineage("l3rs-kanji-cosine")), load_net(lineage("l3rs-kanji-fast"))
    assert fast.config == cosine.config
    start, moved = cosine.get_flat(), fast.get_flat()
    assert start.shape == moved.shape and not torch.equal(start, moved)
    assert float((moved - start).norm() / start.norm()) < 0.2  # a continuation, not a new rule


def test_lineage_whitened_weights_are_their_rules_with_shampoo() -> None:
    """l3rs-general-whiten is l3rs-general (as it was until ADR 0016: l3rs-general-24c6703e27)
    with adam swapped for shampoo and nothing retrained (same tensors, Adam's hyper-parameters
    carried over); l3rs-kanji-whiten continues
    l3rs-kanji-fast with the swap: same network shape, θ moved by the continuation."""
    general = load_net(lineage("l3rs-general-24c6703e27"))
    general_whiten = load_net(lineage("l3rs-general-whiten"))
    assert general_whiten.config == general.config.replace(directions=("sgd", "shampoo"))
    swapped = load_net(lineage("l3rs-general-24c6703e27"), directions=["sgd", "shampoo"])
    assert torch.equal(general_whiten.get_flat(), swapped.get_flat())
    fast, kanji_whiten = load_net(lineage("l3rs-kanji-fast")), load_net("l3rs-kanji-whiten")
    assert kanji_whiten.config == fast.config.replace(directions=("sgd", "shampoo"))
    start = load_net(lineage("l3rs-kanji-fast"), directions=["sgd", "shampoo"]).get_flat()
    moved = kanji_whiten.get_flat()
    assert start.shape == moved.shape and not torch.equal(start, moved)
    assert float((moved - start).norm() / start.norm()) < 0.2  # a continuation, not a new rule


def test_lineage_adaptive_weights_are_the_cosine_rule_with_a_brake() -> None:
    """l3rs-kanji-adaptive ships the same meta-weights as l3rs-kanji-cosine; only the rate
    adaptation differs (a brake: the multiplier never exceeds 1), as its card says. With no
    learning rate on an unseen model whose steps overshoot, the multiplier drops below 1."""
    cosine, adaptive = load_net(lineage("l3rs-kanji-cosine")), load_net(lineage("l3rs-kanji-adaptive"))
    assert torch.equal(cosine.get_flat(), adaptive.get_flat())
    assert not cosine.config.adapts
    assert adaptive.config.adapts
    assert adaptive.config.adaptation_max == 1.0
    assert adaptive.config.replace(hypergradient_rate=0.0, adaptation_min=1 / 30, adaptation_max=30.0) == cosine.config
    model = small_cnn()
    opt = L3RS.from_pretrained(lineage("l3rs-kanji-adaptive"), model, total_steps=30, lr=300.0)  # far too large
    for t in range(30):
        opt.step(loss=train_step(model, t))
        assert opt.rate_multiplier <= 1.0
    assert opt.rate_multiplier < 0.9


def test_lineage_pertensor_weights_are_the_cosine_rule_with_per_tensor_adaptation() -> None:
    """l3rs-kanji-pertensor ships l3rs-kanji-cosine's θ with per-tensor adaptation (β 0.4,
    target 0.1, multipliers in [1/30, 30]). With no learning rate on a small CNN the tensors'
    multipliers part ways (one grows above 1, others fall below); with the rate 30× too large
    the one that grew is cut back below 1."""
    cosine, pertensor = load_net(lineage("l3rs-kanji-cosine")), load_net(lineage("l3rs-kanji-pertensor"))
    assert torch.equal(cosine.get_flat(), pertensor.get_flat())
    expected = cosine.config.replace(
        hypergradient_rate=0.4,
        adaptation_min=1 / 30,
        adaptation_max=30.0,
        adaptation_target=0.1,
    )
    assert pertensor.config == expected

    def multipliers(lr: float) -> torch.Tensor:
        model = small_cnn()
        opt = L3RS.from_pretrained(lineage("l3rs-kanji-pertensor"), model, total_steps=30, lr=lr)
        for t in range(30):
            opt.step(loss=train_step(model, t))
        return opt.rate_multipliers

    default, too_large = multipliers(1.0), multipliers(30.0)
    assert float(default.min()) < 1.0 < float(default.max()), default
    grown = int(default.argmax())
    assert too_large[grown] < 1.0 < default[grown], (default, too_large)


def test_lineage_general_defaults_are_the_bundled_theta_with_its_earlier_constants() -> None:
    """l3rs-general-fd7ca5ea42, -0a7f315a71 and -7a71a9e4ea, the defaults before and between ADR
    0018's grids, are the bundled θ with the rate adaptation's target at 0 and its clamps at
    [1/30, 30], [1/30, 10] and [1/10, 10] (now −0.05 and [1/10, 10]): one network, constants apart."""
    general = load_net("l3rs-general")
    assert general.config.adaptation_target == -0.05
    assert (general.config.adaptation_min, general.config.adaptation_max) == (0.1, 10.0)
    earlier = {
        "l3rs-general-fd7ca5ea42": (1 / 30, 30.0),
        "l3rs-general-0a7f315a71": (1 / 30, 10.0),
        "l3rs-general-7a71a9e4ea": (0.1, 10.0),
    }
    for name, (low, high) in earlier.items():
        previous = load_net(lineage(name))
        assert torch.equal(previous.get_flat(), general.get_flat())
        assert previous.config == general.config.replace(adaptation_target=0.0, adaptation_min=low, adaptation_max=high)
