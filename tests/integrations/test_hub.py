"""Bundled meta-weights, model cards with model-index metadata, push_to_hub (faked: no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import small_cnn, train_step

from hf_l3rs import L3RS
from hf_l3rs.optim.hub import bundled_weights, load_net, push_to_hub, save_net

ROOT = Path(__file__).resolve().parents[2]


def lineage(name: str) -> str:
    """A lineage rule's folder (experiments/weights: research, not bundled)."""
    return str(ROOT / "experiments" / "weights" / name)


def test_bundled_configs_name_no_removed_option() -> None:
    """Issue 37: a removed knob is gone from the shipped files too, not only read past."""
    import json

    from hf_l3rs.optim.config import REMOVED_FIELDS, L3RSConfig

    folder = ROOT / "hf_l3rs" / "pretrained"
    for name in bundled_weights():
        saved = json.loads((folder / name / "config.json").read_text())["l3rs"]
        assert not set(saved) & set(REMOVED_FIELDS), name
        assert L3RSConfig.from_dict(saved) == load_net(name).config


def test_bundled_weights_load_offline() -> None:
    assert bundled_weights() == ["l3rs-general", "l3rs-kanji-whiten"]
    model = small_cnn()
    opt = L3RS.from_pretrained("l3rs-general", model, total_steps=5)
    assert opt.config.num_components == 41  # meta-trained on l3rs_resnet_tiny
    opt.step(loss=train_step(model, 0))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bundled_weights_fit_their_architecture() -> None:
    timm = pytest.importorskip("timm")
    import hf_l3rs.tasks.models  # noqa: F401

    model = timm.create_model("l3rs_resnet_tiny", num_classes=25)
    opt = L3RS.from_pretrained("l3rs-general", model, total_steps=5, map_embeddings=False)
    assert torch.equal(opt.component_map, torch.arange(41))


def test_a_direction_can_be_replaced_by_one_that_extends_it() -> None:
    """load_net(..., directions=...) swaps adam for shampoo (its whitened extension): the
    network is untouched, Adam's meta-trained β1, β2, ε carry over, damping starts at its
    default; on a model without linear layers the two rules take the same steps, and a swap
    to a direction that does not extend the old one is refused."""
    from hf_l3rs.optim.config import ConfigError
    from hf_l3rs.optim.directions import get_direction

    fast = load_net(lineage("l3rs-kanji-fast"))
    whitened = load_net(lineage("l3rs-kanji-fast"), directions=["sgd", "shampoo"])
    assert whitened.config == fast.config.replace(directions=("sgd", "shampoo"))
    for key in ("weights.0", "biases.0", "weights.2", "embedding"):
        assert torch.equal(whitened.state_dict()[key], fast.state_dict()[key])
    old, new = fast.hyper_values(), whitened.hyper_values()
    assert {k: new["shampoo"][k] for k in ("beta1", "beta2", "eps")} == pytest.approx(old["adam"])
    assert new["shampoo"]["damping"] == pytest.approx(get_direction("shampoo").hyper_defaults["damping"].default)
    with pytest.raises(ConfigError, match="cannot replace"):
        load_net(lineage("l3rs-kanji-fast"), directions=["shampoo", "adam"])
    with pytest.raises(ConfigError, match="one for one"):
        load_net(lineage("l3rs-kanji-fast"), directions=["sgd"])
    with pytest.raises(ConfigError, match="unknown base direction 'shampo'"):
        load_net(lineage("l3rs-kanji-fast"), directions=["sgd", "shampo"])

    def conv_only() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten())

    steps = []
    for net in (fast, whitened):
        model = conv_only()
        opt = L3RS(model, net, total_steps=3, implementation="foreach")
        x = torch.randn(4, 1, 5, 5, generator=torch.Generator().manual_seed(1))
        for _ in range(3):
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step(loss=loss)
        steps.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*steps):
        torch.testing.assert_close(a, b)


def test_card_carries_model_index(tmp_path) -> None:
    """The card's header is ModelCardData's: ModelCard.load reads back the same EvalResults.
    Two evaluations on the same dataset type (A and C: kanji tasks, other checkpoints) stay
    two entries because their dataset config differs (the Hub merges by type, config, split)."""
    from huggingface_hub import ModelCard

    net = load_net(lineage("l3rs-kanji-tiny"))
    index = [
        {
            "name": "x",
            "results": [
                {
                    "task": {"type": "image-classification", "name": f"fine-tuning, evaluation {ev}"},
                    "dataset": {
                        "name": f"kanji ({ev})",
                        "type": "kanjivg-rendered",
                        "config": f"evaluation-{ev}",
                        "split": "meta-test",
                    },
                    "metrics": [{"type": "accuracy", "value": value, "name": "accuracy after 10 steps"}],
                }
                for ev, value in (("A", 0.5), ("C", 0.25))
            ],
        }
    ]
    save_net(net, tmp_path / "w", card={"model_index": index, "evaluation": "| a | b |", "datasets": ["kanjivg"]})
    text = (tmp_path / "w" / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["library_name"] == "hf_l3rs" and meta["datasets"] == ["kanjivg"] and meta["model-index"] == index
    card = ModelCard.load(tmp_path / "w" / "README.md")
    first, second = card.data.eval_results
    assert (first.metric_type, first.metric_value, first.dataset_type) == ("accuracy", 0.5, "kanjivg-rendered")
    assert (second.dataset_config, second.dataset_split, second.metric_value) == ("evaluation-C", "meta-test", 0.25)
    with pytest.raises(ValueError, match="dataset"):
        save_net(net, tmp_path / "bad", card={"model_index": [{"name": "x", "results": [{"task": {"type": "t"}}]}]})


class FakeApi:
    """Records what would be sent to the Hub."""

    calls: dict = {}

    def __init__(self, **kw):
        FakeApi.calls = {"init": kw}

    def create_repo(self, repo_id, **kw):
        FakeApi.calls["repo"] = (repo_id, kw)

    def create_branch(self, repo_id, branch, **kw):
        FakeApi.calls["branch"] = branch

    def upload_folder(self, **kw):
        from pathlib import Path

        FakeApi.calls["upload"] = kw
        folder = Path(kw["folder_path"])
        FakeApi.calls["files"] = sorted(
            p.name for p in folder.iterdir() if any(p.match(pattern) for pattern in kw["allow_patterns"])
        )
        return "https://huggingface.co/org/x/commit/1"


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return FakeApi


def test_push_to_hub_sends_only_safe_files(tmp_path, fake_hub) -> None:
    save_net(load_net(lineage("l3rs-kanji-tiny")), tmp_path / "w")
    (tmp_path / "w" / "evil.pkl").write_bytes(b"not uploaded")
    assert push_to_hub(tmp_path / "w", "org/x", token="t").endswith("/commit/1")
    assert fake_hub.calls["repo"][0] == "org/x" and fake_hub.calls["init"]["library_name"] == "hf_l3rs"
    assert fake_hub.calls["files"] == ["README.md", "config.json", "model.safetensors"]


def test_optimizer_push_entry_points(tmp_path, fake_hub) -> None:
    """Both of huggingface_hub's entry points: save_pretrained(push_to_hub=True) and
    push_to_hub(repo_id, ...), with its options; unknown arguments are an error."""
    opt = L3RS(small_cnn(), total_steps=3)
    url = opt.save_pretrained(tmp_path / "w", push_to_hub=True, repo_id="org/x", private=True)
    assert url.endswith("/commit/1") and fake_hub.calls["repo"] == ("org/x", {"private": True, "exist_ok": True})
    assert fake_hub.calls["files"] == ["README.md", "config.json", "model.safetensors"]
    opt.push_to_hub("org/y", create_pr=True, branch="dev", commit_message="m")
    upload = fake_hub.calls["upload"]
    assert fake_hub.calls["repo"][0] == "org/y" and fake_hub.calls["branch"] == "dev"
    assert upload["create_pr"] and upload["revision"] == "dev" and upload["commit_message"] == "m"
    assert fake_hub.calls["files"] == ["README.md", "config.json", "model.safetensors"]
    with pytest.raises(TypeError):
        opt.save_pretrained(tmp_path / "w", push_to_hb=True)


def test_unreachable_endpoint_names_repo_and_endpoint(tmp_path, monkeypatch) -> None:
    import socket

    from hf_l3rs.optim.hub import HubError

    with socket.socket() as s:  # a port nobody listens on: the connection is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    save_net(load_net(lineage("l3rs-kanji-tiny")), tmp_path / "w")
    with pytest.raises(HubError, match=rf"'org/x' at {endpoint}"):
        push_to_hub(tmp_path / "w", "org/x", token="hf_fake")


def test_misspelled_bundled_name_lists_the_bundled_ones() -> None:
    from hf_l3rs.optim.hub import CheckpointError

    with pytest.raises(CheckpointError, match=r"bundled: l3rs-general, l3rs-kanji-whiten"):
        load_net("l3rs-kanji-tny")


def test_resave_keeps_the_card_history_and_it_parses(tmp_path) -> None:
    from huggingface_hub import ModelCard

    original = (Path(lineage("l3rs-kanji-tiny")) / "README.md").read_text()
    model = small_cnn()
    L3RS.from_pretrained(lineage("l3rs-kanji-tiny"), model, total_steps=3).save_pretrained(tmp_path / "again")
    text = (tmp_path / "again" / "README.md").read_text()
    for section in ("## Meta-training", "## Evaluation"):
        kept = text.split(section, 1)[1].split("\n## ", 1)[0].strip()
        assert kept and kept == original.split(section, 1)[1].split("\n## ", 1)[0].strip()
    card = ModelCard.load(tmp_path / "again" / "README.md")
    results = card.data.eval_results
    recorded = yaml.safe_load(original.split("---")[1])["model-index"][0]["results"][0]["metrics"]
    assert [(r.metric_type, r.metric_value) for r in results] == [(m["type"], m["value"]) for m in recorded]


def test_resaving_loaded_meta_weights_keeps_what_they_were_trained_on(tmp_path) -> None:
    """A variant saved from loaded meta-weights (``save_net(load_net(name, field=...))``) lists the
    same trained components as the original, not none."""
    import json

    from hf_l3rs.optim.hub import BUNDLED_DIR, save_net

    save_net(load_net("l3rs-general", hypergradient_rate=0.3), tmp_path / "variant")
    listed = json.loads((BUNDLED_DIR / "l3rs-general" / "config.json").read_text())["trained_components"]
    saved = json.loads((tmp_path / "variant" / "config.json").read_text())
    assert listed and saved["trained_components"] == listed
    assert saved["l3rs"]["hypergradient_rate"] == 0.3


def test_unreachable_endpoint_on_download_is_not_called_offline(monkeypatch) -> None:
    import socket

    from hf_l3rs.optim.hub import CheckpointError, HubError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(HubError, match=rf"'org/missing' from {endpoint}"):
        load_net("org/missing", local_files_only=False)
    with pytest.raises(CheckpointError, match="local_files_only=True"):
        load_net("org/missing", local_files_only=True)


def test_bundled_general_weights_train_an_unseen_decoder_without_a_learning_rate() -> None:
    """l3rs-general (meta-trained with a decoder in the mixture) keeps only the hand-set options
    that earned their place on the dev split (docs/adr/0004): l3rs-kanji-pertensor's per-tensor
    rate adaptation, on its own θ (meta-trained with the target at 0, docs/adr/0016), its target
    at −0.05 and clamps at [1/10, 10] (docs/adr/0018); with no learning rate it trains a
    transformer it never saw (a two-layer Llama over bytes) without blowing up."""
    pytest.importorskip("transformers")
    from hf_l3rs.tasks.text import build_decoder, encode

    general, pertensor = load_net("l3rs-general"), load_net(lineage("l3rs-kanji-pertensor"))
    assert general.config.adapts and general.config.hypergradient_rate == 0.4
    assert general.config.adaptation_target == -0.05
    assert (general.config.adaptation_min, general.config.adaptation_max) == (0.1, 10.0)
    assert general.config.replace(num_components=None) == pertensor.config.replace(
        num_components=None, adaptation_target=-0.05, adaptation_min=0.1, adaptation_max=10.0
    )
    assert not torch.equal(general.get_flat(), pertensor.get_flat())
    torch.manual_seed(0)
    model = build_decoder(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2
    )
    opt = L3RS.from_pretrained("l3rs-general", model)  # no learning rate, no horizon
    text = encode("The quick brown fox jumps over the lazy dog. " * 8)[:257].long()
    batch = torch.stack([text[i : i + 65] for i in range(0, 192, 64)])
    losses = []
    for _ in range(20):
        out = model(input_ids=batch[:, :-1], labels=batch[:, :-1])
        opt.zero_grad()
        out.loss.backward()
        opt.step(loss=out.loss)
        losses.append(float(out.loss.detach()))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert losses[-1] < 0.9 * losses[0], losses
