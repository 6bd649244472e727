"""Integrations of L3RS with training frameworks (transformers, timm). Names load on first
use, so the timm integration never imports transformers and installing hf_l3rs requires
neither framework."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "L3RSCallback": "hf_l3rs.trainer_plugins.transformers_trainer",
    "L3RSTrainer": "hf_l3rs.trainer_plugins.transformers_trainer",
    "find_l3rs": "hf_l3rs.trainer_plugins.transformers_trainer",
    "learned_rate_stats": "hf_l3rs.trainer_plugins.transformers_trainer",
}

__all__ = ["L3RSCallback", "L3RSTrainer", "find_l3rs", "learned_rate_stats", "register_timm"]


def register_timm() -> None:
    """Make ``timm.optim.create_optimizer_v2(model, "l3rs")`` build an L3RS (done for you
    when hf_l3rs is imported and timm is installed; calling it again is harmless)."""
    from hf_l3rs.trainer_plugins.timm_optim import register

    register()


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_l3rs.trainer_plugins' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from hf_l3rs.trainer_plugins.transformers_trainer import L3RSCallback, L3RSTrainer, find_l3rs, learned_rate_stats
