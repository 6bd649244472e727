"""The backbone's gradient share (docs/design.md §1): the convolutions' gradient norm over the
head's in the first steps sets a multiplier on the backbone's rates, computed by hand here."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import small_cnn, train_step
from torch import nn

from hf_l3rs import L3RS, L3RSConfig
from hf_l3rs.optim.config import ConfigError

CONV = ("conv1.weight", "conv2.weight")
#: SmallCNN's tensors the multiplier scales (conv, norm, bias roles shallower than the head)
SCALED = ("conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "conv2.bias")


def _shares(model: nn.Module, steps: int) -> list[float]:
    """‖g‖ of the convolutions over the head weight's, step by step, without any optimizer
    (the gradient of step t depends on the weights; this model does not move)."""
    out = []
    for t in range(1, steps + 1):
        train_step(model, t)
        conv = math.sqrt(sum(float(model.get_parameter(n).grad.norm()) ** 2 for n in CONV))
        out.append(conv / float(model.head.weight.grad.norm()))
    return out


def test_factor_is_the_geometric_mean_share_of_steps_2_to_k_over_the_reference() -> None:
    """With lr 0 the weights stay put, so the shares are those of the untouched model; the
    factor is fixed at step k from steps 2…k, and is 1 before."""
    shares = _shares(small_cnn(), 5)
    expected = math.exp(sum(math.log(s) for s in shares[1:]) / 4) / 0.05
    assert 1 < expected < 100
    model = small_cnn()
    opt = L3RS(model, L3RSConfig(gradient_share_reference=0.05, gradient_share_max=100.0), lr=0.0, total_steps=20)
    for t in range(1, 5):
        opt.step(loss=train_step(model, t))
        assert opt.gradient_share_factor == 1.0
    opt.step(loss=train_step(model, 5))
    assert opt.gradient_share_factor == pytest.approx(expected, rel=1e-6)  # float32 norms
    # the cap and the floor of 1, on the same shares
    for reference, cap, want in ((0.05, 1.5, 1.5), (1e6, 8.0, 1.0)):
        m = small_cnn()
        o = L3RS(m, L3RSConfig(gradient_share_reference=reference, gradient_share_max=cap), lr=0.0, total_steps=20)
        for t in range(1, 6):
            o.step(loss=train_step(m, t))
        assert o.gradient_share_factor == want


def test_only_the_backbones_conv_norm_and_bias_rates_are_multiplied() -> None:
    """Two runs identical through step 4 (the factor is 1 there); at step 5 the rates of the
    scaled tensors are the plain run's × the factor, the head's are equal."""
    on, off = small_cnn(), small_cnn()
    config = L3RSConfig(gradient_share_reference=0.05, gradient_share_max=100.0, init_output_scale=1.0)
    opt_on = L3RS(on, config, total_steps=20, seed=1)
    opt_off = L3RS(off, config.replace(gradient_share_reference=0.0), total_steps=20, seed=1)
    for t in range(1, 6):
        opt_on.step(loss=train_step(on, t))
        opt_off.step(loss=train_step(off, t))
    factor = opt_on.gradient_share_factor
    assert factor > 1
    for j, c in enumerate(opt_on.components):
        want = opt_off.last_rate[j] * (factor if c.name in SCALED else 1.0)
        assert float(opt_on.last_rate[j]) == pytest.approx(float(want), rel=1e-5), c.name


BOOST = {"gradient_share_boost": {"norm": 2.0, "bias": 3.0}, "gradient_share_boost_steps": 8}


@pytest.mark.parametrize(("start", "boosted"), [(2.0, True), (1e3, False)])
def test_from_scratch_boost_raises_the_roles_rates_until_its_last_step(start: float, boosted: bool) -> None:
    """With the factor m above the boost's start, norm and bias take m · (m / start) ** (power − 1)
    through step 8 and m after it; conv and the head are untouched. Below the start nothing
    changes, bitwise."""
    config = L3RSConfig(gradient_share_reference=0.05, gradient_share_max=100.0, init_output_scale=1.0)
    boost = config.replace(gradient_share_boost_from=start, **BOOST)
    a, b = small_cnn(), small_cnn()
    opt_a, opt_b = L3RS(a, config, total_steps=20, seed=1), L3RS(b, boost, total_steps=20, seed=1)
    for t in range(1, 11):
        opt_a.step(loss=train_step(a, t))
        opt_b.step(loss=train_step(b, t))
        m = opt_a.gradient_share_factor
        if t < 5:
            assert torch.equal(opt_a.last_rate, opt_b.last_rate)
            continue
        assert (m > start) is boosted  # decided at step 5 on identical gradients: the same m in both
        on = boosted and t <= 8
        assert opt_b.gradient_share_boost == (pytest.approx(m / start) if on else 1.0)
        if not boosted:
            assert torch.equal(opt_a.last_rate, opt_b.last_rate)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q) is (not boosted)


def test_boost_multiplies_only_the_named_roles() -> None:
    """At the step the factor is decided the two runs' features are still identical, so the
    boosted run's rates are the plain run's × (m / start) ** (power − 1) for norm and bias only."""
    config = L3RSConfig(gradient_share_reference=0.05, gradient_share_max=100.0, init_output_scale=1.0)
    boost = config.replace(gradient_share_boost_from=2.0, **BOOST)
    a, b = small_cnn(), small_cnn()
    opt_a, opt_b = L3RS(a, config, total_steps=20, seed=1), L3RS(b, boost, total_steps=20, seed=1)
    for t in range(1, 6):
        opt_a.step(loss=train_step(a, t))
        opt_b.step(loss=train_step(b, t))
    ratio = opt_a.gradient_share_factor / 2.0
    assert ratio > 1
    power = {"norm": 2.0, "bias": 3.0}
    for j, c in enumerate(opt_a.components):
        extra = ratio ** (power.get(c.role, 1.0) - 1) if c.name in SCALED else 1.0
        want = float(opt_a.last_rate[j]) * extra
        assert float(opt_b.last_rate[j]) == pytest.approx(want, rel=1e-5), c.name


SHORT = {"gradient_share_boost_horizon": 50.0, "gradient_share_boost_horizon_power": 1.5}


@pytest.mark.parametrize("total", [20, 50, None])
def test_short_runs_from_scratch_boost_the_roles_by_the_horizon_ratio(total: int | None) -> None:
    """A run of T < 50 steps from scratch: norm and bias take a further (50 / T) ** 1.5 for the whole
    run (after the boost's window too); conv and the head are untouched. At T = 50 or with no
    horizon nothing changes, bitwise."""
    config = L3RSConfig(gradient_share_reference=0.05, gradient_share_max=100.0, init_output_scale=1.0)
    boost = config.replace(gradient_share_boost_from=2.0, **BOOST)
    a, b = small_cnn(), small_cnn()
    opt_a, opt_b = L3RS(a, boost, total_steps=total, seed=1), L3RS(b, boost.replace(**SHORT), total_steps=total, seed=1)
    short = (50 / total) ** 1.5 if total is not None and total < 50 else 1.0
    for t in range(1, 11):
        opt_a.step(loss=train_step(a, t))
        opt_b.step(loss=train_step(b, t))
        if t < 5:  # undecided: m = 1
            assert torch.equal(opt_a.last_rate, opt_b.last_rate)
        if t in (5, 9):  # the features still agree at the deciding step; step 9 is past the window (8)
            assert opt_b.short_horizon_boost == pytest.approx(short)
            if t == 5:
                for j, c in enumerate(opt_a.components):
                    extra = short if c.name in SCALED and c.role in ("norm", "bias") else 1.0
                    assert float(opt_b.last_rate[j]) == pytest.approx(float(opt_a.last_rate[j]) * extra, rel=1e-5)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q) is (short == 1.0)


def test_short_horizon_boost_needs_the_boost_itself() -> None:
    """Below the boost's start (a pretrained checkpoint) a short horizon changes nothing, bitwise."""
    config = L3RSConfig(gradient_share_reference=0.05, gradient_share_max=100.0, init_output_scale=1.0)
    boost = config.replace(gradient_share_boost_from=1e3, **BOOST)
    a, b = small_cnn(), small_cnn()
    opt_a, opt_b = L3RS(a, boost, total_steps=10, seed=1), L3RS(b, boost.replace(**SHORT), total_steps=10, seed=1)
    for t in range(1, 11):
        opt_a.step(loss=train_step(a, t))
        opt_b.step(loss=train_step(b, t))
        assert opt_b.short_horizon_boost == 1.0
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


HEAD = "head.weight"


@pytest.mark.parametrize(("maximum", "slowed"), [(1.8, True), (100.0, False)])
def test_head_of_a_checkpoint_that_must_move_steps_m_to_the_minus_power(maximum: float, slowed: bool) -> None:
    """1 < m <= 2 (the boost's start): the head's weight takes m ** -2 of its rate from the deciding
    step on, nothing else changes. Random init's m (above the start) leaves the head alone, bitwise."""
    config = L3RSConfig(gradient_share_reference=0.05, gradient_share_max=maximum, init_output_scale=1.0)
    a, b = small_cnn(), small_cnn()
    plain = L3RS(a, config, total_steps=20, seed=1)
    head = L3RS(b, config.replace(gradient_share_head_power=2.0), total_steps=20, seed=1)
    for t in range(1, 6):
        plain.step(loss=train_step(a, t))
        head.step(loss=train_step(b, t))
        if t < 5:
            assert torch.equal(plain.last_rate, head.last_rate)
    m = plain.gradient_share_factor
    assert (1 < m <= 2) is slowed
    assert head.share_head_factor == (pytest.approx(m**-2) if slowed else 1.0)
    from trainer_plugins.transformers_trainer import learned_rate_stats

    assert learned_rate_stats(head)["l3rs/share_head_factor"] == head.share_head_factor
    assert "l3rs/share_head_factor" not in learned_rate_stats(plain)
    for j, c in enumerate(plain.components):
        extra = m**-2 if slowed and c.name == HEAD else 1.0
        assert float(head.last_rate[j]) == pytest.approx(float(plain.last_rate[j]) * extra, rel=1e-5), c.name
    for (name, p), q in zip(a.named_parameters(), b.parameters()):  # one step apart: only the head moved otherwise
        assert torch.equal(p, q) is not (slowed and name == HEAD), name


def test_a_model_without_convolutions_is_unchanged() -> None:
    """Language models have no convolution: with the share on, every weight is bitwise the
    same as with it off."""

    def mlp() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 3))

    runs = []
    for reference in (0.0, 0.05):
        model = mlp()
        opt = L3RS(model, L3RSConfig(gradient_share_reference=reference), total_steps=10)
        for t in range(10):
            opt.step(loss=train_step(model, t))
        assert opt.gradient_share_factor == 1.0
        runs.append(model)
    for p, q in zip(runs[0].parameters(), runs[1].parameters()):
        assert torch.equal(p, q)


def test_a_transformer_with_a_convolutional_stem_is_unchanged() -> None:
    """A ViT-like model (a small patch convolution, large linear layers, a head) is not a
    convolutional backbone: the share is not read and nothing is scaled."""

    class PatchNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.stem = nn.Conv2d(1, 4, 4, stride=4)  # 68 weights
            self.body = nn.Linear(16, 16)  # 272 weights
            self.head = nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.body(self.stem(x).flatten(1))))

    model = PatchNet()
    opt = L3RS(model, L3RSConfig(gradient_share_reference=1e-6), total_steps=10)
    assert opt._share_conv == [] and float(opt._share_targets.sum()) == 0
    for t in range(8):
        opt.step(loss=train_step(model, t))
    assert opt.gradient_share_factor == 1.0


def test_factor_survives_a_state_dict_round_trip_and_old_states_load_undecided() -> None:
    model = small_cnn()
    config = L3RSConfig(gradient_share_reference=0.05, gradient_share_max=100.0)
    opt = L3RS(model, config, total_steps=20)
    for t in range(1, 6):
        opt.step(loss=train_step(model, t))
    state = copy.deepcopy(opt.state_dict())
    twin = small_cnn()
    twin.load_state_dict(model.state_dict())
    copy_opt = L3RS(twin, opt.net, total_steps=20)
    copy_opt.load_state_dict(copy.deepcopy(state))
    assert copy_opt.gradient_share_factor == opt.gradient_share_factor > 1
    for t in range(6, 9):
        opt.step(loss=train_step(model, t))
        copy_opt.step(loss=train_step(twin, t))
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)
    for key in ("share_log", "share_factor"):  # a state saved before the share existed
        del state["l3rs"][key]
    copy_opt.load_state_dict(state)
    assert copy_opt.gradient_share_factor == 1.0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gradient_share_reference", -0.1, ">= 0"),
        ("gradient_share_max", 0.5, ">= 1"),
        ("gradient_share_steps", 1, ">= 2"),
        ("gradient_share_roles", ("conv", "head"), "unknown role 'head'"),
        ("gradient_share_boost", {"linear": 2.0}, "'linear' is not one of gradient_share_roles"),
        ("gradient_share_boost", {"norm": 0.5}, r"gradient_share_boost\['norm'\] must be a number >= 1"),
        ("gradient_share_boost_from", 0.5, "gradient_share_boost_from >= 1"),
        ("gradient_share_boost_steps", -1, "gradient_share_boost_steps >= 0"),
        ("gradient_share_boost_horizon", -10.0, "gradient_share_boost_horizon >= 0"),
        ("gradient_share_head_power", -1.0, "gradient_share_head_power must be >= 0"),
        ("gradient_share_boost_horizon_power", 0.0, "gradient_share_boost_horizon_power > 0"),
    ],
)
def test_bad_gradient_share_config_is_a_clear_error(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        L3RSConfig(**{field: value})


def test_trainer_logs_the_gradient_share_factor() -> None:
    """``l3rs/gradient_share_factor``: 1 until step k, then the factor; absent when off."""
    from trainer_plugins.transformers_trainer import learned_rate_stats

    model = small_cnn()
    config = L3RSConfig(
        gradient_share_reference=0.05,
        gradient_share_steps=3,
        gradient_share_boost={"norm": 2.0},
        gradient_share_boost_from=1.0,
        gradient_share_boost_steps=3,
        gradient_share_boost_horizon=40.0,
    )
    opt = L3RS(model, config, total_steps=20)
    logged, boosts, shorts = [], [], []
    for t in range(1, 5):
        opt.step(loss=train_step(model, t))
        logged.append(learned_rate_stats(opt)["l3rs/gradient_share_factor"])
        boosts.append(learned_rate_stats(opt)["l3rs/gradient_share_boost"])
        shorts.append(learned_rate_stats(opt)["l3rs/short_horizon_boost"])
    assert logged[:2] == [1.0, 1.0] and logged[2] == logged[3] == opt.gradient_share_factor > 1
    assert boosts == [1.0, 1.0, opt.gradient_share_factor, 1.0]  # m / from = m, through step 3
    assert shorts == [1.0, 1.0, 2.0, 2.0]  # (40 / 20) ** 1 once m is decided, for the whole run
    plain = small_cnn()
    off = L3RS(plain, L3RSConfig(), total_steps=20)
    off.step(loss=train_step(plain, 0))
    assert "l3rs/rate_mean" in learned_rate_stats(off)
    assert "l3rs/gradient_share_factor" not in learned_rate_stats(off)
    assert "l3rs/gradient_share_boost" not in learned_rate_stats(off)
    assert "l3rs/short_horizon_boost" not in learned_rate_stats(off)
