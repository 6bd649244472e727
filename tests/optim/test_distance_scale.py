"""The distance scale (docs/adr/0003): Prodigy's estimate of the distance to the solution as
L3RS's step size, one for the model or one per tensor."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import resume_matches_straight_run

from hf_l3rs import L3RS, L3RSConfig
from hf_l3rs.optim.distance import D0, DistanceState, observe


def _quadratic(distance: float, scale: str, steps: int = 100) -> tuple[L3RS, list[float], torch.Tensor]:
    torch.manual_seed(0)
    target = torch.randn(200) * distance
    x = torch.nn.Parameter(torch.zeros(200))
    opt = L3RS([x], L3RSConfig(step_scale=scale))
    losses = []
    for _ in range(steps):
        loss = 0.5 * ((x - target) ** 2).sum()
        x.grad = None
        loss.backward()
        opt.step(loss=loss)
        losses.append(float(loss.detach()))
    return opt, losses, target


@pytest.mark.parametrize("scale", ["distance", "distance_per_tensor"])
@pytest.mark.parametrize("distance", [0.01, 1.0, 100.0])
def test_the_scale_finds_the_distance_without_a_learning_rate(scale, distance) -> None:
    """Four decades of distance to the solution, one untrained network, no learning rate: d
    grows from 1e-6 to the solution's per-coordinate scale and the loss falls ten-fold or more."""
    opt, losses, target = _quadratic(distance, scale)
    d, far = float(opt.distance_scale.max()), float(target.abs().max())
    assert 0.03 * far < d < 3 * far  # an estimate of the distance, not a runaway
    assert min(losses) < 0.1 * losses[0]


def test_fixed_base_lr_cannot_do_the_same() -> None:
    """The contrast that makes the scale worth having: the paper's fixed base_lr (1e-3) barely
    moves a solution 100 away in the same steps."""
    _, losses, _ = _quadratic(100.0, "base_lr")
    assert min(losses) > 0.5 * losses[0]


def test_d_never_shrinks_and_x0_is_the_first_weights() -> None:
    torch.manual_seed(0)
    p = torch.randn(10)
    state = DistanceState.fresh(1)
    history = []
    x = p.clone()
    for k in range(20):
        g = torch.randn(10) if k % 3 else -torch.ones(10)  # noise, then steady pulls
        observe(state, [0], [x], [g], state.d[[0]] ** 2, 0.99, "component")
        x = x - 0.1 * g
        history.append(float(state.d[0]))
    assert torch.equal(state.x0[0], p)
    assert all(b >= a for a, b in itertools.pairwise(history))
    assert history[-1] > D0


@pytest.mark.parametrize("scale", ["distance", "distance_per_tensor"])
def test_resume_from_state_dict_is_bitwise(tmp_path, scale) -> None:
    config = L3RSConfig(init_output_scale=1.0, step_scale=scale)
    opt, resumed = resume_matches_straight_run(tmp_path, config, "foreach", steps=30)
    assert torch.equal(opt.distance_scale, resumed.distance_scale)


def test_a_state_for_another_model_is_refused(tmp_path) -> None:
    config = L3RSConfig(step_scale="distance")
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 5)
    opt = L3RS(a.parameters(), config)
    a(torch.randn(2, 4)).sum().backward()
    opt.step(loss=1.0)
    state = opt.state_dict()
    other = L3RS(b.parameters(), config)
    with pytest.raises(ValueError, match="another model"):
        other.load_state_dict(state)


def test_unknown_scale_is_a_config_error() -> None:
    from hf_l3rs.optim.config import ConfigError

    with pytest.raises(ConfigError, match="step_scale"):
        L3RSConfig(step_scale="prodigy")


def _by_hand(xs, gs, ws, beta3, scope):
    """The estimate written out per tensor in float64: r, s, d after the given steps."""
    n = len(xs[0])
    x0 = [x.double() for x in xs[0]]
    r, s, d = [0.0] * n, [torch.zeros_like(x) for x in x0], [D0] * n
    for x, g, w in zip(xs, gs, ws):
        for j in range(n):
            r[j] = beta3 * r[j] + w[j] * float((g[j].double() * (x0[j] - x[j].double())).sum())
            s[j] = beta3 * s[j] + w[j] * g[j].double()
        l1 = [float(t.abs().sum()) for t in s]
        if scope == "model":
            d = [max(d[0], sum(r) / sum(l1))] * n
        else:
            d = [max(d[j], r[j] / l1[j]) if l1[j] > 0 else d[j] for j in range(n)]
    return r, d


@pytest.mark.parametrize("scope", ["model", "component"])
def test_observe_is_the_estimate_written_out(scope) -> None:
    torch.manual_seed(0)
    shapes = [(3, 4), (5,), (2, 2, 2)]
    xs = [[torch.randn(s) for s in shapes]]
    gs = []
    for _ in range(3):
        gs.append([torch.randn(s) for s in shapes])
        xs.append([x - 0.3 * g for x, g in zip(xs[-1], gs[-1])])  # the steps move x against g
    ws = [[1.0, 2.0, 0.5], [0.7, 0.7, 0.7], [3.0, 1.0, 2.0]]
    state = DistanceState.fresh(3)
    for x, g, w in zip(xs, gs, ws):
        observe(state, [0, 1, 2], x, g, torch.tensor(w), 0.9, scope)
    r, d = _by_hand(xs, gs, ws, 0.9, scope)
    assert state.numerator.tolist() == pytest.approx(r, rel=1e-5)
    assert state.d.tolist() == pytest.approx(d, rel=1e-5)
    assert max(d) > D0  # the comparison is not vacuous


def test_a_tensor_that_skips_a_step_still_counts_in_the_model_scale() -> None:
    """Scope ``model``: ‖s‖₁ sums every tensor seen so far, also one without a gradient this step."""
    torch.manual_seed(1)
    a, b = torch.randn(4), torch.randn(6)
    ga, gb = torch.randn(4), torch.randn(6)
    one = DistanceState.fresh(2)
    observe(one, [0, 1], [a, b], [ga, gb], torch.tensor([1.0, 1.0]), 0.9, "model")
    a2 = a - 0.5 * ga
    observe(one, [0], [a2], [ga], torch.tensor([1.0]), 0.9, "model")  # b has no gradient this step
    numerator = 0.5 * float(ga.pow(2).sum())  # r_a = <g_a, a − a2>; r_b stays 0 (x = x0 at its only step)
    assert one.numerator.tolist() == pytest.approx([numerator, 0.0], rel=1e-5, abs=1e-12)
    l1 = float((0.9 * ga + ga).abs().sum() + gb.abs().sum())
    assert float(one.d[0]) == pytest.approx(max(D0, numerator / l1), rel=1e-5)


def test_zero_gradients_leave_d_at_its_start_and_finite() -> None:
    for scope in ("model", "component"):
        state = DistanceState.fresh(2)
        observe(
            state, [0, 1], [torch.ones(3), torch.ones(2)], [torch.zeros(3), torch.zeros(2)], torch.ones(2), 0.9, scope
        )
        assert state.d.tolist() == [D0, D0]


def test_half_precision_weights_keep_the_estimate_in_float32() -> None:
    p = torch.randn(8).to(torch.bfloat16)
    state = DistanceState.fresh(1)
    observe(state, [0], [p], [torch.randn(8).to(torch.bfloat16)], torch.ones(1), 0.9, "component")
    assert state.x0[0].dtype == torch.float32 and state.s[0].dtype == torch.float32
    assert torch.equal(state.x0[0], p.float())
    wide, state = torch.randn(8, dtype=torch.float64), DistanceState.fresh(1)  # float64 weights keep float64
    observe(state, [0], [wide], [torch.randn(8, dtype=torch.float64)], torch.ones(1), 0.9, "model")
    assert state.x0[0].dtype == torch.float64


@pytest.mark.parametrize(("points", "refs"), [(0, []), (1, [0.0]), (2, [0.0, 1.0]), (3, [0.0, 0.5, 1.0])])
def test_relative_time_points_span_the_run(points, refs) -> None:
    """The features the network (and so the distance scale's modulation) reads of time:
    tanh(s·(t/T − r)) at ``points`` references r from 0 to 1, then tanh(T / scale)."""
    import math

    from hf_l3rs.optim.features import time_features

    config = L3RSConfig(relative_time_points=points, absolute_time_scales=(10.0, 100.0))
    got = time_features(config, 25, 100).tolist()
    want = [math.tanh(10.0 * (0.25 - r)) for r in refs] + [math.tanh(100 / 10.0), math.tanh(100 / 100.0)]
    assert got == pytest.approx(want, rel=1e-6)
    assert time_features(config, 25, None).tolist()[points:] == [1.0, 1.0]  # horizon-free: T = ∞
