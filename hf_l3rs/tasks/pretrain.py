"""Pretrain a timm model on a domain's pretrain classes (the paper's checkpoints per domain).

Writes ``model.safetensors`` (the full state dict; tasks replace the head) and
``config.json`` (model name, classes, image size, held-out accuracy, cost)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hf_l3rs.tasks.images import ClassSplits, DatasetError, decode_image, load_image_dataset


@dataclass(frozen=True)
class PretrainConfig:
    dataset: str = "kanji"
    model: str = "l3rs_resnet_tiny"
    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    image_size: int = 32
    channels: int = 3
    holdout_per_class: int = 4
    split_fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)
    split_seed: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("PretrainConfig.steps and batch_size must be >= 1")


def pretrain_config_for(dataset: str, **overrides: Any) -> PretrainConfig:
    """The calibrated pretraining of an embedded domain (its split and length)."""
    from hf_l3rs.tasks.datasets import dataset_entry

    entry = dataset_entry(dataset)
    values: dict[str, Any] = {"dataset": dataset}
    if entry is not None:
        values["split_fractions"] = tuple(entry.split_fractions)
        if entry.pretrain_steps is not None:
            values["steps"] = entry.pretrain_steps
    values.update({k: v for k, v in overrides.items() if v is not None})
    return PretrainConfig(**values)


def fit(
    batch_loss: Callable[[int], torch.Tensor],
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    steps: int,
    desc: str,
    progress: bool = True,
) -> None:
    """The pretraining loop both checkpoints share: ``steps`` updates on ``batch_loss(t)``,
    the scheduler stepped after each, the loss on the progress bar every 50 steps."""
    from tqdm.auto import tqdm

    bar = tqdm(range(steps), desc=desc, disable=not progress)
    for t in bar:
        loss = batch_loss(t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if t % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")


def pretrain(config: PretrainConfig, output_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    import timm

    import hf_l3rs.tasks.models  # noqa: F401

    start = time.perf_counter()
    ds = load_image_dataset(config.dataset)
    labels = [int(y) for y in ds["label"]]
    classes = ClassSplits(labels, config.split_fractions, config.split_seed).classes["pretrain"]
    if len(classes) < 2:
        raise DatasetError(f"{config.dataset}: the pretrain split has {len(classes)} class(es); need >= 2")
    new_label = {c: i for i, c in enumerate(classes)}
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        if y in new_label:
            by_class.setdefault(y, []).append(i)
    train_idx, hold_idx = [], []
    for c in classes:
        members = by_class[c]
        if len(members) <= config.holdout_per_class:
            raise DatasetError(f"{config.dataset}: class {c} has {len(members)} samples, need > holdout_per_class")
        hold_idx += members[: config.holdout_per_class]
        train_idx += members[config.holdout_per_class :]

    def tensors(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([decode_image(ds[i]["image"], config.image_size, config.channels) for i in idx])
        return x, torch.tensor([new_label[labels[i]] for i in idx])

    x_train, y_train = tensors(train_idx)
    x_hold, y_hold = tensors(hold_idx)
    torch.manual_seed(config.seed)
    model = timm.create_model(config.model, num_classes=len(classes), in_chans=config.channels)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / config.steps)))
    g = torch.Generator().manual_seed(config.seed)
    model.train()

    def batch_loss(_: int) -> torch.Tensor:
        idx = torch.randint(0, len(y_train), (config.batch_size,), generator=g)
        return nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])

    fit(batch_loss, opt, sched, config.steps, f"pretraining {config.model} on {config.dataset}", progress)
    model.eval()
    with torch.no_grad():
        acc = float((model(x_hold).argmax(1) == y_hold).float().mean())
        train_acc = float((model(x_train[:2000]).argmax(1) == y_train[:2000]).float().mean())
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    report = {
        "config": asdict(config),
        "num_classes": len(classes),
        "train_samples": len(train_idx),
        "heldout_samples": len(hold_idx),
        "heldout_accuracy": acc,
        "train_accuracy": train_acc,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out / "config.json").write_text(json.dumps(report, indent=1))
    return report
