"""Bad input is refused by name before it reaches a kernel (issue 39)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hf_l3rs import L3RS, L3RSConfig


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


def _mlp(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).to(dtype)


def _displacement(dtype: torch.dtype, implementation: str = "auto") -> tuple[float, L3RS]:
    model = _mlp(dtype)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 16, generator=gen).to(dtype), torch.randint(0, 4, (64,), generator=gen)
    opt = L3RS(model, total_steps=5, implementation=implementation)
    start = [p.detach().float().clone() for p in model.parameters()]
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step(loss=loss)
    return sum(float((p.detach().float() - s).norm()) for p, s in zip(model.parameters(), start)), opt


def test_float16_weights_train_like_float32():
    """Half-precision weights are stepped with float32 math and float32 state (as torch's fused
    AdamW does): before, Adam's ε underflowed and every step was skipped (the model never moved)."""
    reference, _ = _displacement(torch.float32)
    half, opt = _displacement(torch.float16)
    assert opt.nonfinite_skips["components"].sum() == 0
    assert half == pytest.approx(reference, rel=0.02)
    assert all(t.dtype == torch.float32 for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor))
    assert all(p.dtype == torch.float16 for p in opt.param_groups[0]["params"])


def test_float16_with_rate_adaptation():
    """Rate adaptation reads float16 gradients against float32 momentum."""
    model = _mlp(torch.float16)
    opt = L3RS(model, L3RSConfig(hypergradient_rate=0.05), total_steps=4)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 16, generator=gen).half(), torch.randint(0, 4, (32,), generator=gen)
    for _ in range(4):
        loss = nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step(loss=loss)
    assert opt.nonfinite_skips["components"].sum() == 0
    assert torch.isfinite(opt.rate_multipliers).all() and bool((opt.rate_multipliers != 1).any())


def test_complex_parameters_are_refused_by_name():
    weight = nn.Parameter(torch.randn(4, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"'phase' is complex .*view_as_complex"):
        L3RS([("phase", weight)], total_steps=3)


def test_unknown_fields_of_a_newer_version_load_with_a_warning(tmp_path):
    def newer(folder, json, load_file, save_file):
        config = json.loads((folder / "config.json").read_text())
        config["l3rs"]["field_of_the_future"] = 3
        config["library_version"] = "9.0.0"
        (folder / "config.json").write_text(json.dumps(config))

    folder = _corrupted(tmp_path, newer)
    with pytest.warns(UserWarning, match=r"\['field_of_the_future'\].*hf_l3rs 9\.0\.0"):
        opt = L3RS.from_pretrained(str(folder), nn.Linear(3, 2))
    assert opt.config == L3RS.from_pretrained("l3rs-general", nn.Linear(3, 2)).config


def test_unknown_fields_that_change_the_network_do_not_load(tmp_path):
    """A newer field that changed the network's shape shows up as tensors that do not fit."""
    from hf_l3rs.optim.hub import CheckpointError

    def newer_and_wider(folder, json, load_file, save_file):
        config = json.loads((folder / "config.json").read_text())
        config["l3rs"]["extra_output_heads"] = 2
        (folder / "config.json").write_text(json.dumps(config))
        tensors = load_file(str(folder / "model.safetensors"))
        tensors["extra_head.weight"] = torch.zeros(2, 32)
        save_file(tensors, str(folder / "model.safetensors"))

    folder = _corrupted(tmp_path, newer_and_wider)
    with pytest.warns(UserWarning, match="extra_output_heads"), pytest.raises(CheckpointError):
        L3RS.from_pretrained(str(folder), nn.Linear(3, 2))


def test_a_config_json_nested_too_deeply_is_a_checkpoint_error(tmp_path):
    """Before: a bare RecursionError from the JSON decoder."""
    from hf_l3rs.optim.hub import CheckpointError

    def deep(folder, json, load_file, save_file):
        (folder / "config.json").write_text('{"l3rs": ' + "[" * 100_000 + "]" * 100_000 + "}")

    folder = _corrupted(tmp_path, deep)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        L3RS.from_pretrained(str(folder), nn.Linear(3, 2))


@pytest.mark.parametrize("listed", [[1, 2], "x", [{"name": "w"}]])
def test_a_malformed_list_of_trained_components_is_dropped_by_name(tmp_path, listed):
    """It is only carried to re-saves: dropped with a warning, never written back as it was."""

    def garbage(folder, json, load_file, save_file):
        config = json.loads((folder / "config.json").read_text())
        config["trained_components"] = listed
        (folder / "config.json").write_text(json.dumps(config))

    folder = _corrupted(tmp_path, garbage)
    with pytest.warns(UserWarning, match="'trained_components' is malformed"):
        opt = L3RS.from_pretrained(str(folder), nn.Linear(3, 2))
    opt.save_pretrained(tmp_path / "again")
    import json

    resaved = json.loads((tmp_path / "again" / "config.json").read_text())["trained_components"]
    assert [c["name"] for c in resaved] == ["weight", "bias"]  # this model's, not the garbage


def test_a_config_that_is_not_an_object_is_named_once(tmp_path):
    from hf_l3rs.optim.config import ConfigError

    def listed(folder, json, load_file, save_file):
        config = json.loads((folder / "config.json").read_text())
        config["l3rs"] = [1]
        (folder / "config.json").write_text(json.dumps(config))

    folder = _corrupted(tmp_path, listed)
    with pytest.raises(ConfigError, match="must be a JSON object") as info:
        L3RS.from_pretrained(str(folder), nn.Linear(3, 2))
    assert str(info.value).count("config.json") == 1
