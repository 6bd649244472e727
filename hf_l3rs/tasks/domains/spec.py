"""What an embedded domain renders, and the version of the renderer: the cache key of a
rendered dataset (kept apart from the renderer so that the dataset registry can name specs
without importing it)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

VERSION = 1


@dataclass(frozen=True)
class DomainSpec:
    """What to render. ``num_classes=None`` takes every eligible class (clipart)."""

    name: str
    num_classes: int | None
    samples_per_class: int
    image_size: int = 32
    seed: int = 0
    min_images: int = 10  # clipart: categories with at least this many drawings

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "version": VERSION}, sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:10]
