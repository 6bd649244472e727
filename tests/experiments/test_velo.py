"""VeLO-lite, the per-parameter learned baseline (docs/design.md §5): the same conformance
checks as L3RS (formula at initialisation, bitwise resume, non-finite inputs, param groups,
save/load), and the same meta-training driver and evaluation."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import grouped, small_cnn, train_step

from experiments.velo import VeLOLite, VeLOLiteConfig, VeLOLiteNet
from hf_l3rs import MissingLossError
from hf_l3rs.optim.config import ConfigError
from hf_l3rs.optim.hub import CheckpointError, load_net

ROOT = Path(__file__).resolve().parents[2]


def _lively(seed: int = 1) -> VeLOLiteNet:
    """Random output layers, so that every part of the network changes the update."""
    net = VeLOLiteNet(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (net.out.weight, net.out.bias, net.w2, net.b2):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return net


def test_untrained_is_adam_on_the_cosine_prior() -> None:
    """Zero output layers: d = m = s = 0, so the step is Adam(β 0.9, 0.999) at η₀·prior(t)."""
    steps, base = 12, 3e-3
    model, twin = small_cnn(), small_cnn()
    opt = VeLOLite(model, VeLOLiteConfig(base_lr=base), total_steps=steps)
    m = {n: torch.zeros_like(p) for n, p in twin.named_parameters()}
    v = {n: torch.zeros_like(p) for n, p in twin.named_parameters()}
    for t in range(1, steps + 1):
        opt.step(loss=train_step(model, t))
        train_step(twin, t)
        prior = 0.5 * (1 + math.cos(math.pi * (t - 1) / steps))
        with torch.no_grad():
            for n, p in twin.named_parameters():
                m[n] = 0.9 * m[n] + 0.1 * p.grad
                v[n] = 0.999 * v[n] + 0.001 * p.grad**2
                adam = (m[n] / (1 - 0.9**t)) / (torch.sqrt(v[n] / (1 - 0.999**t)) + 1e-8)
                p -= base * prior * adam
    for (n, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7), n


def test_resume_from_state_dict_is_bitwise(tmp_path) -> None:
    net = _lively()
    straight = small_cnn()
    opt = VeLOLite(grouped(straight), net, total_steps=20)
    for t in range(20):
        opt.step(loss=train_step(straight, t))
    first = small_cnn()
    opt1 = VeLOLite(grouped(first), net, total_steps=20)
    for t in range(10):
        opt1.step(loss=train_step(first, t))
    torch.save({"model": first.state_dict(), "opt": opt1.state_dict()}, tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    resumed = small_cnn(seed=7)
    resumed.load_state_dict(ckpt["model"])
    opt2 = VeLOLite(grouped(resumed), VeLOLiteNet(seed=99), total_steps=20)  # θ comes from the state
    opt2.load_state_dict(ckpt["opt"])
    for t in range(10, 20):
        opt2.step(loss=train_step(resumed, t))
    for (n, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), n


def test_nonfinite_inputs_never_reach_the_weights() -> None:
    model = small_cnn()
    opt = VeLOLite(model, _lively(), total_steps=10)
    opt.step(loss=train_step(model, 0))
    head = model.head.weight.detach().clone()
    state = opt.state[model.head.weight]["m1"].clone()
    conv = model.conv1.weight.detach().clone()
    loss = train_step(model, 1)
    model.head.weight.grad[0, 0] = float("nan")
    opt.step(loss=loss)
    assert torch.equal(model.head.weight, head) and torch.equal(opt.state[model.head.weight]["m1"], state)
    assert not torch.equal(model.conv1.weight, conv)
    before = [p.detach().clone() for p in model.parameters()]
    train_step(model, 2)
    opt.step(loss=float("inf"))  # a non-finite loss skips the step
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    loss = train_step(model, 3)
    for p in model.parameters():
        p.grad.mul_(1e30)
    opt.step(loss=loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert opt.nonfinite_skips["loss"] == 1 and int(opt.nonfinite_skips["components"].sum()) >= 1
    with pytest.raises(MissingLossError):
        opt.step()


def test_param_groups_scale_the_step_and_the_decay() -> None:
    """lr 0 freezes a group; decoupled weight decay is scaled by the group's lr·η."""
    model = small_cnn()
    decay = [p for p in model.parameters() if p.dim() > 1]
    rest = [p for p in model.parameters() if p.dim() <= 1]
    opt = VeLOLite([{"params": decay, "weight_decay": 0.5}, {"params": rest, "lr": 0.0}], total_steps=5, model=model)
    frozen = [p.detach().clone() for p in rest]
    for t in range(3):
        opt.step(loss=train_step(model, t))
    assert all(torch.equal(p, q) for p, q in zip(rest, frozen))
    twin = small_cnn()
    plain = VeLOLite([{"params": [p for p in twin.parameters() if p.dim() > 1]}], total_steps=5, model=twin)
    for t in range(3):
        plain.step(loss=train_step(twin, t))
    assert not torch.equal(model.head.weight, twin.head.weight)  # decay acted


def test_save_and_load_give_identical_updates(tmp_path) -> None:
    a, b = small_cnn(), small_cnn()
    opt_a = VeLOLite(a, _lively(), total_steps=8)
    opt_a.save_pretrained(str(tmp_path / "w"))
    card = (tmp_path / "w" / "README.md").read_text()
    assert "VeLO-lite" in card and "library_name: hf_l3rs" in card
    opt_b = VeLOLite.from_pretrained(str(tmp_path / "w"), b, total_steps=8)
    assert torch.equal(opt_a.net.get_flat(), opt_b.net.get_flat())
    for t in range(8):
        opt_a.step(loss=train_step(a, t))
        opt_b.step(loss=train_step(b, t))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    raw = json.loads((tmp_path / "w" / "config.json").read_text())
    raw["velo_lite"]["bank_size"] = 7  # the tensors no longer match
    (tmp_path / "w" / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="VeLO-lite"):
        load_net(tmp_path / "w")
    raw["velo_lite"]["lstm_hiden"] = 3
    (tmp_path / "w" / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="lstm_hiden"):
        load_net(tmp_path / "w")


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match="bank_size"):
        VeLOLiteConfig(bank_size=0)
    with pytest.raises(ConfigError, match="momentum_betas"):
        VeLOLiteConfig(momentum_betas=(0.9, 1.5))
    with pytest.raises(ConfigError, match="rate_schedule"):
        VeLOLiteConfig(rate_schedule="linear")


def test_meta_trains_with_the_same_driver(tmp_path) -> None:
    from hf_l3rs.meta.config import MetaTrainConfig
    from hf_l3rs.meta.trainer import MetaTrainer

    config = MetaTrainConfig(
        name="velo-tiny",
        learned_optimizer="velo-lite",
        family="two_moons_mlp",
        family_kwargs={"k_min": 5, "k_max": 8},
        learned={"base_lr": 0.01},
        plugins=["experiments.velo"],
        nes={"popsize": 4, "sigma": 0.05, "learning_rate": 0.05},
        generations=2,
        tasks_per_generation=1,
        val_every=1,
        val_tasks=1,
        checkpoint_every=1,
        trackers=[],
        threads=1,
    )
    trainer = MetaTrainer(config, tmp_path)
    theta0 = trainer.net.get_flat().clone()
    trainer.run()
    assert not torch.equal(trainer.state.theta, theta0)
    net = load_net(tmp_path / "final")
    assert isinstance(net, VeLOLiteNet) and torch.equal(net.get_flat(), trainer.state.theta.float().double())
    with pytest.raises(ConfigError, match="learned block"):
        MetaTrainConfig(learned={"base_lr": 0.01})
    with pytest.raises(ConfigError, match="plugins"):
        MetaTrainConfig(learned_optimizer="velo-lite", plugins=["experiments.no_such_module"])
    with pytest.raises(ConfigError, match="learned_optimizer"):
        MetaTrainConfig(learned_optimizer="velo")


def test_the_tuned_benchmark_compares_it_beside_l3rs(tmp_path, tiny_kanji) -> None:
    from hf_l3rs.evaluation.tuned import TunedBenchmark, TunedConfig

    VeLOLite(small_cnn(), _lively(), total_steps=2).save_pretrained(str(tmp_path / "velo"))
    src = str(tiny_kanji)
    spec = {"classes_per_task": 2, "train_per_class": 2, "eval_per_class": 2, "batch_size": 4, "image_size": 16}
    cfg = TunedConfig(
        domains={"D1": src, "D2": src},
        task_specs={src: spec},
        evaluations=["E"],
        horizons=[1, 2],
        families=["adam-cos", "sgd-const"],
        grids={"adam": [-2, -1], "sgd": [-2, -1]},
        max_extensions=1,
        val_tasks=1,
        test_tasks=2,
        l3rs={"L3RS (untrained)": None, "VeLO-lite": str(tmp_path / "velo")},
        bootstrap_samples=20,
    )
    data = TunedBenchmark(cfg, progress=False).run()["evaluations"]["E"]
    for label in ("L3RS (untrained)", "VeLO-lite"):
        assert data["comparisons"][label]["loss"]["2"]["paired"]["n"] == 2
    velo, l3rs = (data["test"][k]["loss"]["2"]["values"] for k in ("VeLO-lite", "L3RS (untrained)"))
    assert velo != l3rs  # two different optimizers ran


def test_head_backbone_prior_scales_the_first_step() -> None:
    """The deepest fraction of the tensors steps at head_rate·η₀, the others at backbone_rate·η₀."""
    plain_model, prior_model = small_cnn(), small_cnn()
    plain = VeLOLite(plain_model, total_steps=5)
    prior = VeLOLite(
        prior_model,
        VeLOLiteConfig(init_head_fraction=0.2, init_head_rate=2.0, init_backbone_rate=0.5),
        total_steps=5,
    )
    start = [p.detach().clone() for p in plain_model.parameters()]
    plain.step(loss=train_step(plain_model, 0))
    prior.step(loss=train_step(prior_model, 0))
    ratios = [
        float((q - s).norm() / (p - s).norm())
        for p, q, s in zip(plain_model.parameters(), prior_model.parameters(), start)
    ]
    assert ratios == pytest.approx([0.5] * 5 + [2.0] * 2, rel=1e-5)


def test_l3rs_refuses_velo_weights_with_a_hint(tmp_path) -> None:
    from hf_l3rs import L3RS

    VeLOLite(small_cnn(), total_steps=2).save_pretrained(str(tmp_path / "v"))
    with pytest.raises(TypeError, match=r"VeLOLite\.from_pretrained"):
        L3RS.from_pretrained(str(tmp_path / "v"), small_cnn(), total_steps=2)


def test_without_experiments_the_package_refuses_velo_weights_by_name() -> None:
    """The installed package knows no VeLO-lite: its weights are refused with where the loader lives."""
    code = (
        "from hf_l3rs.optim.hub import CheckpointError, load_net\n"
        "try:\n    load_net('experiments/weights/velo-lite-kanji')\n"
        "except CheckpointError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "'velo_lite'" in out.stdout and "experiments.velo" in out.stdout
