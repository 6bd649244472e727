"""Image tasks from an HF dataset in the Hub's parquet layout, offline, and the
resnet34-imagenet config's dry run on such a stand-in."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _standin(folder: Path, classes: int = 12, per_class: int = 6, size: int = 16) -> Path:
    """A tiny image dataset written like a Hub repo: data/train-00000-of-00001.parquet."""
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    images, labels = [], []
    for c in range(classes):
        base = torch.rand(3, generator=g)
        for _ in range(per_class):
            arr = (base[:, None, None] * 200 + 40 * torch.rand(3, size, size, generator=g)).clamp(0, 255)
            img = Image.fromarray(arr.permute(1, 2, 0).to(torch.uint8).numpy())
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            images.append({"bytes": buf.getvalue(), "path": None})
            labels.append(c)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=classes)})
    ds = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
    (folder / "data").mkdir(parents=True)
    ds.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def test_hub_parquet_layout_loads_and_tasks_are_deterministic(tmp_path) -> None:
    from hf_l3rs.tasks.images import ImageTaskFamily, ImageTaskSpec, load_image_dataset

    ds = load_image_dataset(str(_standin(tmp_path / "hub")))
    assert len(ds) == 72
    spec = ImageTaskSpec(
        classes_per_task=3,
        batch_size=4,
        k_min=2,
        k_max=3,
        train_per_class=3,
        eval_per_class=2,
        image_size=16,
        split_fractions=(0.5, 0.25, 0.25),
    )
    fam = ImageTaskFamily(ds, spec, model_name="resnet10t")
    splits = fam.class_splits.classes
    assert sum(len(v) for v in splits.values()) == 12
    assert not (
        set(splits["pretrain"]) & set(splits["meta_train"]) or set(splits["meta_train"]) & set(splits["meta_test"])
    )
    a, b = fam.sample(5, "train"), fam.sample(5, "train")
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.eval_y, b.eval_y)
    assert torch.equal(a.train_batch(1)[0], b.train_batch(1)[0])
    m1, m2 = a.init_model(), b.init_model()
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    assert not torch.equal(fam.sample(6, "train").train_x, a.train_x)


def test_too_few_classes_is_a_clear_error(tmp_path) -> None:
    from hf_l3rs.tasks.images import DatasetError, ImageTaskFamily, ImageTaskSpec, load_image_dataset

    ds = load_image_dataset(str(_standin(tmp_path / "hub")))
    with pytest.raises(DatasetError, match="fewer than classes_per_task"):
        ImageTaskFamily(ds, ImageTaskSpec(classes_per_task=5, train_per_class=2, eval_per_class=2))
    with pytest.raises(DatasetError, match="fewer than"):
        ImageTaskFamily(ds, ImageTaskSpec(classes_per_task=3, train_per_class=10, eval_per_class=2))


def test_resnet34_imagenet_config_dry_run(tmp_path) -> None:
    """The paper-scale config builds everything and runs one generation on a stand-in."""
    from hf_l3rs.meta.cli import main

    standin = _standin(tmp_path / "standin", classes=100, per_class=4, size=8)
    out = tmp_path / "run"
    main(
        [
            "--config",
            str(ROOT / "examples" / "configs" / "resnet34-imagenet.yaml"),
            "--output",
            str(out),
            "--dry-run",
            "--dataset",
            str(standin),
            "--no-trackers",
            "--threads",
            "2",
        ]
    )
    assert (out / "final" / "model.safetensors").is_file()
    assert (out / "checkpoint" / "trainer.json").is_file()


def test_save_to_disk_dataset_dict_folder(tmp_path) -> None:
    import datasets

    from hf_l3rs.tasks.images import DatasetError, load_image_dataset

    ds = load_image_dataset(str(_standin(tmp_path / "hub")))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dict"))
    assert len(load_image_dataset(str(tmp_path / "dict"))) == 72
    with pytest.raises(DatasetError, match="no split 'validation'"):
        load_image_dataset(str(tmp_path / "dict"), split="validation")


def test_a_folder_draws_the_same_tasks_wherever_it_lies(tmp_path) -> None:
    """Families name a local folder by its own name, not its path: the processes of a
    distributed run, or a moved folder, draw the same tasks (seeds hash the name)."""
    import shutil

    from hf_l3rs.tasks.images import dataset_name
    from hf_l3rs.tasks.registry import get_family

    here = _standin(tmp_path / "a" / "shapes")
    there = tmp_path / "elsewhere" / "deeper" / "shapes"
    shutil.copytree(here, there)
    assert dataset_name(str(here)) == dataset_name(str(there)) == "shapes"
    assert dataset_name("kanji") == "kanji" and dataset_name("org/not-here") == "org/not-here"
    kw = dict(classes_per_task=3, batch_size=4, k_min=2, k_max=3, train_per_class=3, eval_per_class=2, image_size=16)
    kw["split_fractions"] = (0.5, 0.25, 0.25)
    a = get_family("images", dataset=str(here), model="resnet10t", **kw).sample(3, "val")
    b = get_family("images", dataset=str(there), model="resnet10t", **kw).sample(3, "val")
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.eval_y, b.eval_y)
    other = _standin(tmp_path / "b" / "other")
    c = get_family("images", dataset=str(other), model="resnet10t", **kw).sample(3, "val")
    assert not torch.equal(a.train_x, c.train_x)
