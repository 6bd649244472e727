"""State round trips: optimizer state_dict (weights_only) and save/from_pretrained."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from conftest import lively, resume_matches_straight_run, small_cnn, train_step

from hf_l3rs import L3RS, L3RSConfig, load_net

IMPLS = ["fused", "foreach"]


def _fused_ok() -> bool:
    from hf_l3rs.optim.fused import load_fused

    return load_fused() is not None


@pytest.mark.parametrize("impl", IMPLS)
def test_resume_from_state_dict_is_bitwise(tmp_path, impl) -> None:
    if impl == "fused" and not _fused_ok():
        pytest.skip("fused kernels unavailable")
    resume_matches_straight_run(tmp_path, L3RSConfig(), impl, steps=40, live=True)


def test_state_dict_round_trip_before_any_step() -> None:
    """accelerate.prepare round-trips the state right after construction: the first step is
    then exactly the one a fresh optimizer takes."""
    round_tripped, fresh = small_cnn(), small_cnn()
    opt = L3RS(round_tripped, total_steps=5)
    opt.load_state_dict(opt.state_dict())
    reference = L3RS(fresh, total_steps=5)
    opt.step(loss=train_step(round_tripped, 0))
    reference.step(loss=train_step(fresh, 0))
    assert opt.state_dict()["l3rs"]["step"] == 1
    for (name, p), q in zip(round_tripped.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), name
    assert not torch.equal(next(round_tripped.parameters()), next(small_cnn().parameters()))  # it moved


def test_save_and_from_pretrained_give_identical_updates(tmp_path) -> None:
    a, b = small_cnn(), small_cnn()
    opt_a = lively(L3RS(a, L3RSConfig(), total_steps=10, seed=5))
    opt_a.save_pretrained(tmp_path / "w")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    opt_b = L3RS.from_pretrained(str(tmp_path / "w"), b, total_steps=10)
    assert torch.equal(opt_a.net.get_flat(), opt_b.net.get_flat())
    for t in range(10):
        opt_a.step(loss=train_step(a, t))
        opt_b.step(loss=train_step(b, t))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    card = (tmp_path / "w" / "README.md").read_text()
    assert "library_name: hf_l3rs" in card and "sgd, adam" in card


def test_from_pretrained_overrides_and_shape_fields(tmp_path, model) -> None:
    L3RS(model, total_steps=5).save_pretrained(tmp_path / "w")
    opt = L3RS.from_pretrained(str(tmp_path / "w"), model, total_steps=5, base_lr=2e-4)
    assert opt.config.base_lr == 2e-4
    with pytest.raises(ValueError, match="hidden_sizes"):
        L3RS.from_pretrained(str(tmp_path / "w"), model, total_steps=5, hidden_sizes=(8,))


def test_overrides_of_removed_fields_load_like_a_saved_config() -> None:
    """A meta-training YAML written before ADR 0014 (``rate_adaptation``, ``adaptation_scope`` in
    its ``l3rs:`` block, as the default's own recipe had) loads: removed fields at their "off"
    value are read past silently, one that acted is named in a warning, never an unknown-field
    error; ``rate_adaptation: none`` is rate 0 as in a saved config."""
    import warnings

    from hf_l3rs.optim.hub import load_net

    plain = load_net("l3rs-general").config
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = load_net("l3rs-general", rate_adaptation="hypergradient", adaptation_scope="component")
    assert same.config == plain
    with pytest.warns(UserWarning, match="adaptation_scope"):
        load_net("l3rs-general", adaptation_scope="model")
    assert load_net("l3rs-general", rate_adaptation="none").config.hypergradient_rate == 0.0
    with pytest.raises(ValueError, match="unknown"):
        load_net("l3rs-general", adaptation_scop="component")


def test_from_pretrained_takes_groups_of_bare_tensors_with_the_model(tmp_path) -> None:
    """Layer-wise rates as param groups of bare tensors: ``model=`` keeps names and roles,
    and a group's lr multiplies the learned rate (0 leaves its tensors where they are)."""
    net = small_cnn()
    lively(L3RS(net, L3RSConfig(), total_steps=5)).save_pretrained(tmp_path / "w")
    params = list(net.parameters())
    groups = [{"params": params[:-2], "lr": 0.0}, {"params": params[-2:], "lr": 1.0}]
    opt = L3RS.from_pretrained(str(tmp_path / "w"), groups, model=net, total_steps=5)
    assert [c.name for c in opt.components] == [n for n, _ in net.named_parameters()]
    before = [p.detach().clone() for p in params]
    opt.step(loss=train_step(net, 0))
    assert all(torch.equal(p, q) for p, q in zip(params[:-2], before[:-2]))
    assert not any(torch.equal(p, q) for p, q in zip(params[-2:], before[-2:]))


def _populate_cache(cache, repo_id: str, folder) -> None:
    """The huggingface_hub cache layout: refs/main -> snapshots/<commit>/files."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        shutil.copy(f, snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_hub_id_loads_offline_from_cache(tmp_path, model, monkeypatch) -> None:
    opt = lively(L3RS(model, L3RSConfig(), total_steps=5, seed=7))
    opt.save_pretrained(tmp_path / "w")
    _populate_cache(tmp_path / "cache", "org/l3rs-tiny", tmp_path / "w")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    net = load_net("org/l3rs-tiny", cache_dir=str(tmp_path / "cache"))
    assert torch.equal(net.get_flat(), opt.net.get_flat())
    loaded = L3RS.from_pretrained(
        "org/l3rs-tiny", small_cnn(), total_steps=5, cache_dir=str(tmp_path / "cache"), local_files_only=True
    )
    assert torch.equal(loaded.net.get_flat(), opt.net.get_flat())


def test_unseen_architecture_maps_embeddings_and_logs(tmp_path, caplog) -> None:
    big = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)
    )
    L3RS(small_cnn(), total_steps=5).save_pretrained(tmp_path / "w")
    with caplog.at_level(logging.INFO, logger="hf_l3rs"):
        opt = L3RS.from_pretrained(str(tmp_path / "w"), big, total_steps=5)
    assert "nearest relative depth" in caplog.text
    roles = [c.role for c in opt.components]
    assert roles == ["linear", "bias", "norm", "bias", "linear", "bias", "linear", "bias"]
    trained_roles = opt.net.trained_roles[opt.component_map].tolist()
    # linear -> the trained linear head (index 5), biases -> trained biases, norm -> bn weight
    assert [opt.components[0].role, trained_roles[0]] == ["linear", 1]
    assert trained_roles[1] == trained_roles[3] == 3  # ROLES.index("bias")
    assert trained_roles[2] == 2  # ROLES.index("norm")
    x = torch.randn(3, 4)
    loss = big(x).pow(2).mean()
    loss.backward()
    opt.step(loss=loss)


def test_dynamics_readout(model) -> None:
    opt = L3RS(model, total_steps=3)
    opt.record_dynamics = True
    for t in range(3):
        opt.step(loss=train_step(model, t))
    assert [d["step"] for d in opt.dynamics] == [1, 2, 3]
    assert opt.dynamics[0]["rate"].shape == (opt.num_components,)
    assert opt.dynamics[0]["mix"].shape == (opt.num_components, 2)
    assert torch.allclose(opt.dynamics[0]["mix"].sum(1), torch.ones(opt.num_components))


def test_flat_view_round_trip(model) -> None:
    opt = L3RS(model, total_steps=3)
    theta = opt.net.get_flat()
    assert theta.numel() == opt.net.num_meta_parameters
    opt.net.set_flat(theta + 1.0)
    assert torch.allclose(opt.net.get_flat(), theta + 1.0)


def test_config_json_is_plain_json(tmp_path, model) -> None:
    L3RS(model, total_steps=3).save_pretrained(tmp_path / "w")
    data = json.loads((tmp_path / "w" / "config.json").read_text())
    assert data["l3rs"]["directions"] == ["sgd", "adam"]
    assert data["hyper_parameters"]["adam"]["beta1"] == pytest.approx(0.9, rel=1e-6)


def test_an_evaluation_forward_between_steps_changes_nothing() -> None:
    """L3RS reads the loss from the model's training forwards; an evaluation pass (eval mode,
    no grad) between two steps, with a very different loss, must not enter the step."""

    class WithLoss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(4, 3)

        def forward(self, x, scale=1.0):
            out = self.body(x)
            return {"loss": scale * out.pow(2).mean(), "logits": out}

    def run(evaluate: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = WithLoss()
        opt = lively(L3RS(model, L3RSConfig(), total_steps=10, seed=1))
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
        for _ in range(3):
            opt.zero_grad()
            model(x)["loss"].backward()
            if evaluate:
                model.eval()
                with torch.no_grad():
                    model(x, scale=100.0)
                model.train()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(run(False), run(True)))
