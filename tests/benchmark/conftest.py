"""A toy case for the suite's machinery: least-squares regression with a small MLP and a new
head, a few milliseconds a run, so tuning, scoring, resuming and reporting run end to end."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from hf_l3rs.benchmark import problems
from hf_l3rs.benchmark.plan import Profile
from hf_l3rs.benchmark.suite import Case


def toy(seed: int, role: str, steps: int, noise: float = 0.1) -> problems.Problem:
    g = torch.Generator().manual_seed(7)
    w = torch.randn(8, 1, generator=g)
    x = torch.randn(256, 8, generator=g)
    y = x @ w + noise * torch.randn(256, 1, generator=g)
    held = slice(128, 192) if role == "tune" else slice(192, 256)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def train_batch(step: int):
        idx = torch.randint(0, 128, (16,), generator=torch.Generator().manual_seed(seed * 1000 + step))
        return x[idx], y[idx]

    def evaluate(m: nn.Module):
        with torch.no_grad():
            loss = float(nn.functional.mse_loss(m(x[held]), y[held]))
        return loss, float(1.0 / (1.0 + loss))  # a stand-in "accuracy" that rises as the loss falls

    return problems.Problem(
        model,
        train_batch,
        lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]),
        evaluate,
        head=("2.",),
        batch_size=16,
        chance_accuracy=0.0,
    )


TOY_PROFILE = Profile(
    "toy",
    (100,),
    (0, 1, 2),
    (-4, -2),
    ("constant", "cosine"),
    (0.01,),
    True,
    (-3, -1),
    ("cosine",),
    ("cosine",),
    max_extensions=2,
    curve_points=5,
)


@pytest.fixture
def toy_case(monkeypatch) -> Case:
    monkeypatch.setitem(problems.BUILDERS, "toy", toy)
    return Case(
        "toy-regression", "dev", "vision-scratch", 40, "toy-data", "toy-mlp", "toy", finetune=True, description="toy"
    )


@pytest.fixture
def toy_profile() -> Profile:
    return dataclasses.replace(TOY_PROFILE)
