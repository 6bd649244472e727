"""The text task family: a pretrained decoder fine-tuned on standard-library docstrings."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hf_l3rs import L3RS
from hf_l3rs.tasks.inner_loop import run_task
from hf_l3rs.tasks.registry import get_family
from hf_l3rs.tasks.text import TextTaskFamily, TextTaskSpec, encode, pydoc_topics, stdlib_docstrings
from hf_l3rs.tasks.text_pretrain import DecoderPretrainConfig, pretrain_decoder

SMALL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("decoder")
    report = pretrain_decoder(
        DecoderPretrainConfig(steps=3, batch_size=4, warmup=1, decoder=SMALL), out, progress=False
    )
    return out / "model.safetensors", report


def test_corpora_are_bytes_of_the_standard_library():
    docs = stdlib_docstrings()
    assert len(docs) >= 20 and all(len(text) >= 4000 for text in docs.values())
    assert "typing" in docs  # a module with long docstrings on every CPython 3.10+
    ids = encode("é a")
    assert ids.tolist() == [0xC3, 0xA9, 0x20, 0x61]  # UTF-8 bytes
    assert len(pydoc_topics()) > 100_000


def test_pools_are_disjoint_and_splits_draw_from_their_own():
    family = TextTaskFamily(TextTaskSpec(k_min=5, k_max=7))
    train_pool, test_pool = set(family.pools["meta_train"]), set(family.pools["meta_test"])
    assert not train_pool & test_pool and train_pool | test_pool == set(family.documents)
    assert {family.sample(i, "train").module for i in range(20)} <= train_pool
    assert {family.sample(i, "val").module for i in range(20)} <= train_pool
    assert {family.sample(i, "test").module for i in range(20)} <= test_pool


def test_a_task_is_determined_by_its_seed_and_holds_out_the_last_quarter():
    family = TextTaskFamily(TextTaskSpec(k_min=5, k_max=50, eval_windows=4))
    a, b = family.sample(3, "train"), family.sample(3, "train")
    assert a.module == b.module and a.num_steps == b.num_steps and 5 <= a.num_steps <= 50
    assert torch.equal(a.train_batch(7), b.train_batch(7)) and not torch.equal(a.train_batch(7), a.train_batch(8))
    data = encode(family.documents[a.module])
    cut = 3 * len(data) // 4
    assert torch.equal(a.train_tokens, data[:cut])
    held = data[cut:]
    for window in a.eval_tokens:  # each evaluation window is a slice of the held-out quarter
        n = len(window)
        assert any(torch.equal(window, held[i : i + n].long()) for i in range(len(held) - n + 1))
    assert a.train_batch(0).shape == (8, 65)


def test_pretrained_checkpoint_round_trips_with_its_shape(checkpoint):
    path, report = checkpoint
    assert report["decoder"]["hidden_size"] == 32 and math.isfinite(report["heldout_loss"])
    family = get_family("text", checkpoint=str(path), k_min=4, k_max=4, name="text-test")
    task = family.sample(0, "train")
    model = task.init_model()
    from safetensors.torch import load_file

    saved = load_file(str(path))
    assert "lm_head.weight" not in saved  # tied: saved once
    assert torch.equal(model.model.embed_tokens.weight, saved["model.embed_tokens.weight"])
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_adamw_and_l3rs_fine_tune_the_decoder(checkpoint):
    path, _ = checkpoint
    family = get_family("text", checkpoint=str(path), k_min=6, k_max=6)
    task = family.sample(1, "train")
    before = run_task(task, lambda m, s: torch.optim.SGD(m.parameters(), lr=0.0), num_steps=1)
    adamw = run_task(task, lambda m, s: torch.optim.AdamW(m.parameters(), lr=1e-2))
    assert adamw.eval_loss < before.eval_loss and 0.0 <= adamw.eval_accuracy <= 1.0
    l3rs = run_task(task, lambda m, s: L3RS(m, total_steps=s))
    assert not l3rs.diverged and math.isfinite(l3rs.eval_loss)


def test_a_checkpoint_without_its_shape_record_is_refused(checkpoint, tmp_path):
    path, _ = checkpoint
    (tmp_path / "model.safetensors").write_bytes(path.read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ValueError, match="no 'decoder'"):
        TextTaskFamily(TextTaskSpec(), checkpoint=str(tmp_path / "model.safetensors"))
    missing = TextTaskFamily(TextTaskSpec(), checkpoint=str(tmp_path / "absent" / "model.safetensors"))
    with pytest.raises(FileNotFoundError, match="hf-l3rs pretrain --domains pydoc"):
        missing.sample(0).init_model()
