"""Seeded fuzzing of the two inputs users get wrong most: configurations and gradients.

Every mutated config either raises ConfigError naming a field or builds an optimizer whose
step keeps the weights finite; every gradient pattern (NaN, ±inf, 1e30, 1e-30, zeros,
missing) leaves non-finite numbers out of the weights and the counts say what was skipped.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random

import pytest
import torch
from conftest import small_cnn, train_step

from hf_l3rs import L3RS, L3RSConfig
from hf_l3rs.optim.config import ConfigError

BAD_VALUES = [-1, 0, 0.5, 1, 2, 1e9, math.nan, math.inf, -math.inf, "x", None, [], [0.5], True]


@pytest.mark.parametrize("seed", range(6))
def test_mutated_configs_are_rejected_or_run(seed: int) -> None:
    rng = random.Random(seed)
    fields = [f.name for f in dataclasses.fields(L3RSConfig) if f.name not in ("num_components", "hyper_init")]
    rejected = ran = 0
    for _ in range(40):
        changes = {name: rng.choice(BAD_VALUES) for name in rng.sample(fields, rng.randint(1, 2))}
        try:
            config = L3RSConfig(**changes)
        except ConfigError as exc:
            assert any(name in str(exc) for name in changes), (changes, str(exc))
            rejected += 1
            continue
        except (TypeError, ValueError) as exc:  # a wrong type that the dataclass itself refuses
            pytest.fail(f"{changes} raised {type(exc).__name__} instead of ConfigError: {exc}")
        model = small_cnn()
        opt = L3RS(model, config, total_steps=3)
        for t in range(3):
            opt.step(loss=train_step(model, t))
        assert all(torch.isfinite(p).all() for p in model.parameters()), changes
        ran += 1
    assert rejected > 0


PATTERNS = {
    "nan": lambda g: torch.full_like(g, math.nan),
    "inf": lambda g: torch.full_like(g, math.inf),
    "-inf": lambda g: torch.full_like(g, -math.inf),
    "huge": lambda g: g * 1e30,
    "tiny": lambda g: g * 1e-30,
    "zero": torch.zeros_like,
    "missing": lambda g: None,
    "one_nan": lambda g: g.flatten().index_fill(0, torch.tensor([0]), math.nan).view_as(g),
}


@pytest.mark.parametrize("implementation", ["foreach", "fused"])
def test_fuzzed_gradients_never_reach_the_weights(implementation: str) -> None:
    from hf_l3rs.optim.fused import load_fused

    if implementation == "fused" and load_fused() is None:
        pytest.skip("fused kernels unavailable")
    rng = random.Random(7)
    model = small_cnn()
    opt = L3RS(model, L3RSConfig(), total_steps=30, implementation=implementation)
    params = list(model.parameters())
    expected_skips = torch.zeros(len(params), dtype=torch.long)
    for t in range(30):
        loss = train_step(model, t)
        for j, p in enumerate(params):
            if rng.random() < 0.3:
                name = rng.choice(sorted(PATTERNS))
                p.grad = PATTERNS[name](p.grad)
                if name in ("nan", "inf", "-inf", "one_nan", "huge"):  # 1e30² overflows Adam's v
                    expected_skips[j] += 1
        opt.step(loss=loss)
        assert all(torch.isfinite(p).all() for p in params), t
    assert torch.equal(opt.nonfinite_skips["components"], expected_skips)


def test_a_non_finite_network_output_is_skipped() -> None:
    """Meta-weights that produce NaN (here forced) leave the weights untouched and count."""
    model = small_cnn()
    before = [p.detach().clone() for p in model.parameters()]
    opt = L3RS(model, L3RSConfig(), total_steps=3)
    with torch.no_grad():
        opt.net.biases[-1].fill_(math.nan)
    opt.step(loss=train_step(model, 0))
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q)
    assert opt.nonfinite_skips["components"].tolist() == [1] * len(before)


def _odd_tensors(kind: str) -> list[tuple[str, torch.nn.Parameter]]:
    """Parameters laid out as users' models sometimes have them."""
    gen = torch.Generator().manual_seed(3)
    if kind == "transposed":  # dense, not contiguous
        weight = torch.nn.Parameter(torch.randn(6, 5, generator=gen).t())
        return [("w", weight), ("b", torch.nn.Parameter(torch.randn(5, generator=gen)))]
    if kind == "channels_last":
        conv = torch.randn(4, 3, 3, 3, generator=gen).to(memory_format=torch.channels_last)
        return [("conv", torch.nn.Parameter(conv)), ("b", torch.nn.Parameter(torch.randn(4, generator=gen)))]
    if kind == "zero_size":
        empty = torch.nn.Parameter(torch.zeros(0, 7))
        return [("empty", empty), ("w", torch.nn.Parameter(torch.randn(5, generator=gen)))]
    if kind == "strided_view":  # a view with gaps: not dense in any order
        base = torch.randn(6, 10, generator=gen)
        return [("view", torch.nn.Parameter(base[:, ::2])), ("b", torch.nn.Parameter(torch.randn(3, generator=gen)))]
    raise ValueError(kind)


def _run_odd(kind: str, implementation: str) -> list[torch.Tensor] | str:
    named = _odd_tensors(kind)
    try:
        opt = L3RS(named, total_steps=3, implementation=implementation)
    except ValueError as exc:
        assert "not possible here" in str(exc), exc
        return "refused"
    gen = torch.Generator().manual_seed(4)
    targets = [torch.randn(p.shape, generator=gen) for _, p in named]
    for _ in range(3):
        loss = sum(((p - t) ** 2).sum() for (_, p), t in zip(named, targets))
        opt.zero_grad()
        loss.backward()
        opt.step(loss=loss)
    return [p.detach().clone() for _, p in named]


@pytest.mark.parametrize("kind", ["transposed", "channels_last", "zero_size", "strided_view"])
@pytest.mark.parametrize("implementation", ["auto", "fused", "compiled"])
def test_odd_layouts_step_like_foreach_or_are_refused(kind: str, implementation: str) -> None:
    """Fused and compiled backends on non-contiguous, channels-last, zero-size and gapped
    tensors: the same weights as the foreach backend, or a refusal at construction that says
    why. Never a crash of the process, never a silently truncated tensor."""
    if implementation == "compiled":
        from hf_l3rs.optim.compiled import compiled_unavailable_reason

        if compiled_unavailable_reason() is not None:
            pytest.skip("torch.compile unavailable")
    expected = _run_odd(kind, "foreach")
    got = _run_odd(kind, implementation)
    if got == "refused":
        assert implementation == "fused" and kind == "strided_view"  # the only layout the kernels cannot take
        return
    for e, g in zip(expected, got):
        assert e.shape == g.shape and torch.isfinite(g).all()
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
    if kind == "zero_size":
        assert expected[0].numel() == 0


def _conv_model(channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    if channels_last:
        model[0].weight.data = model[0].weight.data.contiguous(memory_format=torch.channels_last)
    return model


def _conv_steps(model: torch.nn.Module, opt: L3RS, n: int) -> None:
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    for _ in range(n):
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step(loss=loss)


def test_a_state_saved_in_another_memory_layout_steps_like_foreach() -> None:
    """A state saved from a contiguous model and loaded into a channels-last one: the fused
    kernels walk memory, so the state takes its parameter's layout on load (before, the kernels
    paired the wrong elements silently: 3.6e-3 off foreach)."""
    source = _conv_model(False)
    opt = L3RS(source, total_steps=6, implementation="foreach")
    _conv_steps(source, opt, 3)
    saved = opt.state_dict()
    weights = {}
    for implementation in ("foreach", "fused"):
        model = _conv_model(True)
        model.load_state_dict(source.state_dict())
        model[0].weight.data = model[0].weight.data.contiguous(memory_format=torch.channels_last)
        resumed = L3RS(model, total_steps=6, implementation=implementation)
        resumed.load_state_dict(copy.deepcopy(saved))  # torch shares loaded tensors with the dict
        _conv_steps(model, resumed, 2)
        weights[implementation] = model[0].weight.detach().clone()
    torch.testing.assert_close(weights["fused"], weights["foreach"], rtol=1e-5, atol=1e-6)


def test_a_layout_change_during_training_steps_like_foreach() -> None:
    """``model.to(memory_format=torch.channels_last)`` between steps leaves the state in the
    old layout: that step runs on foreach instead of the kernels (same math)."""
    weights = {}
    for implementation in ("foreach", "fused"):
        model = _conv_model(False)
        opt = L3RS(model, total_steps=6, implementation=implementation)
        _conv_steps(model, opt, 2)
        model.to(memory_format=torch.channels_last)
        _conv_steps(model, opt, 2)
        weights[implementation] = model[0].weight.detach().clone()
    torch.testing.assert_close(weights["fused"], weights["foreach"], rtol=1e-5, atol=1e-6)
