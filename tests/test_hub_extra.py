"""Bundled meta-weights, model cards with model-index metadata, push_to_hub (faked: no network)."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import small_cnn, train_step

from hf_l3rs import L3RS
from hf_l3rs.hub import bundled_weights, load_net, push_to_hub, save_net


def test_bundled_weights_load_offline() -> None:
    assert "l3rs-kanji-tiny" in bundled_weights()
    model = small_cnn()
    opt = L3RS.from_pretrained("l3rs-kanji-tiny", model, total_steps=5)
    assert opt.config.num_components == 41  # meta-trained on l3rs_resnet_tiny
    opt.step(loss=train_step(model, 0))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bundled_weights_fit_their_architecture() -> None:
    timm = pytest.importorskip("timm")
    import hf_l3rs.tasks.models  # noqa: F401

    model = timm.create_model("l3rs_resnet_tiny", num_classes=25)
    opt = L3RS.from_pretrained("l3rs-kanji-tiny", model, total_steps=5, map_embeddings=False)
    assert torch.equal(opt.component_map, torch.arange(41))


def test_card_carries_model_index(tmp_path) -> None:
    net = load_net("l3rs-kanji-tiny")
    index = [
        {
            "name": "x",
            "results": [{"task": {"type": "image-classification"}, "metrics": [{"type": "accuracy", "value": 0.5}]}],
        }
    ]
    save_net(net, tmp_path / "w", card={"model_index": index, "evaluation": "| a | b |", "datasets": ["kanjivg"]})
    text = (tmp_path / "w" / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["library_name"] == "hf_l3rs" and meta["model-index"] == index and meta["datasets"] == ["kanjivg"]


def test_push_to_hub_sends_only_safe_files(tmp_path, monkeypatch) -> None:
    calls = {}

    class FakeApi:
        def __init__(self, **kw):
            calls["init"] = kw

        def create_repo(self, repo_id, **kw):
            calls["repo"] = repo_id

        def upload_folder(self, **kw):
            calls["upload"] = kw
            return "https://huggingface.co/org/x/commit/1"

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    save_net(load_net("l3rs-kanji-tiny"), tmp_path / "w")
    (tmp_path / "w" / "evil.pkl").write_bytes(b"not uploaded")
    push_to_hub(tmp_path / "w", "org/x", token="t")
    assert calls["repo"] == "org/x" and calls["init"]["library_name"] == "hf_l3rs"
    patterns = calls["upload"]["allow_patterns"]
    assert "model.safetensors" in patterns and not any(p.endswith("pkl") or p == "*" for p in patterns)
