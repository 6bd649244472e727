"""L3RS in transformers.Trainer and timm: parity with the plain loop, resume, registry."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from torch.utils.data import SequentialSampler  # noqa: E402

from hf_l3rs import L3RS, L3RSConfig  # noqa: E402


def tiny_bert(seed: int = 0, dropout: float = 0.0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=3,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    return BertForSequenceClassification(cfg)


def dataset(n: int = 24):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (n, 8), generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    return [
        {"input_ids": ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": labels[i]} for i in range(n)
    ]


class InOrderTrainer(transformers.Trainer):
    """Same data order as the plain loop (no shuffling)."""

    def _get_train_sampler(self, *args, **kwargs):
        return SequentialSampler(self.train_dataset)


def args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=6,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        lr_scheduler_type="constant",
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    base.update(kw)
    return transformers.TrainingArguments(**base)


CONFIG = L3RSConfig()


def plain_loop(steps: int = 6, accumulation: int = 1):
    model = tiny_bert()
    opt = L3RS(model, CONFIG, total_steps=steps, seed=1)
    data = dataset()
    k = 0
    for _ in range(steps):
        losses = []
        for _ in range(accumulation):
            batch = {key: torch.stack([d[key] for d in data[k : k + 4]]) for key in data[0]}
            k = (k + 4) % len(data)  # the sequential sampler starts over each epoch
            loss = model(**batch).loss
            (loss / accumulation).backward()
            losses.append(loss.detach())
        opt.step(loss=torch.stack(losses).mean())
        opt.zero_grad()
    return model


@pytest.mark.parametrize("accumulation", [1, 2])
def test_trainer_matches_plain_loop(tmp_path, accumulation) -> None:
    from hf_l3rs.trainer_plugins import L3RSCallback

    model = tiny_bert()
    opt = L3RS(model, CONFIG, seed=1)  # no total_steps, no loss glue: the callback and the hook
    trainer = InOrderTrainer(
        model=model,
        args=args(tmp_path, gradient_accumulation_steps=accumulation, max_grad_norm=1e9),
        train_dataset=dataset(),
        optimizers=(opt, None),
        callbacks=[L3RSCallback()],
    )
    if hasattr(trainer, "loss_is_scaled_for_ga"):
        # BERT accepts **kwargs, so this Trainer assumes it scaled the loss by num_items_in_batch
        # (it does not) and skips the 1/GA division; make it divide, as the plain loop does.
        trainer.loss_is_scaled_for_ga = False
    trainer.train()
    assert opt.total_steps == 6
    reference = plain_loop(accumulation=accumulation)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7), name


def test_plain_trainer_as_written(tmp_path, caplog) -> None:
    """Trainer(model=m, optimizers=(L3RS(m), None)) with the default linear schedule: the
    horizon comes from the scheduler (logged), the loss from the model output."""
    import logging

    model = tiny_bert()
    opt = L3RS(model, CONFIG, seed=1)
    trainer = InOrderTrainer(
        model=model, args=args(tmp_path, lr_scheduler_type="linear"), train_dataset=dataset(), optimizers=(opt, None)
    )
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert opt.total_steps == 6 and opt.state_dict()["l3rs"]["step"] == 6
    assert "taken from the attached learning-rate scheduler" in caplog.text


def test_trainer_resume_from_checkpoint_is_exact(tmp_path) -> None:
    from hf_l3rs.trainer_plugins import L3RSCallback

    def run(out, resume=None):
        model = tiny_bert()
        opt = L3RS(model, CONFIG, seed=1)
        trainer = InOrderTrainer(
            model=model,
            args=args(out, save_strategy="steps", save_steps=3),
            train_dataset=dataset(),
            optimizers=(opt, None),
            callbacks=[L3RSCallback()],
        )
        trainer.train(resume_from_checkpoint=resume)
        return model

    straight = run(tmp_path / "a")
    resumed = run(tmp_path / "b", resume=str(tmp_path / "a" / "checkpoint-3"))
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), name


def test_l3rs_trainer_keeps_learned_schedule(tmp_path) -> None:
    from hf_l3rs.trainer_plugins import L3RSTrainer

    model = tiny_bert()
    opt = L3RS(model, CONFIG, seed=1)
    trainer = L3RSTrainer(
        model=model, args=args(tmp_path, lr_scheduler_type="linear"), train_dataset=dataset(), optimizers=(opt, None)
    )
    trainer.train()
    assert opt.total_steps == 6
    assert all(g["lr"] == 1.0 for g in opt.param_groups)  # no linear decay applied on top


def test_optimizer_cls_and_kwargs(tmp_path) -> None:
    from hf_l3rs.trainer_plugins import L3RSCallback

    model = tiny_bert()
    trainer = transformers.Trainer(
        model=model,
        args=args(tmp_path),
        train_dataset=dataset(),
        optimizer_cls_and_kwargs=(L3RS, {"net": CONFIG}),
        callbacks=[L3RSCallback()],
    )
    trainer.train()
    from hf_l3rs.trainer_plugins import find_l3rs

    opt = find_l3rs(trainer.optimizer)
    assert opt is not None and opt.state_dict()["l3rs"]["step"] == 6


def test_timm_registry() -> None:
    timm = pytest.importorskip("timm")
    from hf_l3rs.trainer_plugins import register_timm

    register_timm()
    model = timm.create_model("resnet10t", num_classes=3)
    opt = timm.optim.create_optimizer_v2(model, "l3rs", lr=1.0, total_steps=5)
    assert isinstance(opt, L3RS)
    x = torch.randn(2, 3, 32, 32)
    loss = model(x).logsumexp(1).mean()
    loss.backward()
    opt.step(loss=loss)


def test_logs_carry_the_learned_rate_and_mixing(tmp_path) -> None:
    from hf_l3rs.trainer_plugins import L3RSCallback, L3RSTrainer

    for trainer_cls, callbacks in ((L3RSTrainer, None), (transformers.Trainer, [L3RSCallback()])):
        model = tiny_bert()
        opt = L3RS(model, CONFIG, seed=1)
        trainer = trainer_cls(
            model=model,
            args=args(tmp_path / trainer_cls.__name__, logging_strategy="steps", logging_steps=2),
            train_dataset=dataset(),
            optimizers=(opt, None),
            callbacks=callbacks,
        )
        trainer.train()
        logged = [h for h in trainer.state.log_history if "loss" in h]
        assert len(logged) == 3
        last = logged[-1]
        rate = opt.last_rate
        assert last["l3rs/rate_mean"] == pytest.approx(float(rate.mean()))
        assert last["l3rs/rate_min"] <= last["l3rs/rate_mean"] <= last["l3rs/rate_max"]
        assert sum(last[f"l3rs/mix_{d}"] for d in opt.direction_names) == pytest.approx(1.0)


def test_resume_with_a_longer_horizon_is_said(tmp_path, caplog) -> None:
    from hf_l3rs.trainer_plugins import L3RSCallback

    def run(out, max_steps, resume=None):
        model = tiny_bert()
        opt = L3RS(model, CONFIG, seed=1)
        trainer = transformers.Trainer(
            model=model,
            args=args(out, save_strategy="steps", save_steps=3, max_steps=max_steps),
            train_dataset=dataset(),
            optimizers=(opt, None),
            callbacks=[L3RSCallback()],
        )
        trainer.train(resume_from_checkpoint=resume)
        return opt

    run(tmp_path / "a", 6)
    with caplog.at_level("INFO", logger="hf_l3rs"):
        opt = run(tmp_path / "b", 9, resume=str(tmp_path / "a" / "checkpoint-3"))
    assert opt.total_steps == 9 and "horizon changed from 6 to" in caplog.text


def test_timm_with_weight_decay_keeps_names_roles_and_order() -> None:
    """timm regroups tensors into no-decay / decay groups: with model= L3RS still sees the
    model's names, roles and order, so trained meta-weights meet every tensor at its own
    embedding (identity mapping); each tensor keeps its group's weight decay."""
    timm = pytest.importorskip("timm")
    from hf_l3rs.trainer_plugins import register_timm

    register_timm()
    model = timm.create_model("resnet10t", num_classes=3)
    direct = L3RS(model, total_steps=5)
    opt = timm.optim.create_optimizer_v2(
        model, "l3rs", lr=1.0, weight_decay=0.05, total_steps=5, net=direct.net, model=model
    )
    assert [(c.name, c.role, c.depth) for c in opt.components] == [(c.name, c.role, c.depth) for c in direct.components]
    assert opt.component_map.tolist() == list(range(len(direct.components)))
    weight_decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    decay = {c.name: weight_decay[id(params[c.name])] for c in opt.components}
    assert decay["conv1.0.weight"] == 0.05 and decay["bn1.weight"] == 0.0 and decay["fc.bias"] == 0.0
    assert len(opt.param_groups) == 2 and [c.name for c in opt.components] == list(params)  # the model's order
    with pytest.raises(ValueError, match="do not belong to the model"):
        L3RS([torch.zeros(2, requires_grad=True)], model=model, total_steps=5)


def test_optimizer_cls_and_kwargs_with_model_gets_names(tmp_path) -> None:
    model = tiny_bert()
    trainer = transformers.Trainer(
        model=model,
        args=args(tmp_path),
        train_dataset=dataset(),
        optimizer_cls_and_kwargs=(L3RS, {"net": CONFIG, "model": model, "total_steps": 6}),
    )
    trainer.train()  # no callback: the loss hook comes from model=
    from hf_l3rs.trainer_plugins import find_l3rs

    opt = find_l3rs(trainer.optimizer)
    assert opt.state_dict()["l3rs"]["step"] == 6
    direct = L3RS(tiny_bert(), CONFIG, total_steps=6)
    assert [(c.name, c.role, c.depth) for c in opt.components] == [(c.name, c.role, c.depth) for c in direct.components]


@pytest.mark.parametrize("order", ["hf_l3rs first", "timm first"])
def test_timm_knows_l3rs_once_both_are_imported(order: str) -> None:
    """No register_timm() call and no transformers import: importing hf_l3rs and timm (either
    order) is enough for create_optimizer_v2(model, "l3rs", model=model)."""
    import subprocess
    import sys

    pytest.importorskip("timm")
    first, second = (
        ("import hf_l3rs", "import timm.optim") if order == "hf_l3rs first" else ("import timm.optim", "import hf_l3rs")
    )
    code = (
        f"import sys; {first}; {second}; import timm; "
        "m = timm.create_model('resnet10t', num_classes=3); "
        "o = timm.optim.create_optimizer_v2(m, 'l3rs', lr=1.0, total_steps=5, model=m); "
        "print(type(o).__mro__[1].__name__, o.components[0].name, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["L3RS", "conv1.0.weight", "False"]


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_the_one_liner_runs_with_any_scheduler_and_no_horizon(tmp_path, schedule: str) -> None:
    """Trainer(model, optimizers=(L3RS.from_pretrained(name, model), None)) with no
    total_steps: a decaying scheduler gives the horizon, a constant one leaves L3RS
    horizon-free; both train."""
    model = tiny_bert()
    opt = L3RS.from_pretrained("l3rs-general", model)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = transformers.Trainer(
        model=model, args=args(tmp_path, lr_scheduler_type=schedule), train_dataset=dataset(), optimizers=(opt, None)
    )
    trainer.train()
    assert opt.state_dict()["l3rs"]["step"] == 6
    assert opt.total_steps == (None if schedule == "constant" else 6)
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before))


def _train_logged(tmp_path, config: L3RSConfig, logging_steps: int) -> tuple[L3RS, list[dict]]:
    """Train tiny_bert with L3RSTrainer; the optimizer and the log entries of training steps."""
    from hf_l3rs.trainer_plugins import L3RSTrainer

    model = tiny_bert()
    opt = L3RS(model, config, seed=1)
    trainer = L3RSTrainer(
        model=model,
        args=args(tmp_path, logging_strategy="steps", logging_steps=logging_steps),
        train_dataset=dataset(),
        optimizers=(opt, None),
    )
    trainer.train()
    return opt, [h for h in trainer.state.log_history if "loss" in h]


def test_rate_adaptation_runs_in_trainer_and_logs_its_multiplier(tmp_path) -> None:
    """The no-learning-rate path inside Trainer: the multipliers move, are logged (geometric mean
    and range over tensors), and the run stays finite; nothing is logged without adaptation."""
    from trainer_plugins.transformers_trainer import learned_rate_stats

    opt, logged = _train_logged(tmp_path, CONFIG.replace(hypergradient_rate=0.5), logging_steps=2)
    last = logged[-1]
    assert last["l3rs/rate_multiplier"] == pytest.approx(opt.rate_multiplier)
    assert opt.rate_multiplier != 1.0
    spread = opt.rate_multipliers
    assert last["l3rs/rate_multiplier_min"] == pytest.approx(float(spread.min()))
    assert float(spread.min()) < float(spread.max())
    assert all(torch.isfinite(p).all() for group in opt.param_groups for p in group["params"])
    _, plain = _train_logged(tmp_path / "plain", CONFIG, logging_steps=2)
    assert all("l3rs/rate_multiplier" not in h for h in plain)
    assert learned_rate_stats(L3RS(torch.nn.Linear(2, 1), CONFIG)) == {}


def test_a_frozen_body_stays_frozen_and_in_inference_mode_under_trainer(tmp_path) -> None:
    """freeze_body + Trainer: only the classifier moves, and the dropout Trainer's
    model.train() would switch on in the body stays off (the measured probe's conditions)."""
    from hf_l3rs import freeze_body

    model = tiny_bert(dropout=0.5)
    assert freeze_body(model) is model.classifier
    body = {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith("classifier.")}
    head = model.classifier.weight.detach().clone()
    opt = L3RS.from_pretrained("l3rs-general", model)
    trainer = InOrderTrainer(model=model, args=args(tmp_path), train_dataset=dataset(), optimizers=(opt, None))
    trainer.train()
    assert [c.name for c in opt.components] == ["classifier.weight", "classifier.bias"]
    assert opt.state_dict()["l3rs"]["step"] == 6
    assert all(torch.equal(p, body[n]) for n, p in model.named_parameters() if n in body)
    assert not torch.equal(model.classifier.weight, head)
    model.train()
    batch = {key: torch.stack([d[key] for d in dataset()[:4]]) for key in dataset()[0]}
    assert torch.equal(model(**batch).logits, model(**batch).logits)
