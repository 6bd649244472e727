"""Bad input is refused by name before it reaches a kernel (issue 39)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hf_l3rs import L3RS


def _trained_state(classes: int) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, classes))
    opt = L3RS(model, total_steps=5)
    loss = model(torch.randn(3, 4)).sum()
    loss.backward()
    opt.step(loss=loss)
    return opt.state_dict()


@pytest.mark.parametrize(("saved", "here"), [(6, 8), (8, 6)])
def test_a_state_saved_for_another_head_is_refused_by_name(saved, here):
    state = _trained_state(saved)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, here))
    opt = L3RS(model, total_steps=5)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"'2\.weight' has shape \(" + str(saved)):
        opt.load_state_dict(state)
    loss = model(torch.randn(3, 4)).sum()  # the optimizer is still usable, untouched
    loss.backward()
    opt.step(loss=loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_state_of_another_model_size_is_refused():
    state = _trained_state(6)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.Linear(6, 2))
    opt = L3RS(model, total_steps=5)
    with pytest.raises(ValueError, match=r"config differs"):
        opt.load_state_dict(state)


def test_the_same_model_still_resumes():
    state = _trained_state(6)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6))
    opt = L3RS(model, total_steps=5)
    opt.load_state_dict(state)
    assert opt.state_dict()["l3rs"]["step"] == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hidden_sizes", (1_000_000,)),
        ("hidden_sizes", (32,) * 20),
        ("embedding_dim", 10**7),
        ("num_components", 10**9),
        ("base_lr", 1e308),
        ("base_lr", float("nan")),
    ],
)
def test_absurd_config_values_are_refused_before_any_allocation(field, value):
    from hf_l3rs import L3RSConfig
    from hf_l3rs.optim.config import ConfigError

    with pytest.raises(ConfigError, match=field):
        L3RSConfig(**{field: value})


def _corrupted(tmp_path, edit):
    import json

    from safetensors.torch import load_file, save_file

    from hf_l3rs.optim.hub import resolve

    folder = tmp_path / "w"
    import shutil

    shutil.copytree(resolve("l3rs-general"), folder)
    edit(folder, json, load_file, save_file)
    return folder


def test_nan_meta_weights_are_refused_on_load(tmp_path):
    from hf_l3rs.optim.hub import CheckpointError

    def poison(folder, json, load_file, save_file):
        tensors = load_file(str(folder / "model.safetensors"))
        key = next(k for k, v in tensors.items() if v.is_floating_point())
        tensors[key] = tensors[key].clone()
        tensors[key].view(-1)[0] = float("nan")
        save_file(tensors, str(folder / "model.safetensors"))

    folder = _corrupted(tmp_path, poison)
    with pytest.raises(CheckpointError, match="non-finite"):
        L3RS.from_pretrained(str(folder), nn.Linear(3, 2))


def test_a_config_json_asking_for_terabytes_is_refused(tmp_path):
    from hf_l3rs.optim.config import ConfigError

    def huge(folder, json, load_file, save_file):
        config = json.loads((folder / "config.json").read_text())
        config["l3rs"]["hidden_sizes"] = [1_000_000, 32]
        (folder / "config.json").write_text(json.dumps(config))

    folder = _corrupted(tmp_path, huge)
    with pytest.raises(ConfigError, match="hidden_sizes"):
        L3RS.from_pretrained(str(folder), nn.Linear(3, 2))
