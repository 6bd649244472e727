"""A head on a frozen body calibrates its step on the loss (docs/design.md §1 "A head on a
frozen body"): it grows while the training loss has not come down, then stays; a model
trained whole, and every tensor but the head, are never changed."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import small_cnn
from torch import nn

from hf_l3rs import L3RS, L3RSConfig
from hf_l3rs.optim.config import ConfigError

CALIBRATING = L3RSConfig(head_calibration_growth=2.0, head_calibration_drop=0.1, head_calibration_max=8.0)


def frozen_body(model: nn.Module) -> nn.Module:
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("conv2.") or name.startswith("head."))
    return model


def run(model: nn.Module, config: L3RSConfig, losses: list[float]) -> L3RS:
    opt = L3RS(model, config, total_steps=len(losses), seed=0)
    g = torch.Generator().manual_seed(1)
    for value in losses:
        x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step(loss=value)  # scripted losses: a plateau, then a fall
    return opt


def test_the_head_grows_while_the_loss_stalls_then_keeps_its_multiplier() -> None:
    model = frozen_body(small_cnn())
    stalled = run(copy.deepcopy(model), CALIBRATING, [1.0] * 3)
    assert stalled.head_multiplier == 4.0  # steps 2 and 3 without progress: 2 × 2
    assert stalled.calibrates_head
    from hf_l3rs.trainer_plugins.transformers_trainer import learned_rate_stats

    assert learned_rate_stats(stalled)["l3rs/head_multiplier"] == 4.0
    capped = run(copy.deepcopy(model), CALIBRATING, [1.0] * 6)
    assert capped.head_multiplier == 8.0
    falls = run(copy.deepcopy(model), CALIBRATING, [1.0, 1.0, 1.0] + [0.1] * 5)
    kept = falls.head_multiplier
    assert 4.0 <= kept < 8.0 and falls._head_calibrated
    # Step 2 is the first with a multiplier (×2), on weights both runs still share: only the
    # head's rates differ, by exactly that.
    two, plain = run(copy.deepcopy(model), CALIBRATING, [1.0, 1.0]), run(copy.deepcopy(model), L3RSConfig(), [1.0, 1.0])
    assert [c.name for c in two.components] == ["conv2.weight", "conv2.bias", "head.weight", "head.bias"]
    ratio = (two.last_rate / plain.last_rate).tolist()
    assert ratio == pytest.approx([1.0, 1.0, 2.0, 2.0], rel=1e-6)


def test_an_overshooting_head_backs_off_and_stops_growing() -> None:
    model = frozen_body(small_cnn())
    braking = CALIBRATING.replace(head_calibration_max=64.0, head_calibration_rise=0.25, head_calibration_backoff=2)
    # Steps 2-4 stall (×2 each: ×8); at step 5 the loss is 2× the first, beyond 1.25×: ×8 / 2² and kept.
    scripted = [1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0]
    braked = run(copy.deepcopy(model), braking, scripted)
    assert braked.head_multiplier == 2.0 and braked._head_calibrated
    # Noise below the margin does not brake, and without a brake the same losses keep it growing.
    below = run(copy.deepcopy(model), braking, [1.0, 1.0, 1.0, 1.0, 1.2, 1.0])
    assert below.head_multiplier == 32.0 and not below._head_calibrated
    unbraked = run(copy.deepcopy(model), CALIBRATING.replace(head_calibration_max=64.0), scripted)
    assert unbraked.head_multiplier == 64.0


def test_an_accelerating_growth_multiplies_its_factor_and_backs_off_the_last_ones() -> None:
    model = frozen_body(small_cnn())
    accelerating = CALIBRATING.replace(
        head_calibration_max=1000.0, head_calibration_acceleration=2.0, head_calibration_rise=0.25
    )
    # Growth factors 2, 4, 8 at steps 2-4: ×64; the overshoot at step 5 undoes the last two (4 · 8).
    grown = run(copy.deepcopy(model), accelerating, [1.0] * 4)
    assert grown.head_multiplier == 64.0
    braked = run(copy.deepcopy(model), accelerating, [1.0, 1.0, 1.0, 1.0, 2.0, 1.0])
    assert braked.head_multiplier == 2.0 and braked._head_calibrated
    # At the cap nothing grows: the brake undoes the last two growth steps that did (16 <- 8 <- 2).
    capped = run(copy.deepcopy(model), accelerating.replace(head_calibration_max=16.0), [1.0] * 6 + [2.0])
    assert capped.head_multiplier == 2.0
    # The growth count is state: a resumed run continues with the next factor (16), up to the cap.
    again = L3RS(model, grown.net, total_steps=6)
    again.load_state_dict(grown.state_dict())
    nn.functional.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.randint(0, 3, (8,))).backward()
    again.step(loss=1.0)
    assert again.head_multiplier == 1000.0


def test_a_model_trained_whole_is_unchanged() -> None:
    model = small_cnn()
    calibrating = run(copy.deepcopy(model), CALIBRATING, [1.0] * 5)
    plain = run(copy.deepcopy(model), L3RSConfig(), [1.0] * 5)
    assert calibrating.head_multiplier == 1.0 and not calibrating.calibrates_head
    assert torch.equal(calibrating.last_rate, plain.last_rate)


def test_the_multiplier_survives_a_state_dict_round_trip() -> None:
    model = frozen_body(small_cnn())
    opt = run(model, CALIBRATING, [1.0] * 3)
    again = L3RS(model, opt.net, total_steps=3)
    again.load_state_dict(opt.state_dict())
    assert again.head_multiplier == 4.0 and not again._head_calibrated


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("head_calibration_growth", 0.5),
        ("head_calibration_max", 0.5),
        ("head_calibration_drop", 1.0),
        ("head_calibration_rise", -0.1),
        ("head_calibration_backoff", -1),
        ("head_calibration_acceleration", 0.9),
    ],
)
def test_bad_head_calibration_config_is_a_clear_error(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field.split("_")[-1]):
        L3RSConfig(**{field: value})


def test_with_lora_the_classifier_calibrates_and_the_adapters_do_not() -> None:
    """A LoRA layer's frozen base makes the body frozen; the head is the deepest trained linear
    tensor that is not a LoRA matrix (the classifier), and only it and its bias grow."""
    from test_adapters import adapted_model

    opt = L3RS(adapted_model(), CALIBRATING, total_steps=3)
    assert opt.calibrates_head
    names = [c.name for c in opt.components]
    assert names == ["0.lora_A.default.weight", "0.lora_B.default.weight", "2.weight", "2.bias"]
    assert opt._calibrated_head.tolist() == [0.0, 0.0, 1.0, 1.0]
