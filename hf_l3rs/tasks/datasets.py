"""The one table of named image datasets: what a name in a config means.

A name is an *embedded* domain (rendered once from Debian/PyPI packages into a versioned HF
``datasets`` folder, see ``tasks/domains``) or a *Hub* dataset (id, split, columns). Each
entry also carries its calibrated task shape, class split and pretraining length, so a
config that says ``dataset: kanji`` gets the same tasks everywhere (meta-training,
evaluation, pretraining). Anything not named here is a folder or a Hub id, taken as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hf_l3rs.tasks.domains.spec import DomainSpec


@dataclass(frozen=True)
class DatasetEntry:
    """``render`` is set for embedded domains, ``hub_id`` for Hub datasets. ``task`` holds
    :class:`~hf_l3rs.tasks.images.ImageTaskSpec` fields calibrated on this dataset."""

    name: str
    render: DomainSpec | None = None
    hub_id: str | None = None
    split: str = "train"
    image_column: str = "image"
    label_column: str = "label"
    split_fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)
    task: dict[str, Any] = field(default_factory=dict)
    pretrain_steps: int | None = None

    def __post_init__(self) -> None:
        if (self.render is None) == (self.hub_id is None):
            raise ValueError(f"dataset {self.name!r}: give exactly one of render (embedded) or hub_id")

    @property
    def embedded(self) -> bool:
        return self.render is not None

    def task_spec_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """ImageTaskSpec fields: the calibrated ones, then ``overrides``."""
        return {**self.task, "split_fractions": self.split_fractions, **overrides}


# Calibrated on this CPU (docs/adr/0006): the best tuned Adam reaches roughly 60-85 % at
# the meta-training horizons (20-50 steps) on meta-test tasks, so optimizers can differ.
DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        # 400 characters: 200 pretrain, 100 meta-train, 100 meta-test; 25-way 3-shot tasks.
        DatasetEntry(
            "kanji",
            render=DomainSpec("kanji", num_classes=400, samples_per_class=30),
            task={"classes_per_task": 25, "train_per_class": 3, "eval_per_class": 4, "batch_size": 16},
            pretrain_steps=400,
        ),
        # 113 categories with >= 10 drawings: 45 pretrain, 34 meta-train, 34 meta-test, so
        # 8-way tasks still vary (C(34, 8) > 18M); 10 renders per class, each jittered.
        DatasetEntry(
            "clipart",
            render=DomainSpec("clipart", num_classes=None, samples_per_class=30),
            split_fractions=(0.4, 0.3, 0.3),
            task={"classes_per_task": 8, "train_per_class": 10, "eval_per_class": 4, "batch_size": 16},
            pretrain_steps=1000,
        ),
        # Evaluation only (never meta-trained or pretrained on): Fashion-MNIST photos, 10
        # classes of 60 images; 5 validation and 5 test classes, 5-way 10-shot tasks.
        DatasetEntry(
            "fashion",
            render=DomainSpec("fashion", num_classes=10, samples_per_class=60),
            split_fractions=(0.0, 0.5, 0.5),
            task={"classes_per_task": 5, "train_per_class": 10, "eval_per_class": 10, "batch_size": 16},
        ),
        DatasetEntry("imagenet-1k", hub_id="ILSVRC/imagenet-1k"),
        DatasetEntry("places365", hub_id="haideraltahan/wds_places365"),
    )
}

#: Names of the embedded (offline) domains.
EMBEDDED = tuple(name for name, entry in DATASETS.items() if entry.embedded)


def dataset_entry(name: str) -> DatasetEntry | None:
    """The table's entry for ``name``; ``None`` for a folder or a Hub id outside it."""
    return DATASETS.get(name)


def task_spec_kwargs(name: str, /, **overrides: Any) -> dict[str, Any]:
    """ImageTaskSpec fields for ``name`` (its calibrated ones, then ``overrides``)."""
    entry = dataset_entry(name)
    return entry.task_spec_kwargs(**overrides) if entry is not None else dict(overrides)
