"""Meta-training: NES strategy (ask/tell), fitness shaping, and the Accelerate driver.

Names load on first use (PEP 562), so the command line can describe ``metatrain`` without
importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "MetaTrainConfig": "hf_l3rs.meta.config",
    "centered_rank": "hf_l3rs.meta.shaping",
    "NES": "hf_l3rs.meta.strategy",
    "NESParams": "hf_l3rs.meta.strategy",
    "NESState": "hf_l3rs.meta.strategy",
}

__all__ = ["NES", "MetaTrainConfig", "NESParams", "NESState", "centered_rank"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_l3rs.meta' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from hf_l3rs.meta.config import MetaTrainConfig
    from hf_l3rs.meta.shaping import centered_rank
    from hf_l3rs.meta.strategy import NES, NESParams, NESState
