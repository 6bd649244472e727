"""Evaluation with BatchNorm statistics re-estimated on the task's training images
(hf_l3rs/tasks/batchnorm.py): the statistics are those of the inputs, nothing leaks into
training, and a task spec selects it."""

from __future__ import annotations

import copy
from dataclasses import asdict

import pytest
import torch
from conftest import small_cnn
from torch import nn

from hf_l3rs.tasks.batchnorm import recalibrated_batchnorm


def _drift(model: nn.Module) -> nn.Module:
    """Move the weights away from the statistics the running buffers hold."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def test_statistics_are_those_of_the_inputs_and_everything_is_restored() -> None:
    model = _drift(small_cnn())
    model.bn1.running_mean.fill_(5.0)
    model.bn1.momentum = 0.25
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = model.conv1(inputs)  # what bn1 normalises
    with recalibrated_batchnorm(model, inputs, chunk=16) as m:
        assert not m.bn1.training
        # chunks of 16, 16, 8: the cumulative average of per-chunk means and unbiased variances
        chunks = features.split(16)
        mean = sum(c.mean(dim=(0, 2, 3)) for c in chunks) / len(chunks)
        var = sum(c.var(dim=(0, 2, 3), unbiased=True) for c in chunks) / len(chunks)
        torch.testing.assert_close(m.bn1.running_mean, mean)
        torch.testing.assert_close(m.bn1.running_var, var)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.bn1.momentum == 0.25 and not model.training


def test_evaluation_equals_torch_update_bn() -> None:
    model = _drift(small_cnn())
    inputs = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    probe = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    reference = copy.deepcopy(model)
    torch.optim.swa_utils.update_bn([inputs], reference)
    reference.eval()
    with torch.no_grad(), recalibrated_batchnorm(model, inputs):
        ours = model(probe)
    with torch.no_grad():
        torch.testing.assert_close(ours, reference(probe))
        assert not torch.allclose(model(probe), ours)  # the running statistics differ outside


def test_a_model_without_batchnorm_is_untouched() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)).eval()
    x = torch.randn(5, 4)
    with torch.no_grad(), recalibrated_batchnorm(model, x) as m:
        torch.testing.assert_close(m(x), model(x))


def test_spec_rejects_an_unknown_mode_and_the_cli_offers_the_known_ones() -> None:
    from hf_l3rs.cli import EVAL_BATCHNORM_CHOICES
    from hf_l3rs.tasks.batchnorm import EVAL_BATCHNORM
    from hf_l3rs.tasks.images import ImageTaskSpec

    assert EVAL_BATCHNORM_CHOICES == EVAL_BATCHNORM

    with pytest.raises(ValueError, match="eval_batchnorm"):
        ImageTaskSpec(eval_batchnorm="precise")


def test_recalibrated_tasks_train_identically_and_evaluate_otherwise(tiny_kanji) -> None:
    from hf_l3rs.registry import parse_optimizer
    from hf_l3rs.tasks.images import ImageTaskFamily, ImageTaskSpec, load_image_dataset
    from hf_l3rs.tasks.inner_loop import run_task

    ds = load_image_dataset(str(tiny_kanji))
    results, models = {}, {}
    adam = parse_optimizer("adam-const-1e-2").factory()
    for mode in ("running", "recalibrated"):
        spec = ImageTaskSpec(
            classes_per_task=2,
            batch_size=4,
            k_min=3,
            k_max=3,
            train_per_class=3,
            eval_per_class=2,
            image_size=16,
            channels=1,
            eval_batchnorm=mode,
        )
        task = ImageTaskFamily(ds, spec, model_name="resnet10t").sample(0, "train")

        def make(model: nn.Module, total: int | None, mode: str = mode) -> torch.optim.Optimizer:
            models[mode] = model
            return adam(model, total)

        results[mode] = run_task(task, make, eval_steps=[1, 2])
    run, recal = results["running"], results["recalibrated"]
    assert run.train_losses == recal.train_losses
    # the evaluations at steps 1, 2 and 3 left the model's own statistics as training made them
    buffers = [dict(m.named_buffers()) for m in (models["running"], models["recalibrated"])]
    assert all(torch.equal(buffers[0][k], buffers[1][k]) for k in buffers[0])
    assert run.eval_loss != recal.eval_loss and run.curve[1] != recal.curve[1]


def test_the_option_reaches_every_image_family_of_a_benchmark_or_mixture() -> None:
    from hf_l3rs.evaluation.tuned import TunedConfig, _baseline_config
    from hf_l3rs.tasks.registry import with_image_option

    cfg = TunedConfig(task_specs={"kanji": {"train_per_class": 5}})
    recal = cfg.with_task_option("eval_batchnorm", "recalibrated")
    assert recal.task_specs == {
        "kanji": {"train_per_class": 5, "eval_batchnorm": "recalibrated"},
        "clipart": {"eval_batchnorm": "recalibrated"},
    }
    assert cfg.task_specs == {"kanji": {"train_per_class": 5}}  # a new config, the old one kept
    assert _baseline_config(asdict(recal)) != _baseline_config(asdict(cfg))  # no baseline reuse across it
    # the default written out (`--eval-batchnorm running`) is the same configuration: reused
    explicit = cfg.with_task_option("eval_batchnorm", "running")
    assert _baseline_config(asdict(explicit)) == _baseline_config(asdict(cfg))
    # kanji's calibrated train_per_class is 3: written out it changes nothing, 20 (the generic default) does
    assert _baseline_config(asdict(TunedConfig(task_specs={"kanji": {"train_per_class": 3}}))) == _baseline_config(
        asdict(TunedConfig())
    )
    assert _baseline_config(asdict(TunedConfig(task_specs={"kanji": {"train_per_class": 20}}))) != _baseline_config(
        asdict(TunedConfig())
    )

    mixture = {"members": [{"family": "images", "dataset": "kanji"}, {"family": "text", "weight": 2}]}
    out = with_image_option("mixture", mixture, "eval_batchnorm", "recalibrated")
    assert out["members"] == [
        {"family": "images", "dataset": "kanji", "eval_batchnorm": "recalibrated"},
        {"family": "text", "weight": 2},
    ]
    assert with_image_option("images", {"dataset": "kanji"}, "eval_batchnorm", "running") == {
        "dataset": "kanji",
        "eval_batchnorm": "running",
    }
    assert with_image_option("text", {"k_max": 5}, "eval_batchnorm", "running") == {"k_max": 5}
