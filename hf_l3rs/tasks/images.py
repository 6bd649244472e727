"""Image-classification fine-tuning tasks (docs/design.md §3) from any HF image dataset.

The same code reads ``ILSVRC/imagenet-1k`` from the Hub, a Places365 copy, a folder written
by ``Dataset.save_to_disk``, or a folder in the Hub's parquet layout. Classes are split by a
seeded permutation into pretrain / meta-train / meta-test; a task draws N classes of a
split, K training batches of B samples, an evaluation batch of held-out samples of those
classes, and a freshly initialised N-way head seeded per task. Images are decoded once
(per sample, cached) into tensors, so the model dominates the step time.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hf_l3rs.seeding import task_seed
from hf_l3rs.tasks.base import Task, TaskFamily
from hf_l3rs.tasks.batchnorm import EVAL_BATCHNORM, recalibrated_batchnorm


class DatasetError(ValueError):
    """The dataset cannot serve the requested tasks (missing columns, too few classes...)."""


def load_image_dataset(source: str, split: str = "train", image_column: str = "image", label_column: str = "label"):
    """A ``datasets.Dataset`` from a name of the dataset table (``tasks/datasets.py``), a
    ``save_to_disk`` folder, a folder of parquet files (Hub layout) or a Hub id (resolved
    through the HF cache)."""
    import datasets

    from hf_l3rs.tasks.datasets import dataset_entry
    from hf_l3rs.tasks.domains import prepare_domain

    entry = dataset_entry(source)
    if entry is not None and entry.embedded:
        source = str(prepare_domain(source))
    elif entry is not None:
        source, split = entry.hub_id, entry.split
        image_column, label_column = entry.image_column, entry.label_column
    path = Path(source)
    if any((path / marker).is_file() for marker in ("state.json", "dataset_info.json", "dataset_dict.json")):
        ds = datasets.load_from_disk(str(path))  # a Dataset or DatasetDict written by save_to_disk
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise DatasetError(f"{path}: no split {split!r} (splits: {list(ds)})")
            ds = ds[split]
    elif path.is_dir():
        files = sorted(str(p) for p in path.rglob("*.parquet") if split in p.name or split in p.parent.name)
        if not files:
            raise DatasetError(f"{path}: no parquet files for split {split!r}")
        ds = datasets.load_dataset("parquet", data_files={split: files}, split=split)
    else:
        try:
            ds = datasets.load_dataset(source, split=split)
        except Exception as exc:
            raise DatasetError(f"cannot load dataset {source!r} (split {split!r}): {exc}") from exc
    for col in (image_column, label_column):
        if col not in ds.column_names:
            raise DatasetError(f"dataset {source!r} has no column {col!r} (columns: {ds.column_names})")
    if len(ds) == 0:
        raise DatasetError(f"dataset {source!r} split {split!r} is empty")
    if image_column != "image" or label_column != "label":
        ds = ds.rename_columns({image_column: "image", label_column: "label"})
    return ds


def dataset_name(source: str) -> str:
    """The name a family over ``source`` is known by, and seeds its tasks with: a local
    folder's own name rather than its path, so that the same data in another place (another
    machine of a distributed run, a moved folder) draws the same tasks; names of the dataset
    table and Hub ids as given."""
    path = Path(source).expanduser()
    return (path.resolve().name if path.exists() else "") or source


def decode_image(img, size: int, channels: int) -> Tensor:
    """PIL image -> float tensor [channels, size, size], roughly zero-mean, unit-scale."""
    img = img.convert("L" if channels == 1 else "RGB").resize((size, size))
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).float() / 255.0
    return (t.view(size, size, channels).permute(2, 0, 1) - 0.5) / 0.25


def head_name(model: nn.Module) -> str:
    """Module name of the classifier (``fc`` for timm ResNets)."""
    head = model.get_classifier()
    return next(name for name, m in model.named_modules() if m is head)


@dataclass(frozen=True)
class ImageTaskSpec:
    classes_per_task: int = 25
    batch_size: int = 32
    k_min: int = 50
    k_max: int = 100
    eval_per_class: int = 4
    train_per_class: int = 20
    image_size: int = 32
    channels: int = 3
    split_fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)  # pretrain, meta-train, meta-test
    split_seed: int = 0
    #: BatchNorm statistics at evaluation: ``running`` (the model's own, as ``model.eval()``
    #: leaves them) or ``recalibrated`` (re-estimated on the task's training images at the
    #: evaluated weights; hf_l3rs/tasks/batchnorm.py)
    eval_batchnorm: str = "running"

    def __post_init__(self) -> None:
        # YAML and JSON give lists; keep the frozen spec hashable.
        object.__setattr__(self, "split_fractions", tuple(self.split_fractions))
        if self.classes_per_task < 2:
            raise ValueError("ImageTaskSpec.classes_per_task must be >= 2")
        if not 0 < self.k_min <= self.k_max:
            raise ValueError("ImageTaskSpec needs 0 < k_min <= k_max")
        if abs(sum(self.split_fractions) - 1.0) > 1e-6:
            raise ValueError("ImageTaskSpec.split_fractions must sum to 1")
        if self.eval_batchnorm not in EVAL_BATCHNORM:
            raise ValueError(
                f"ImageTaskSpec.eval_batchnorm must be one of {EVAL_BATCHNORM}, got {self.eval_batchnorm!r}"
            )


class ClassSplits:
    """Seeded permutation of the label set into three disjoint class lists."""

    NAMES = ("pretrain", "meta_train", "meta_test")

    def __init__(self, labels: list[int], fractions: tuple[float, float, float], seed: int) -> None:
        uniq = sorted(set(labels))
        perm = torch.randperm(len(uniq), generator=torch.Generator().manual_seed(seed)).tolist()
        shuffled = [uniq[i] for i in perm]
        a = round(fractions[0] * len(uniq))
        b = a + round(fractions[1] * len(uniq))
        self.classes = {"pretrain": shuffled[:a], "meta_train": shuffled[a:b], "meta_test": shuffled[b:]}


class ImageTaskFamily(TaskFamily):
    """Tasks over one dataset and one checkpoint. Splits: ``train``/``val`` draw meta-train
    classes (different seeds), ``test`` draws meta-test classes; ``pretrain`` is for
    pretraining only."""

    splits = ("train", "val", "test")

    def __init__(
        self,
        dataset,
        spec: ImageTaskSpec,
        model_name: str = "resnet18",
        checkpoint: str | None = None,
        name: str = "images",
        image_cache: dict[int, Tensor] | None = None,
    ) -> None:
        """``image_cache`` lets families over the same dataset and image spec share decoded
        images (the evaluation protocol builds one family per checkpoint)."""
        self.ds, self.spec, self.model_name, self.checkpoint, self.name = dataset, spec, model_name, checkpoint, name
        labels = list(dataset["label"])
        self.by_class: dict[int, list[int]] = {}
        for i, y in enumerate(labels):
            self.by_class.setdefault(int(y), []).append(i)
        self.class_splits = ClassSplits(labels, spec.split_fractions, spec.split_seed)
        need = spec.train_per_class + spec.eval_per_class
        for split in ("meta_train", "meta_test"):
            classes = self.class_splits.classes[split]
            if len(classes) < spec.classes_per_task:
                raise DatasetError(
                    f"{name}: split {split} has {len(classes)} classes, fewer than "
                    f"classes_per_task={spec.classes_per_task}"
                )
            short = [c for c in classes if len(self.by_class[c]) < need]
            if short:
                raise DatasetError(
                    f"{name}: class(es) {short[:5]} of {split} have fewer than {need} samples "
                    f"(train_per_class + eval_per_class)"
                )
        self._cache: dict[int, Tensor] = {} if image_cache is None else image_cache
        self._backbone: dict[str, Tensor] | None = None

    def image(self, index: int) -> Tensor:
        """Decoded, resized, normalised image (cached)."""
        if index not in self._cache:
            self._cache[index] = decode_image(self.ds[index]["image"], self.spec.image_size, self.spec.channels)
        return self._cache[index]

    def backbone_state(self) -> dict[str, Tensor] | None:
        if self.checkpoint is None:
            return None
        if self._backbone is None:
            from safetensors.torch import load_file

            self._backbone = load_file(self.checkpoint)
        return self._backbone

    def sample(self, seed: int, split: str = "train") -> Task:
        self.check_split(split)
        spec = self.spec
        s = task_seed(self.name, split, seed)
        g = torch.Generator().manual_seed(s)
        pool = self.class_splits.classes["meta_test" if split == "test" else "meta_train"]
        chosen = [pool[i] for i in torch.randperm(len(pool), generator=g)[: spec.classes_per_task].tolist()]
        train_idx, train_lab, eval_idx, eval_lab = [], [], [], []
        for new_label, c in enumerate(chosen):
            members = self.by_class[c]
            order = torch.randperm(len(members), generator=g).tolist()
            ev = order[: spec.eval_per_class]
            tr = order[spec.eval_per_class : spec.eval_per_class + spec.train_per_class]
            eval_idx += [members[i] for i in ev]
            eval_lab += [new_label] * len(ev)
            train_idx += [members[i] for i in tr]
            train_lab += [new_label] * len(tr)
        steps = int(torch.randint(spec.k_min, spec.k_max + 1, (1,), generator=g))
        return ImageTask(self, s, steps, train_idx, train_lab, eval_idx, eval_lab)


class ImageTask(Task):
    def __init__(
        self, family: ImageTaskFamily, seed: int, num_steps: int, train_idx, train_lab, eval_idx, eval_lab
    ) -> None:
        self.family, self.seed, self.num_steps = family, seed, num_steps
        self.train_x = torch.stack([family.image(i) for i in train_idx])
        self.train_y = torch.tensor(train_lab)
        self.eval_x = torch.stack([family.image(i) for i in eval_idx])
        self.eval_y = torch.tensor(eval_lab)

    def init_model(self) -> nn.Module:
        """The task's initial model (a copy of one built once per task: same weights)."""
        if getattr(self, "_template", None) is None:
            self._template = self._build_model()
        return copy.deepcopy(self._template)

    def _build_model(self) -> nn.Module:
        import timm

        import hf_l3rs.tasks.models  # noqa: F401  (registers the small CPU models)

        spec = self.family.spec
        torch.manual_seed(self.seed % (2**63))  # random-init backbones are seeded per task too
        model = timm.create_model(self.family.model_name, num_classes=spec.classes_per_task, in_chans=spec.channels)
        state = self.family.backbone_state()
        if state is not None:
            prefix = head_name(model) + "."
            backbone = {k: v for k, v in state.items() if not k.startswith(prefix)}
            try:
                result = model.load_state_dict(backbone, strict=False)
            except RuntimeError as exc:
                raise DatasetError(
                    f"checkpoint {self.family.checkpoint} does not match {self.family.model_name}: {exc}"
                ) from exc
            missing = [k for k in result.missing_keys if not k.startswith(prefix)]
            if missing or result.unexpected_keys:
                raise DatasetError(
                    f"checkpoint {self.family.checkpoint} does not match {self.family.model_name}: "
                    f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
                )
        g = torch.Generator().manual_seed(self.seed % (2**63))
        head = model.get_classifier()
        with torch.no_grad():
            bound = 1.0 / head.in_features**0.5
            head.weight.copy_((torch.rand(head.weight.shape, generator=g) * 2 - 1) * bound)
            head.bias.zero_()
        return model

    def batch_indices(self, step: int) -> Tensor:
        """Which training samples form the batch of ``step`` (same for every optimizer)."""
        g = torch.Generator().manual_seed((self.seed + 104729 * (step + 1)) % (2**63))
        return torch.randint(0, len(self.train_y), (self.family.spec.batch_size,), generator=g)

    def train_batch(self, step: int) -> tuple[Tensor, Tensor]:
        idx = self.batch_indices(step)
        return self.train_x[idx], self.train_y[idx]

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    def evaluate(self, model: nn.Module) -> tuple[float, float | None]:
        recalibrate = self.family.spec.eval_batchnorm == "recalibrated"
        with recalibrated_batchnorm(model, self.train_x) if recalibrate else nullcontext():
            out = model(self.eval_x)
        return float(nn.functional.cross_entropy(out, self.eval_y)), float(
            (out.argmax(1) == self.eval_y).float().mean()
        )
