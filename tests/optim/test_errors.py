"""Bad input gives one clear error each; non-finite values never reach the weights."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import small_cnn, train_step

from hf_l3rs import L3RS, CheckpointError, ConfigError, EmbeddingMismatchError, L3RSConfig, MissingLossError


def test_step_without_loss_says_how_to_pass_it(model) -> None:
    opt = L3RS(model, total_steps=3)
    train_step(model, 0)
    with pytest.raises(MissingLossError, match=r"opt.step\(loss=loss\)"):
        opt.step()


def test_observe_loss_and_closure(model) -> None:
    opt = L3RS(model, total_steps=3)
    opt.observe_loss(train_step(model, 0))
    opt.step()
    assert opt.step(lambda: train_step(model, 1)) is not None


def test_sparse_gradients_are_rejected() -> None:
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = L3RS(emb, total_steps=3)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step(loss=1.0)


def test_without_a_horizon_it_runs_horizon_free_and_says_so(model, caplog) -> None:
    opt = L3RS(model)
    with caplog.at_level("INFO", logger="hf_l3rs"):
        for t in range(3):
            opt.step(loss=train_step(model, t))
    assert opt.total_steps is None and caplog.text.count("horizon-free") == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    opt.set_total_steps(10)  # a horizon announced later is used from then on
    opt.step(loss=train_step(model, 3))
    assert opt.total_steps == 10


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("directions", ("sgd", "adagrad"), "unknown base direction 'adagrad'"),
        ("ema_betas", (0.5, 1.0), "ema_betas"),
        ("hidden_sizes", (32, 0), "hidden_sizes"),
        ("variant", "lstm", "variant"),
        ("norm", "l1", "norm"),
        ("base_lr", -1.0, "base_lr"),
    ],
)
def test_bad_config_names_the_field(field, value, match) -> None:
    with pytest.raises(ConfigError, match=match):
        L3RSConfig(**{field: value})


def _saved(tmp_path, model):
    folder = tmp_path / "w"
    L3RS(model, total_steps=3).save_pretrained(folder)
    return folder


def test_corrupt_safetensors(tmp_path, model) -> None:
    folder = _saved(tmp_path, model)
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        L3RS.from_pretrained(str(folder), model, total_steps=3)


def test_truncated_safetensors(tmp_path, model) -> None:
    folder = _saved(tmp_path, model)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        L3RS.from_pretrained(str(folder), model, total_steps=3)


def test_config_json_missing_field(tmp_path, model) -> None:
    folder = _saved(tmp_path, model)
    data = json.loads((folder / "config.json").read_text())
    del data["l3rs"]["hidden_sizes"]
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"missing field\(s\) \['hidden_sizes'\]"):
        L3RS.from_pretrained(str(folder), model, total_steps=3)


def test_config_json_with_removed_options_off_loads_silently(tmp_path, model, recwarn) -> None:
    """Checkpoints saved before ADR 0004 list the removed options; off, they change nothing."""
    folder = _saved(tmp_path, model)
    data = json.loads((folder / "config.json").read_text())
    data["l3rs"].update(loss_feature="raw", gradient_share_reference=0.0, gradient_share_max=8.0, role_rate_scale={})
    (folder / "config.json").write_text(json.dumps(data))
    opt = L3RS.from_pretrained(str(folder), model, total_steps=3)
    assert not hasattr(opt.config, "gradient_share_max")
    assert not [w for w in recwarn if "removed" in str(w.message)]


def test_config_json_with_a_removed_option_on_warns_by_name(tmp_path, model) -> None:
    folder = _saved(tmp_path, model)
    data = json.loads((folder / "config.json").read_text())
    data["l3rs"].update(role_rate_scale={"conv": 6.0}, head_calibration_growth=1.07, head_calibration_max=1000.0)
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"\['head_calibration_growth', 'role_rate_scale'\] were removed"):
        opt = L3RS.from_pretrained(str(folder), model, total_steps=3)
    assert opt.config == L3RS.from_pretrained(str(_saved(tmp_path / "plain", model)), model).config


def test_config_json_saved_before_adr_0014_loads_with_the_same_steps(tmp_path, model, recwarn) -> None:
    """The switch ``rate_adaptation`` became the rate itself (``"none"``: rate 0); the per-tensor
    scope, the base-lr scale, the features' epsilon and the network's initialisation at the
    values that are now fixed load silently; the distance scale or a one-model scope warn."""
    folder = _saved(tmp_path, model)
    data = json.loads((folder / "config.json").read_text())
    old = {"feature_eps": 1e-12, "init_output_scale": 1.0, "init_adam_mix": 0.5, "step_scale": "base_lr"}
    data["l3rs"].update(old, rate_adaptation="none", hypergradient_rate=0.05, adaptation_scope="model")
    (folder / "config.json").write_text(json.dumps(data))
    opt = L3RS.from_pretrained(str(folder), model, total_steps=3)
    assert opt.config.hypergradient_rate == 0.0 and not opt.config.adapts
    assert not [w for w in recwarn if "removed" in str(w.message)]
    data["l3rs"].update(rate_adaptation="hypergradient", hypergradient_rate=0.4, adaptation_scope="component")
    (folder / "config.json").write_text(json.dumps(data))
    assert L3RS.from_pretrained(str(folder), model, total_steps=3).config.hypergradient_rate == 0.4
    assert not [w for w in recwarn if "removed" in str(w.message)]
    data["l3rs"].update(step_scale="distance", adaptation_scope="model")
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"\['adaptation_scope', 'step_scale'\] were removed"):
        L3RS.from_pretrained(str(folder), model, total_steps=3)


def test_config_json_unknown_field_is_named(tmp_path, model) -> None:
    """A field this version does not know (a newer version's, or a typo) is named in a warning
    and ignored (issue 39); in a run config's ``l3rs:`` block it stays an error."""
    folder = _saved(tmp_path, model)
    data = json.loads((folder / "config.json").read_text())
    data["l3rs"]["hiden_sizes"] = [32, 32]
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"\['hiden_sizes'\].*ignored"):
        L3RS.from_pretrained(str(folder), model, total_steps=3)
    with pytest.raises(ConfigError, match=r"unknown field.*hiden_sizes"):
        L3RSConfig.from_dict({"hiden_sizes": [32, 32]})


def test_missing_folder_offline(tmp_path, model) -> None:
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache"):
        L3RS.from_pretrained("org/does-not-exist", model, total_steps=3, cache_dir=str(tmp_path))


def test_embedding_count_mismatch_without_mapping(tmp_path, model) -> None:
    folder = _saved(tmp_path, model)
    other = torch.nn.Linear(3, 2)
    with pytest.raises(EmbeddingMismatchError, match=r"2 components.*trained on 7"):
        L3RS.from_pretrained(str(folder), other, total_steps=3, map_embeddings=False)


def test_from_pretrained_without_params_says_what_to_pass(tmp_path, model) -> None:
    folder = _saved(tmp_path, model)
    with pytest.raises(TypeError, match="needs the parameters"):
        L3RS.from_pretrained(str(folder))


@pytest.mark.parametrize("impl", ["fused", "foreach"])
def test_nonfinite_gradient_is_skipped_and_counted(impl) -> None:
    model = small_cnn()
    opt = L3RS(model, total_steps=5, implementation=impl)
    opt.step(loss=train_step(model, 0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    state_before = opt.state[model.head.weight]["adam.exp_avg"].clone()
    train_step(model, 1)
    model.head.weight.grad[0, 0] = float("nan")
    opt.step(loss=1.0)
    assert torch.equal(model.head.weight, before["head.weight"])
    assert torch.equal(opt.state[model.head.weight]["adam.exp_avg"], state_before)
    assert not torch.equal(model.conv2.weight, before["conv2.weight"])
    j = [c.name for c in opt.components].index("head.weight")
    assert opt.nonfinite_skips["components"][j] == 1
    assert int(opt.nonfinite_skips["components"].sum()) == 1
    opt.step(loss=train_step(model, 2))  # recovers
    assert torch.isfinite(model.head.weight).all()
    assert not torch.equal(model.head.weight, before["head.weight"])


def test_nonfinite_loss_skips_the_step(model) -> None:
    opt = L3RS(model, total_steps=5)
    train_step(model, 0)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step(loss=float("inf"))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert opt.nonfinite_skips["loss"] == 1


def test_frozen_and_gradless_params_are_skipped() -> None:
    model = small_cnn()
    model.conv1.weight.requires_grad_(False)
    opt = L3RS(model, total_steps=3)
    assert "conv1.weight" not in [c.name for c in opt.components]
    x = torch.randn(2, 1, 8, 8)
    loss = model(x).sum()
    loss.backward()
    model.head.bias.grad = None
    bias = model.head.bias.detach().clone()
    opt.step(loss=loss)
    assert torch.equal(model.head.bias, bias)


def test_invalid_constructor_arguments(model) -> None:
    with pytest.raises(ValueError, match="lr"):
        L3RS(model, total_steps=3, lr=-1)
    with pytest.raises(ValueError, match="total_steps"):
        L3RS(model, total_steps=0)
    with pytest.raises(ValueError, match="implementation"):
        L3RS(model, total_steps=3, implementation="cuda")
    with pytest.raises(ValueError, match="no parameter"):
        L3RS([torch.zeros(3)], total_steps=3)


def test_same_count_other_roles_is_mapped_by_role(model, caplog) -> None:
    """A 7-tensor MLP is not the 7-tensor CNN the embeddings were trained on: every linear
    weight borrows the only trained linear (head.weight, #5), every bias the trained bias of
    nearest depth (#2 at 0.33, #4 at 0.67, #6 at 1.0; ties go to the first), and the mapping
    is logged."""
    net = L3RS(model, total_steps=3).net
    mlp = torch.nn.Sequential(
        torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 2, bias=False)
    )
    # components: 0 w (0.00), 1 b (0.17), 2 w (0.33), 3 b (0.50), 4 w (0.67), 5 b (0.83), 6 w (1.00)
    with caplog.at_level("INFO", logger="hf_l3rs"):
        opt = L3RS(mlp, net, total_steps=3)
    assert opt.component_map.tolist() == [5, 2, 5, 2, 5, 4, 5]  # 0.50 and 0.83 are ties
    assert "not the architecture" in caplog.text
    with pytest.raises(EmbeddingMismatchError, match="with other roles"):
        L3RS(mlp, net, total_steps=3, map_embeddings=False)
    assert L3RS(small_cnn(), net, total_steps=3).component_map.tolist() == list(range(7))


def test_a_tied_embedding_keeps_its_embedding_role() -> None:
    """A causal LM ties its output layer to its input embedding: the shared tensor is named
    after the embedding and takes the embedding role, not the output Linear's."""
    from torch import nn

    from hf_l3rs.optim.components import describe

    class TinyLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.mix = nn.Linear(4, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.embed.weight

    model = TinyLM()
    roles = {c.name: c.role for c in describe(list(model.named_parameters()), model)}
    assert roles == {"embed.weight": "embedding", "mix.weight": "linear", "mix.bias": "bias"}


def test_a_role_the_meta_weights_never_saw_is_presented_as_a_trained_one(caplog) -> None:
    """Meta-weights trained on a CNN (conv, bias, linear) meet a language model's embedding
    table and LayerNorm gains: the embedding is presented to the network as a linear weight
    and the norm gain as a bias (its one-hot would be an input never seen in meta-training),
    the substitution is logged, and known roles are untouched."""
    from torch import nn

    from hf_l3rs.optim.components import stand_in_roles
    from hf_l3rs.optim.config import ROLES

    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    net = L3RS(cnn, total_steps=3).net
    assert {ROLES[int(r)] for r in net.trained_roles} == {"conv", "bias", "linear"}
    lm = nn.Sequential(nn.Embedding(10, 4), nn.LayerNorm(4), nn.Linear(4, 10))
    with caplog.at_level("INFO", logger="hf_l3rs"):
        opt = L3RS(lm, net, total_steps=3)
    assert [c.role for c in opt.components] == ["embedding", "norm", "bias", "linear", "bias"]
    assert opt.presented_roles == ["linear", "bias", "bias", "linear", "bias"]
    assert opt.descriptor[0, ROLES.index("linear")] == 1 and opt.descriptor[0, ROLES.index("embedding")] == 0
    assert "embedding seen as linear" in caplog.text
    # an untrained network's placeholder roles (all 'other') substitute nothing
    placeholder = torch.full((3,), ROLES.index("other"))
    roles = torch.tensor([ROLES.index("embedding"), ROLES.index("norm"), ROLES.index("conv")])
    assert torch.equal(stand_in_roles(roles, placeholder), roles)


def test_a_frozen_backbone_leaves_the_head_at_its_depth_in_the_network(model) -> None:
    """A linear probe trains only the head: its tensors keep the relative depth they have
    among all of the model's tensors (frozen ones included), so the meta-network sees the
    same descriptor rows as for the head of the whole model, not a first layer (depth 0).
    Without the model (bare tensors) the depth is counted among the tensors given."""
    full = L3RS(model, total_steps=3)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("head."))
    probe = L3RS(model, full.net, total_steps=3)
    assert [(c.name, c.depth) for c in probe.components] == [("head.weight", 5 / 6), ("head.bias", 1.0)]
    assert probe.component_map.tolist() == [5, 6]
    assert torch.equal(probe.descriptor, full.descriptor[5:])
    bare = L3RS([model.head.weight, model.head.bias], full.net, total_steps=3)
    assert [c.depth for c in bare.components] == [0.0, 1.0]
