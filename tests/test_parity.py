"""The fast L3RS step (fused and foreach) agrees with the loop reference (docs/design.md §1)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import grouped, small_cnn, train_step

from hf_l3rs import L3RS, L3RSConfig
from hf_l3rs.optim.fused import load_fused
from hf_l3rs.optim.reference import ReferenceL3RS

STEPS = 50
# A large output scale makes the mixing and rate differ per component and per step, so
# every direction contributes; the default init would make them all ≈ normalised Adam.
LIVELY = {"init_output_scale": 1.0, "init_adam_mix": 0.5}


def _scripted_loss(t: int) -> float:
    """A loss that halves by step ~15 (random labels do not): what the floors' release reads."""
    return 2.0 / (1.0 + 0.1 * t)


def _fast(config: L3RSConfig, implementation: str, scripted: bool = False) -> torch.nn.Module:
    model = small_cnn()
    opt = L3RS(grouped(model), config, total_steps=40, implementation=implementation, seed=3)
    for t in range(STEPS):  # 50 steps with total_steps=40: stepping past T is allowed
        loss = train_step(model, t)
        opt.step(loss=_scripted_loss(t) if scripted else loss)
    assert opt.floors_released == (scripted and config.role_adaptation_min_release > 0)
    return model


def _reference(config: L3RSConfig, scripted: bool = False) -> torch.nn.Module:
    model = small_cnn()
    groups = grouped(model)
    probe = L3RS(copy.deepcopy(groups), config, total_steps=40, implementation="foreach", seed=3)
    plain = [{**g, "params": [p for _, p in g["params"]]} for g in groups]
    ref = ReferenceL3RS(plain, probe.net, probe.components, total_steps=40)
    for t in range(STEPS):
        loss = train_step(model, t)
        ref.step(_scripted_loss(t) if scripted else loss.item())
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
    "loss_log1p": {"loss_feature": "log1p"},
    "rate_cosine": {"rate_schedule": "cosine"},
    "distance_scale": {"step_scale": "distance"},
    "distance_per_tensor": {"step_scale": "distance_per_tensor"},
    "head_prior": {"init_head_fraction": 0.3, "init_head_rate": 5.0, "init_backbone_rate": 0.2},
    "role_prior": {"role_rate_scale": {"conv": 3.0, "bias": 0.5}},
    "hypergradient": {
        "rate_adaptation": "hypergradient",
        "hypergradient_rate": 0.3,
        "adaptation_min": 0.2,
        "adaptation_max": 5.0,
    },
    "hypergradient_component": {
        "rate_adaptation": "hypergradient",
        "adaptation_scope": "component",
        "hypergradient_rate": 0.3,
        "adaptation_min": 0.2,
        "adaptation_max": 5.0,
    },
    "hypergradient_role_floor": {
        "rate_adaptation": "hypergradient",
        "hypergradient_rate": 0.3,
        "adaptation_min": 0.2,
        "adaptation_max": 5.0,
        "role_adaptation_min": {"conv": 1.0, "bias": 0.5},
    },
    "hypergradient_component_role_floor": {
        "rate_adaptation": "hypergradient",
        "adaptation_scope": "component",
        "hypergradient_rate": 0.3,
        "adaptation_min": 0.2,
        "adaptation_max": 5.0,
        "role_adaptation_min": {"conv": 1.0, "bias": 0.5},
    },
    "hypergradient_tangential": {
        "rate_adaptation": "hypergradient",
        "adaptation_signal": "tangential",
        "hypergradient_rate": 0.3,
        "adaptation_min": 0.2,
        "adaptation_max": 5.0,
    },
    "hypergradient_component_tangential": {
        "rate_adaptation": "hypergradient",
        "adaptation_scope": "component",
        "adaptation_signal": "tangential",
        "hypergradient_rate": 0.3,
        "adaptation_min": 0.2,
        "adaptation_max": 5.0,
    },
    # a reference well below SmallCNN's share, so the backbone's multiplier is on (capped at 3)
    "gradient_share": {"gradient_share_reference": 0.05, "gradient_share_max": 3.0},
    "gradient_share_conv_only": {
        "gradient_share_reference": 0.2,
        "gradient_share_steps": 3,
        "gradient_share_roles": ("conv",),
    },
    # the multiplier (3) above the boost's start (1.5) through step 20 of 50: norm and bias boosted
    "gradient_share_boost": {
        "gradient_share_reference": 0.05,
        "gradient_share_max": 3.0,
        "gradient_share_boost": {"norm": 2.0, "bias": 1.5},
        "gradient_share_boost_from": 1.5,
        "gradient_share_boost_steps": 20,
    },
    # a checkpoint that must move (m capped at 1.8, below the boost's start 2): head × 1.8 ** -2
    "gradient_share_head": {
        "gradient_share_reference": 0.05,
        "gradient_share_max": 1.8,
        "gradient_share_head_power": 2.0,
    },
    # the same from scratch on a run (50 steps) shorter than the boost's horizon (80): × 1.6 ** 1.5
    "gradient_share_boost_short": {
        "gradient_share_reference": 0.05,
        "gradient_share_max": 3.0,
        "gradient_share_boost": {"norm": 2.0, "bias": 1.5},
        "gradient_share_boost_from": 1.5,
        "gradient_share_boost_steps": 20,
        "gradient_share_boost_horizon": 80.0,
        "gradient_share_boost_horizon_power": 1.5,
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_foreach_matches_reference(case: str) -> None:
    config = L3RSConfig(**LIVELY, **CASES[case])
    _assert_close(_fast(config, "foreach"), _reference(config))


@pytest.mark.parametrize(
    "case",
    [
        "default",
        "sgd+adam+wd",
        "global",
        "per_layer_mlp",
        "l2_norm",
        "loss_log1p",
        "rate_cosine",
        "hypergradient",
        "hypergradient_component_tangential",
        "role_prior",
        "gradient_share",
        "gradient_share_boost",
        "gradient_share_boost_short",
        "gradient_share_head",
    ],
)
def test_fused_matches_reference(case: str) -> None:
    if load_fused() is None:
        pytest.skip("no C++ toolchain: fused kernels unavailable")
    config = L3RSConfig(**LIVELY, **CASES[case])
    _assert_close(_fast(config, "fused"), _reference(config))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_one_hot_adam_is_normalised_adam_on_its_schedule(schedule: str) -> None:
    """Mixing forced one-hot on adam, rate logit forced to 0: L3RS is normalised Adam at η₀,
    constant or on the cosine 0.5·(1 + cos(π·(t−1)/T)) of a cosine-scheduled baseline."""
    config = L3RSConfig(base_lr=3e-3, rate_schedule=schedule)
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
                factor = 0.5 * (1 + math.cos(math.pi * (t - 1) / 30)) if schedule == "cosine" else 1.0
                p.sub_(lr * factor * d / (rms + 1e-12))
    assert float(opt.last_mix[:, 1].min()) == 1.0
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        rel = float((p - q).detach().norm() / q.detach().norm())
        assert rel < 2e-6, f"{name}: {rel:.2e}"


def test_untrained_l3rs_is_mostly_adam_at_base_rate(model) -> None:
    opt = L3RS(model, total_steps=10)
    opt.step(loss=train_step(model, 0))
    assert torch.allclose(opt.last_mix[:, 1], torch.full((opt.num_components,), 0.9), atol=0.02)
    assert torch.allclose(opt.last_rate, torch.full_like(opt.last_rate, 1e-3), rtol=0.1)


@pytest.mark.parametrize(
    ("mode", "loss", "expected"),
    [("raw", 99.0, 99.0), ("log1p", 99.0, math.log(100.0)), ("log1p", -99.0, -math.log(100.0))],
)
def test_loss_feature_transform(mode: str, loss: float, expected: float) -> None:
    """The loss columns of the EMA features hold the (transformed) loss; after one step the
    bias-corrected EMAs equal it exactly."""
    model = torch.nn.Linear(3, 1)
    opt = L3RS(model, L3RSConfig(loss_feature=mode), total_steps=5)
    (model(torch.ones(1, 3)).sum() ** 2).backward()
    opt.step(loss=loss)
    nb = len(opt.config.ema_betas)
    loss_columns = opt._ema.read()[:, 2 * nb : 3 * nb]
    torch.testing.assert_close(loss_columns, torch.full_like(loss_columns, expected))


def test_head_prior_starts_head_and_backbone_at_their_rates() -> None:
    """init_head_fraction: the deepest 5 % of components (here the last linear and its bias,
    depths 0.975 and 1.0 of 41) start at head·η₀, all others at backbone·η₀; the fraction's
    own boundary (depth 0.95) is still backbone."""
    timm = pytest.importorskip("timm")
    import hf_l3rs.tasks.models  # noqa: F401

    model = timm.create_model("l3rs_resnet_tiny", num_classes=5)
    config = L3RSConfig(base_lr=3e-3, init_head_fraction=0.05, init_head_rate=3.3, init_backbone_rate=0.1)
    opt = L3RS(model, config, total_steps=10)
    loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    opt.step(loss=loss)
    head = [j for j, c in enumerate(opt.components) if c.depth > 0.95]
    assert [opt.components[j].name for j in head] == ["fc.weight", "fc.bias"]
    rate = opt.last_rate
    torch.testing.assert_close(rate[head], torch.full((2,), 3.3 * 3e-3), rtol=0.05, atol=0)
    backbone = torch.ones(len(rate), dtype=torch.bool)
    backbone[head] = False
    torch.testing.assert_close(rate[backbone], torch.full((int(backbone.sum()),), 0.1 * 3e-3), rtol=0.05, atol=0)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"init_head_fraction": 1.5}, "init_head_fraction"),
        ({"init_head_fraction": 0.05, "descriptor": False}, "descriptor"),
        ({"init_head_fraction": 0.05, "variant": "global"}, "global"),
        ({"init_head_fraction": 0.05, "hidden_sizes": (32,)}, "hidden layers"),
        ({"init_head_rate": 0.0}, "init_head_rate"),
    ],
)
def test_head_prior_config_errors(changes, match) -> None:
    from hf_l3rs.optim.config import ConfigError

    with pytest.raises(ConfigError, match=match):
        L3RSConfig(**changes)


def test_role_prior_multiplies_the_learned_rate_of_its_roles_only(model) -> None:
    """role_rate_scale {"conv": 3}: the first step's conv updates are exactly 3× those of the
    same meta-weights without it (same features, same network output), every other tensor's equal."""
    from hf_l3rs.optim.config import ConfigError

    base = L3RSConfig(**LIVELY)
    updates = []
    for config in (base, base.replace(role_rate_scale={"conv": 3.0})):
        m = copy.deepcopy(model)
        before = {n: p.detach().clone() for n, p in m.named_parameters()}
        opt = L3RS(m, config, total_steps=10, seed=1)
        opt.step(loss=train_step(m, 0))
        updates.append({n: p.detach() - before[n] for n, p in m.named_parameters()})
    roles = {c.name: c.role for c in opt.components}
    assert "conv" in roles.values() and set(roles.values()) - {"conv"}
    for name, role in roles.items():
        ratio = 3.0 if role == "conv" else 1.0
        torch.testing.assert_close(updates[1][name], ratio * updates[0][name], rtol=1e-4, atol=1e-7)
    # A model without the role (a transformer has no convolutions) is untouched, bit for bit.
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    steps = []
    for config in (base, base.replace(role_rate_scale={"conv": 3.0})):
        m = copy.deepcopy(mlp)
        opt = L3RS(m, config, total_steps=10, seed=1)
        for t in range(3):
            loss = m(torch.randn(8, 4, generator=torch.Generator().manual_seed(t))).pow(2).mean()
            m.zero_grad()
            loss.backward()
            opt.step(loss=loss)
        steps.append(torch.cat([p.detach().reshape(-1) for p in m.parameters()]))
    assert torch.equal(steps[0], steps[1])
    for bad, match in (({"convolution": 2.0}, "unknown role"), ({"conv": 0.0}, "> 0"), ({"conv": "x"}, "numbers")):
        with pytest.raises(ConfigError, match=match):
            L3RSConfig(role_rate_scale=bad)


def test_horizon_free_matches_reference() -> None:
    """total_steps unknown: the fast step and the loop reference agree (t/T = 0, T = ∞)."""
    config = L3RSConfig(**LIVELY, rate_schedule="cosine")
    fast_model, ref_model = small_cnn(), small_cnn()
    fast = L3RS(fast_model, config, implementation="foreach", seed=3)
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
    config = L3RSConfig(base_lr=base_lr, rate_adaptation="hypergradient", hypergradient_rate=0.1, descriptor=False)
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


def test_component_scope_grows_a_flat_tensor_and_shrinks_a_sharp_one() -> None:
    """Two tensors, one learned rate: one starts far from its minimum (every step too short,
    successive gradients agree), the other next to it (every step overshoots). Per-tensor
    adaptation raises the first one's multiplier and lowers the second's; one model-wide
    multiplier cannot do both."""

    def multipliers(scope: str) -> torch.Tensor:
        torch.manual_seed(0)
        flat, sharp = torch.nn.Parameter(10 * torch.randn(64)), torch.nn.Parameter(1e-3 * torch.randn(64))
        config = L3RSConfig(
            base_lr=0.05,
            rate_adaptation="hypergradient",
            hypergradient_rate=0.2,
            adaptation_scope=scope,
            descriptor=False,
        )
        opt = L3RS([("flat", flat), ("sharp", sharp)], config, total_steps=40, implementation="foreach")
        for _ in range(40):
            opt.zero_grad()
            loss = 0.5 * (flat.square().sum() + sharp.square().sum())
            loss.backward()
            opt.step(loss=loss)
        return opt.rate_multipliers

    per_tensor, shared = multipliers("component"), multipliers("model")
    assert per_tensor[0] > 2.0 and per_tensor[1] < 0.7, per_tensor
    assert shared[0] == shared[1]


def test_tangential_signal_ignores_pure_norm_change_of_a_matrix() -> None:
    """On f(W) = ½·|W|² every gradient and every momentum is parallel to W: the gradient
    signal reads cos = 1 (grow), the tangential one has nothing left to compare and keeps
    the multiplier at exactly 1. A vector (a gain, a bias) keeps the gradient signal: there
    its size is its function."""

    def multiplier(signal: str, shape: tuple[int, ...]) -> float:
        w = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 32).reshape(shape))
        config = L3RSConfig(base_lr=1e-3, rate_adaptation="hypergradient", adaptation_signal=signal, descriptor=False)
        opt = L3RS([("w", w)], config, total_steps=20, implementation="foreach")
        for _ in range(20):
            opt.zero_grad()
            loss = 0.5 * w.square().sum()
            loss.backward()
            opt.step(loss=loss)
        return opt.rate_multiplier

    assert multiplier("gradient", (4, 8)) > 1.5
    assert multiplier("tangential", (4, 8)) == 1.0
    vector = multiplier("gradient", (32,))
    assert vector > 1.5 and multiplier("tangential", (32,)) == pytest.approx(vector, rel=1e-6)


def _separable_head(signal: str, base_lr: float) -> tuple[float, float]:
    """A linear classifier on minibatches of 64 linearly separable points: its rate
    multiplier and weight norm after 100 steps."""
    torch.manual_seed(0)
    x = torch.randn(64, 16)
    y = (x @ torch.randn(16, 4)).argmax(1)
    head = torch.nn.Linear(16, 4, bias=False)
    config = L3RSConfig(
        base_lr=base_lr,
        rate_adaptation="hypergradient",
        adaptation_scope="component",
        hypergradient_rate=0.4,
        adaptation_target=0.1,
        adaptation_signal=signal,
        descriptor=False,
    )
    opt = L3RS(head, config, total_steps=100, implementation="foreach")
    batches = torch.Generator().manual_seed(1)
    for _ in range(100):
        idx = torch.randint(0, 64, (8,), generator=batches)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x[idx]), y[idx])
        loss.backward()
        opt.step(loss=loss)
    return opt.rate_multiplier, float(head.weight.detach().norm())


@pytest.mark.parametrize("base_lr", [1e-3, 1e-2])
def test_tangential_signal_grows_a_separable_head_less(base_lr: float) -> None:
    """Once a head separates its batches, every minibatch agrees on one thing: grow the
    logits (the gradient's component along the weights); what is left disagrees from batch
    to batch. The gradient signal reads that agreement as "steps too short" and keeps
    raising the head's rate; the tangential one does not (docs/design.md §1)."""
    grad_mult, grad_norm = _separable_head("gradient", base_lr)
    tang_mult, tang_norm = _separable_head("tangential", base_lr)
    assert tang_mult < 0.6 * grad_mult, (tang_mult, grad_mult)
    assert tang_norm < grad_norm, (tang_norm, grad_norm)


@pytest.mark.parametrize("scope", ["model", "component"])
def test_role_floor_stops_the_adaptation_lowering_that_role(scope: str) -> None:
    """Steps too large: the adaptation lowers multipliers (successive gradients disagree), but
    a floor per role keeps the convolutions' at or above it at every step, and only theirs
    (design §1 "Rate adaptation")."""

    def lowest(floors: dict[str, float]) -> tuple[torch.Tensor, list[str]]:
        model = small_cnn()
        config = L3RSConfig(
            base_lr=1.0,
            rate_adaptation="hypergradient",
            hypergradient_rate=0.3,
            adaptation_scope=scope,
            role_adaptation_min=floors,
        )
        opt = L3RS(model, config, total_steps=30, implementation="foreach")
        low = torch.full((len(opt.presented_roles),), math.inf, dtype=torch.float64)
        for t in range(30):
            opt.step(loss=train_step(model, t))
            low = torch.minimum(low, opt.rate_multipliers)
        return low, opt.presented_roles

    free, roles = lowest({})
    floored, _ = lowest({"conv": 1.0})
    conv = torch.tensor([r == "conv" for r in roles])
    assert conv.any() and (~conv).any()
    assert free[conv].min() < 0.99, free
    assert (floored[conv] >= 1.0).all(), floored
    assert floored[~conv].min() < 0.9, floored


@pytest.mark.parametrize("scope", ["model", "component"])
@pytest.mark.parametrize("implementation", ["foreach", "fused"])
def test_role_floor_release_matches_reference(scope: str, implementation: str) -> None:
    """Floors held while the scripted loss is high, released once its EMA halves (step ~15 of
    50): the fast step and the loop reference agree on both sides of the release."""
    if implementation == "fused" and load_fused() is None:
        pytest.skip("no C++ toolchain: fused kernels unavailable")
    floors = CASES["hypergradient_role_floor"]  # the floors' own parity case, plus the release
    config = L3RSConfig(**LIVELY, **floors, adaptation_scope=scope, role_adaptation_min_release=0.5)
    _assert_close(_fast(config, implementation, scripted=True), _reference(config, scripted=True))


def test_role_floor_holds_until_the_loss_halves_then_releases() -> None:
    """Loss 2 for 10 steps, then 0.2: the bias-corrected EMA (β 0.9) is 2, 1.738, 1.523, 1.346,
    1.197, 1.072, 0.965 at steps 10…16, so with release 0.5 the convolutions' floor of 1 holds
    through step 15 and is gone from step 16 on; the adaptation (steps too large) then lowers
    them. The release survives a state_dict round trip."""
    model, twin = small_cnn(), small_cnn()
    config = L3RSConfig(
        base_lr=1.0,
        rate_adaptation="hypergradient",
        hypergradient_rate=0.3,
        adaptation_scope="component",
        role_adaptation_min={"conv": 1.0},
        role_adaptation_min_release=0.5,
    )
    opt = L3RS(model, config, total_steps=40, implementation="foreach")
    conv = torch.tensor([r == "conv" for r in opt.presented_roles])
    for t in range(1, 16):
        train_step(model, t)
        opt.step(loss=2.0 if t <= 10 else 0.2)
        assert (opt.rate_multipliers[conv] >= 1.0).all(), (t, opt.rate_multipliers[conv])
    assert not opt.floors_released
    train_step(model, 16)
    opt.step(loss=0.2)
    assert opt.floors_released
    twin.load_state_dict(model.state_dict())
    copy_opt = L3RS(twin, opt.net, total_steps=40, implementation="foreach")
    copy_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert copy_opt.floors_released
    lowest = math.inf
    for t in range(17, 40):
        train_step(model, t)
        opt.step(loss=0.2)
        assert opt.floors_released
        lowest = min(lowest, float(opt.rate_multipliers[conv].min()))
    assert lowest < 1.0, lowest  # with the floor it could not go below 1


def test_state_saved_before_floor_release_loads_with_a_fresh_tracker() -> None:
    """A state_dict written before role floors could be released (no loss tracker, no
    release flag) loads; the floors count as held and the tracker starts at the next loss."""
    model = small_cnn()
    config = L3RSConfig(
        rate_adaptation="hypergradient", role_adaptation_min={"conv": 1.0}, role_adaptation_min_release=0.5
    )
    opt = L3RS(model, config, total_steps=20, implementation="foreach")
    for t, loss in enumerate([2.0, 0.1, 0.1, 0.1]):
        train_step(model, t)
        opt.step(loss=loss)
    assert opt.floors_released
    old = copy.deepcopy(opt.state_dict())
    for key in ("loss_first", "loss_ema", "loss_count", "floors_released"):
        del old["l3rs"][key]
    opt.load_state_dict(old)
    assert not opt.floors_released
    train_step(model, 4)
    opt.step(loss=0.9)  # the fresh tracker's first loss; the old one (first 2.0) would release at it
    assert not opt.floors_released
    for t in range(5, 9):
        train_step(model, t)
        opt.step(loss=0.1)
    assert opt.floors_released


def test_rate_multiplier_survives_state_dict_round_trip() -> None:
    model, twin = small_cnn(), small_cnn()
    config = L3RSConfig(rate_adaptation="hypergradient", hypergradient_rate=0.5)
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
