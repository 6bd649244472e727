"""Seeded fuzzing of the two inputs users get wrong most: configurations and gradients.

Every mutated config either raises ConfigError naming a field or builds an optimizer whose
step keeps the weights finite; every gradient pattern (NaN, ±inf, 1e30, 1e-30, zeros,
missing) leaves non-finite numbers out of the weights and the counts say what was skipped.
"""

from __future__ import annotations

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
