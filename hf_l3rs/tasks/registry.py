"""Task families by name (meta-training and evaluation configs refer to them)."""

from __future__ import annotations

from typing import Any

from hf_l3rs.tasks.base import TaskFamily
from hf_l3rs.tasks.classic import CLASSIC_FAMILIES, classic_family

IMAGE_FAMILY = "images"


def get_family(name: str, **kwargs: Any) -> TaskFamily:
    """A registered family. Classic ones combine with ``+`` into a mixture; ``images``
    takes ``dataset`` (preset, folder or Hub id), ``model``, ``checkpoint`` and the fields
    of :class:`~hf_l3rs.tasks.images.ImageTaskSpec`."""
    if name == IMAGE_FAMILY:
        from hf_l3rs.tasks.datasets import task_spec_kwargs
        from hf_l3rs.tasks.images import ImageTaskFamily, ImageTaskSpec, load_image_dataset

        if "dataset" not in kwargs:
            raise ValueError("task family 'images' needs family_kwargs.dataset (preset, folder or Hub id)")
        kw = task_spec_kwargs(kwargs["dataset"], **kwargs)
        ds = load_image_dataset(
            kw.pop("dataset"),
            split=kw.pop("split", "train"),
            image_column=kw.pop("image_column", "image"),
            label_column=kw.pop("label_column", "label"),
        )
        model = kw.pop("model", "resnet18")
        checkpoint = kw.pop("checkpoint", None)
        return ImageTaskFamily(ds, ImageTaskSpec(**kw), model_name=model, checkpoint=checkpoint, name=kwargs["dataset"])
    if all(part in CLASSIC_FAMILIES for part in name.split("+")):
        return classic_family(name, **kwargs)
    raise ValueError(
        f"unknown task family {name!r}; known: {sorted(CLASSIC_FAMILIES)} (combine with '+') and {IMAGE_FAMILY!r}"
    )
