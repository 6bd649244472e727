"""freeze_body: train only the head with L3RS, the body frozen in inference mode even under
``model.train()`` (Trainer calls it every step); the README's recipe gives the benchmark's
probe numbers."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from conftest import batch, small_cnn
from torch import nn

from hf_l3rs import L3RS, freeze_body, unfreeze_body
from hf_l3rs.probe import find_head


def test_the_body_stays_frozen_and_in_inference_mode_through_train() -> None:
    model = small_cnn()
    stats = model.bn1.running_mean.clone()
    head = freeze_body(model)
    assert head is model.head
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    model.train()  # what Trainer does before each step
    x, y = batch(0)
    out = model(x)
    assert torch.equal(model.bn1.running_mean, stats)  # BatchNorm neither used nor updated batch statistics
    assert not model.bn1.training and model.head.training
    reference = small_cnn()
    reference.eval()
    assert torch.allclose(out, reference(x))

    opt = L3RS.from_pretrained("l3rs-general", model, total_steps=3)
    assert [c.name for c in opt.components] == ["head.weight", "head.bias"]
    body = {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith("head.")}
    loss = nn.functional.cross_entropy(out, y)
    loss.backward()
    opt.step(loss=loss)
    assert all(torch.equal(p, body[n]) for n, p in model.named_parameters() if n in body)
    assert not torch.equal(model.head.weight, reference.head.weight)


def test_unfreeze_body_gives_back_what_freeze_body_took() -> None:
    """A probe, then the whole model (LP-FT): each tensor's own requires_grad comes back, and
    the body follows train() again."""
    model = small_cnn()
    model.conv1.weight.requires_grad_(False)  # frozen by the user before
    freeze_body(model)
    with pytest.raises(ValueError, match="frozen already"):
        freeze_body(model)
    model.train()
    unfreeze_body(model)
    assert model.bn1.training
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["conv1.weight"]
    stats = model.bn1.running_mean.clone()
    model(batch(0)[0])
    assert not torch.equal(model.bn1.running_mean, stats)  # batch statistics again
    with pytest.raises(ValueError, match="was not called"):
        unfreeze_body(model)


def test_a_frozen_model_still_pickles_and_copies() -> None:
    model = small_cnn()
    freeze_body(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    twin = copy.deepcopy(model)
    for m in (loaded, twin):
        m.train()
        m(batch(0)[0])
        assert not m.bn1.training


def test_heads_are_found_by_convention_or_asked_for() -> None:
    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Linear(4, 4)
            self.classifier = nn.Linear(4, 2)

    model = Classifier()
    assert find_head(model) is model.classifier
    with pytest.raises(ValueError, match="pass head="):
        find_head(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="not a submodule"):
        freeze_body(model, head=nn.Linear(4, 2))
    seq = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    assert freeze_body(seq, head=seq[2]) is seq[2]
    seq.train()
    x = torch.ones(3, 4)
    assert torch.equal(seq(x), seq(x))  # the frozen body's dropout is off


def test_the_readme_recipe_gives_the_benchmarks_probe(tiny_scratch_protocol) -> None:
    """A plain loop over the whole model after freeze_body, in training mode, equals the
    benchmark's L3RS probe, which trains the head on features computed once."""
    from hf_l3rs.evaluation.optimizers import L3RSEntry
    from hf_l3rs.optim.hub import load_net

    proto = tiny_scratch_protocol
    task = proto.family(None, "D1").sample(1, "val")
    net = load_net("l3rs-kanji-whiten")
    loss_ref, acc_ref = proto.run_optimizer(L3RSEntry("probe", head_only=True, net=net), task, [3])[3]

    model = task.init_model()
    freeze_body(model)
    opt = L3RS(model, net, total_steps=3)
    for t in range(3):
        model.train()
        loss = task.loss(model, task.train_batch(t))
        opt.zero_grad()
        loss.backward()
        opt.step(loss=loss.detach())
    model.eval()
    with torch.no_grad():
        logits = model(task.eval_x)
    assert math.isfinite(loss_ref)
    assert float(nn.functional.cross_entropy(logits, task.eval_y)) == pytest.approx(loss_ref, rel=1e-5)
    assert float((logits.argmax(1) == task.eval_y).float().mean()) == pytest.approx(acc_ref)
