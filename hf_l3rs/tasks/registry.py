"""Task families by name (meta-training and evaluation configs refer to them)."""

from __future__ import annotations

from typing import Any

from hf_l3rs.tasks.base import TaskFamily
from hf_l3rs.tasks.classic import CLASSIC_FAMILIES, classic_family

IMAGE_FAMILY = "images"
MIXTURE_FAMILY = "mixture"
TEXT_FAMILY = "text"
AUGMENTATIONS = ("rate_jitter", "horizon_free", "domain_shift")


def get_family(family: str, /, **kwargs: Any) -> TaskFamily:
    """A registered family. Classic ones combine with ``+`` into a mixture; ``images``
    takes ``dataset`` (preset, folder or Hub id), ``model``, ``checkpoint`` and the fields
    of :class:`~hf_l3rs.tasks.images.ImageTaskSpec` (and ``name``, to tell two families over
    one dataset apart); ``text`` (causal-LM fine-tuning of a pretrained Llama decoder, tasks/text.py)
    takes ``checkpoint``, ``name`` and the fields of :class:`~hf_l3rs.tasks.text.TextTaskSpec`;
    ``mixture`` takes ``members``, a list of ``{family, weight, ...kwargs}``.
    Any family but a mixture takes the augmentations of :class:`~hf_l3rs.tasks.augment.AugmentedFamily`:
    ``rate_jitter: f`` (each task hides a rate multiplier, log-uniform in [1/f, f]) and
    ``horizon_free: p`` (that share of tasks does not announce its number of steps); image
    families also ``domain_shift: p`` (that share of tasks sees its images through a seeded
    photometric transform).
    """
    augment = {k: kwargs[k] for k in AUGMENTATIONS if k in kwargs}
    if augment and family != MIXTURE_FAMILY:
        from hf_l3rs.tasks.augment import AugmentedFamily

        rest = {k: v for k, v in kwargs.items() if k not in AUGMENTATIONS}
        return AugmentedFamily(get_family(family, **rest), **augment)
    if family == MIXTURE_FAMILY:
        from hf_l3rs.tasks.mixture import MixtureFamily

        members = kwargs.get("members")
        if not isinstance(members, list) or not members or set(kwargs) - {"members"}:
            raise ValueError(
                "task family 'mixture' takes exactly family_kwargs.members: a list of {family, weight, ...}"
            )
        built = []
        for i, member in enumerate(members):
            if not isinstance(member, dict) or "family" not in member:
                raise ValueError(f"mixture member #{i} must be a mapping with a 'family' key, got {member!r}")
            member = dict(member)
            family_name, weight = member.pop("family"), member.pop("weight", 1.0)
            if family_name == MIXTURE_FAMILY:
                raise ValueError("a mixture cannot contain a mixture")
            built.append((get_family(family_name, **member), weight))
        return MixtureFamily(built)
    if family == IMAGE_FAMILY:
        from hf_l3rs.tasks.datasets import task_spec_kwargs
        from hf_l3rs.tasks.images import ImageTaskFamily, ImageTaskSpec, dataset_name, load_image_dataset

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
        name = kw.pop("name", None) or dataset_name(kwargs["dataset"])
        return ImageTaskFamily(ds, ImageTaskSpec(**kw), model_name=model, checkpoint=checkpoint, name=name)
    if family == TEXT_FAMILY:
        from hf_l3rs.tasks.text import TextTaskFamily, TextTaskSpec

        kw = dict(kwargs)
        checkpoint, name = kw.pop("checkpoint", None), kw.pop("name", TEXT_FAMILY)
        return TextTaskFamily(TextTaskSpec(**kw), checkpoint=checkpoint, name=name)
    if all(part in CLASSIC_FAMILIES for part in family.split("+")):
        return classic_family(family, **kwargs)
    raise ValueError(
        f"unknown task family {family!r}; known: {sorted(CLASSIC_FAMILIES)} (combine with '+'), "
        f"{IMAGE_FAMILY!r}, {TEXT_FAMILY!r} and {MIXTURE_FAMILY!r}"
    )


def with_image_option(family: str, kwargs: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``kwargs`` of a ``family`` with ``key: value`` set on every image family in it (the
    family itself, or each image member of a mixture); other families are left as they are."""
    if family == IMAGE_FAMILY:
        return {**kwargs, key: value}
    if family == MIXTURE_FAMILY:
        members = [
            {**m, key: value} if isinstance(m, dict) and m.get("family") == IMAGE_FAMILY else m
            for m in kwargs.get("members", [])
        ]
        return {**kwargs, "members": members}
    return dict(kwargs)
