"""Task families by name (meta-training and evaluation configs refer to them)."""

from __future__ import annotations

from typing import Any

from hf_l3rs.tasks.base import TaskFamily
from hf_l3rs.tasks.classic import CLASSIC_FAMILIES, classic_family


def get_family(name: str, **kwargs: Any) -> TaskFamily:
    """A registered family; classic ones combine with ``+`` into a mixture."""
    if all(part in CLASSIC_FAMILIES for part in name.split("+")):
        return classic_family(name, **kwargs)
    raise ValueError(f"unknown task family {name!r}; known: {sorted(CLASSIC_FAMILIES)} (combine with '+')")
