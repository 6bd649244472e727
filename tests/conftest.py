"""Shared fixtures: tiny models and deterministic data, everything offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import dataclasses

import pytest
import torch
from torch import nn

from hf_l3rs.benchmark import problems as suite_problems
from hf_l3rs.benchmark.plan import Profile
from hf_l3rs.benchmark.suite import Case

torch.set_num_threads(min(2, torch.get_num_threads()))


class SmallCNN(nn.Module):
    """Conv (no bias before BN, as in timm ResNets), BN, conv with bias, linear head."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.head = nn.Linear(6 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.head(x.flatten(1))


def small_cnn(seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN()


def grouped(model: nn.Module) -> list[dict]:
    """Two param groups with different lr multipliers and weight decay."""
    decay = [(n, p) for n, p in model.named_parameters() if p.dim() > 1]
    rest = [(n, p) for n, p in model.named_parameters() if p.dim() <= 1]
    return [{"params": decay, "lr": 1.0, "weight_decay": 0.05}, {"params": rest, "lr": 0.5}]


def batch(step: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def train_step(model: nn.Module, step: int) -> torch.Tensor:
    x, y = batch(step)
    model.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss


@pytest.fixture
def model() -> SmallCNN:
    return small_cnn()


@pytest.fixture(scope="session")
def tiny_kanji(tmp_path_factory):
    """8 rendered kanji classes × 6 samples at 16 px (HF dataset folder); needs cairosvg."""
    pytest.importorskip("cairosvg")
    from hf_l3rs.tasks.domains import prepare_domain

    root = tmp_path_factory.mktemp("domains")
    return prepare_domain("kanji", root=root, num_classes=8, samples_per_class=6, image_size=16, workers=1)


@pytest.fixture(scope="session")
def tiny_scratch_protocol(tiny_kanji):
    """Evaluation E (random init) over the tiny kanji fixture: 2-way tasks of 2 images a class,
    for the protocol's own runs (probes, whole-model entries) at a few steps."""
    from hf_l3rs.evaluation.protocol import EvalConfig, Protocol

    src = str(tiny_kanji)
    spec = {"classes_per_task": 2, "train_per_class": 2, "eval_per_class": 2, "batch_size": 4, "image_size": 16}
    config = EvalConfig(
        domains={"D1": src, "D2": src}, task_specs={src: spec}, horizons=[3], optimizers=[], evaluations=["E"]
    )
    return Protocol(config, progress=False)


# ---- the benchmark suite's toy case: least-squares regression with a small MLP and a new head,
# a few milliseconds a run, so tuning, scoring, resuming and reporting run end to end


def toy(seed: int, role: str, steps: int, noise: float = 0.1) -> suite_problems.Problem:
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

    return suite_problems.Problem(
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
    monkeypatch.setitem(suite_problems.BUILDERS, "toy", toy)
    return Case(
        "toy-regression", "dev", "vision-scratch", 40, "toy-data", "toy-mlp", "toy", finetune=True, description="toy"
    )


@pytest.fixture
def toy_profile() -> Profile:
    return dataclasses.replace(TOY_PROFILE)


def lively(opt, output_scale: float = 1.0, adam_mix: float = 0.5, seed: int = 0):
    """``opt`` with a fresh network initialised so that its rate and mixing differ per
    component and per step and every direction contributes (the default initialisation makes
    them all ≈ normalised Adam, which would make many comparisons vacuous)."""
    from hf_l3rs.optim.network import L3RSNet

    net = opt.net
    fresh = L3RSNet(
        net.config, net.trained_roles, net.trained_depths, seed=seed, output_scale=output_scale, adam_mix=adam_mix
    )
    net.load_state_dict(fresh.state_dict())
    return opt


def resume_matches_straight_run(tmp_path, config, implementation: str, steps: int = 20, live: bool = False):
    """Train ``steps`` steps straight, and again stopped half-way, saved with ``torch.save``,
    loaded ``weights_only`` into fresh objects and continued: returns the two optimizers after
    asserting that every weight of the two models is bitwise equal (``live``: both networks
    made :func:`lively`)."""
    from hf_l3rs import L3RS

    def made(model, **kw):
        opt = L3RS(grouped(model), config, total_steps=steps, implementation=implementation, **kw)
        return lively(opt) if live else opt

    straight = small_cnn()
    opt = made(straight)
    for t in range(steps):
        opt.step(loss=train_step(straight, t))
    first = small_cnn()
    opt1 = made(first)
    for t in range(steps // 2):
        opt1.step(loss=train_step(first, t))
    torch.save({"model": first.state_dict(), "opt": opt1.state_dict()}, tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    resumed = small_cnn(seed=99)
    resumed.load_state_dict(ckpt["model"])
    opt2 = L3RS(grouped(resumed), config, total_steps=steps, implementation=implementation, seed=123)
    opt2.load_state_dict(ckpt["opt"])
    for t in range(steps // 2, steps):
        opt2.step(loss=train_step(resumed, t))
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), name
    return opt, opt2
