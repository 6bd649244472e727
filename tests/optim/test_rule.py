"""The update rule's pure functions and the rate controllers, checked by hand (docs/design.md §1
"Update", "Controllers")."""

from __future__ import annotations

import math

import pytest
import torch

from hf_l3rs.optim.config import L3RSConfig
from hf_l3rs.optim.controllers import RateAdaptation, StepView, controllers_for
from hf_l3rs.optim.rule import NORM_EPS, coefficients, direction_log_norms, norm_statistics

f64 = torch.float64


def test_coefficients_by_hand() -> None:
    rate = torch.tensor([0.1, 0.2], dtype=f64)
    mix = torch.tensor([[0.25, 0.75], [1.0, 0.0]], dtype=f64)
    dnorm = torch.tensor([[2.0, 4.0], [1.0, 0.5]], dtype=f64)
    lr = torch.tensor([1.0, 3.0], dtype=f64)
    wd = torch.tensor([0.5, 0.0], dtype=f64)
    finite = torch.tensor([True, True])
    coef, decay = coefficients(rate, mix, dnorm, lr, wd, finite)
    expected = torch.tensor(
        [[0.1 * 0.25 / (2 + NORM_EPS), 0.1 * 0.75 / (4 + NORM_EPS)], [0.6 * 1.0 / (1 + NORM_EPS), 0.0]], dtype=f64
    )
    torch.testing.assert_close(coef, expected)
    torch.testing.assert_close(decay, torch.tensor([0.1 * 0.5, 0.0], dtype=f64))


def test_coefficients_rms_divides_the_norm_by_the_root_of_the_size() -> None:
    ones = torch.ones(1, 1, dtype=f64)
    coef, _ = coefficients(
        torch.ones(1, dtype=f64), ones, torch.full((1, 1), 6.0, dtype=f64), torch.ones(1, dtype=f64),
        torch.zeros(1, dtype=f64), torch.tensor([True]), numel=torch.tensor([9.0], dtype=f64),
    )  # fmt: skip
    torch.testing.assert_close(coef, torch.full((1, 1), 1 / (2.0 + NORM_EPS), dtype=f64))  # RMS = 6 / √9


def test_coefficients_are_zero_where_not_finite() -> None:
    coef, decay = coefficients(
        torch.tensor([1.0, 1.0], dtype=f64), torch.ones(2, 1, dtype=f64), torch.ones(2, 1, dtype=f64),
        torch.ones(2, dtype=f64), torch.ones(2, dtype=f64), torch.tensor([True, False]),
    )  # fmt: skip
    assert coef[1].abs().sum() == 0 and decay[1] == 0 and coef[0, 0] > 0 and decay[0] > 0


def test_norm_statistics_by_hand() -> None:
    pnorm = torch.tensor([1.0, math.e, 5.0], dtype=f64)
    gnorm = torch.tensor([math.e**2, math.nan], dtype=f64)
    active = torch.tensor([0, 1])
    stats = norm_statistics(pnorm, gnorm, 0.7, active, 3, eps=0.0)
    torch.testing.assert_close(stats[0], torch.tensor([0.0, 2.0, 0.7], dtype=f64))
    assert stats[1, 0] == pytest.approx(1.0) and stats[1, 1] == -math.inf  # a NaN gradient norm reads as 0
    assert stats[2, 0] == 0 and stats[2, 1] == 0 and stats[2, 2] == pytest.approx(0.7)  # inactive: loss only
    assert (norm_statistics(pnorm, gnorm, None, active, 3, eps=1.0)[:, 2] == 0).all()  # no finite loss


def test_direction_log_norms_read_non_finite_as_zero() -> None:
    out = direction_log_norms(torch.tensor([[math.e, math.inf, math.nan]], dtype=f64), eps=0.0)
    assert out[0, 0] == pytest.approx(1.0) and out[0, 1] == -math.inf and out[0, 2] == -math.inf


def _view(grads: list[torch.Tensor], moms: list[torch.Tensor], finite: list[bool]) -> StepView:
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g
    state = {p: {"adam.exp_avg": m} for p, m in zip(params, moms)}
    gnorm = torch.stack([g.norm() for g in grads]).to(f64)
    return StepView(params, state, list(range(len(params))), torch.tensor(finite), gnorm, None)


def test_rate_adaptation_per_tensor_and_its_bounds() -> None:
    config = L3RSConfig(
        hypergradient_rate=10.0, adaptation_min=0.5, adaptation_max=2.0,
    )  # fmt: skip
    adapt = RateAdaptation(config, 3)
    g = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0])]
    m = [torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 0.0]), torch.zeros(2)]  # agree, oppose, no momentum yet
    adapt.observe_probe(_view(g, m, [True, True, True]))
    torch.testing.assert_close(adapt.log_multiplier, torch.tensor([math.log(2.0), math.log(0.5), 0.0], dtype=f64))
    adapt.observe_probe(_view(g, m, [False, False, False]))  # nothing finite: nothing moves
    torch.testing.assert_close(adapt.log_multiplier, torch.tensor([math.log(2.0), math.log(0.5), 0.0], dtype=f64))


def test_rate_adaptation_state_round_trip_and_old_scalar_states() -> None:
    config = L3RSConfig(hypergradient_rate=0.05)
    adapt = RateAdaptation(config, 3)
    adapt.log_multiplier = torch.tensor([0.1, -0.2, 0.3], dtype=f64)
    other = RateAdaptation(config, 3)
    other.load(adapt.state(), [torch.zeros(1)] * 3)
    torch.testing.assert_close(other.log_multiplier, adapt.log_multiplier)
    other.load(0.25, [torch.zeros(1)] * 3)  # saved before per-tensor adaptation: one float
    torch.testing.assert_close(other.log_multiplier, torch.full((3,), 0.25, dtype=f64))


def test_controllers_for_switch_on_what_the_config_says() -> None:
    assert controllers_for(L3RSConfig(), 3) == []  # rate 0: the paper's L3RS, no controller
    assert [type(c) for c in controllers_for(L3RSConfig(hypergradient_rate=0.1), 3)] == [RateAdaptation]


def test_norm_statistics_read_an_infinite_gradient_norm_as_zero() -> None:
    inf = torch.tensor([math.inf], dtype=f64)
    stats = norm_statistics(torch.ones(1, dtype=f64), inf, 1.0, torch.tensor([0]), 1, 1e-8)
    assert stats[0, 1] == pytest.approx(math.log(1e-8))


def test_a_zero_direction_norm_keeps_a_finite_positive_coefficient() -> None:
    coef, _ = coefficients(
        torch.ones(1, dtype=f64), torch.ones(1, 1, dtype=f64), torch.zeros(1, 1, dtype=f64), torch.ones(1, dtype=f64),
        torch.zeros(1, dtype=f64), torch.tensor([True]),
    )  # fmt: skip
    assert coef[0, 0] == pytest.approx(1 / NORM_EPS)


def test_rate_adaptation_per_tensor_skips_tensors_without_gradient_or_momentum() -> None:
    config = L3RSConfig(hypergradient_rate=0.5, adaptation_target=0.1)
    adapt = RateAdaptation(config, 4)
    g = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), torch.zeros(2)]
    m = [torch.tensor([1.0, 1.0]), torch.tensor([-1.0, 0.0]), torch.zeros(2), torch.tensor([1.0, 0.0])]
    adapt.observe_probe(_view(g, m, [True] * 4))
    expected = [0.5 * (1 / math.sqrt(2) - 0.1), 0.5 * (-1.0 - 0.1), 0.0, 0.0]
    torch.testing.assert_close(adapt.log_multiplier, torch.tensor(expected, dtype=f64))


def test_rate_adaptation_stays_in_its_bounds_and_waits_for_gradients() -> None:
    config = L3RSConfig(hypergradient_rate=5.0, adaptation_min=0.5, adaptation_max=2.0)
    adapt = RateAdaptation(config, 2)
    m = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]
    adapt.observe_probe(_view([torch.zeros(2), torch.zeros(2)], m, [True, True]))  # no gradient: nothing to compare
    assert (adapt.log_multiplier == 0).all()
    adapt.observe_probe(_view([torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])], m, [True, True]))
    torch.testing.assert_close(adapt.log_multiplier, torch.full((2,), math.log(2.0), dtype=f64))
    adapt.observe_probe(_view([torch.tensor([-1.0, 0.0]), torch.tensor([0.0, -1.0])], m, [True, True]))
    adapt.observe_probe(_view([torch.tensor([-1.0, 0.0]), torch.tensor([0.0, -1.0])], m, [True, True]))
    torch.testing.assert_close(adapt.log_multiplier, torch.full((2,), math.log(0.5), dtype=f64))
