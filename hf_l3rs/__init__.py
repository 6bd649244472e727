"""hf_l3rs: the learned optimizer L3RS for the Hugging Face ecosystem.

The public names are imported on first use (PEP 562), so ``import hf_l3rs`` and the
``hf-l3rs`` command line stay light: torch, YAML and the meta-trainer load only when a name
that needs them is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hf_l3rs._version import __version__

#: public name -> module that defines it
_EXPORTS = {
    "CheckpointError": "hf_l3rs.optim.hub",
    "HubError": "hf_l3rs.optim.hub",
    "bundled_weights": "hf_l3rs.optim.hub",
    "load_net": "hf_l3rs.optim.hub",
    "push_to_hub": "hf_l3rs.optim.hub",
    "save_net": "hf_l3rs.optim.hub",
    "NES": "hf_l3rs.meta.strategy",
    "NESParams": "hf_l3rs.meta.strategy",
    "NESState": "hf_l3rs.meta.strategy",
    "MetaTrainConfig": "hf_l3rs.meta.config",
    "centered_rank": "hf_l3rs.meta.shaping",
    "DIRECTIONS": "hf_l3rs.optim",
    "L3RS": "hf_l3rs.optim",
    "BaseDirection": "hf_l3rs.optim",
    "DirectionOptimizer": "hf_l3rs.optim.direction_optimizer",
    "FOOF": "hf_l3rs.optim.foof",
    "ConfigError": "hf_l3rs.optim",
    "EmbeddingMismatchError": "hf_l3rs.optim",
    "Hyper": "hf_l3rs.optim",
    "L3RSConfig": "hf_l3rs.optim",
    "L3RSNet": "hf_l3rs.optim",
    "MissingLossError": "hf_l3rs.optim",
    "register_direction": "hf_l3rs.optim",
    "set_verbosity": "hf_l3rs.verbosity",
    "freeze_body": "hf_l3rs.probe",
    "unfreeze_body": "hf_l3rs.probe",
}

#: names that moved out of the installed package (CHANGELOG 0.3): where they are now
_MOVED = {
    name: "experiments.velo (VeLO-lite is research: experiments/ of a source checkout)"
    for name in ("VeLOLite", "VeLOLiteConfig", "VeLOLiteNet")
}

__all__ = [
    "DIRECTIONS",
    "FOOF",
    "L3RS",
    "NES",
    "BaseDirection",
    "CheckpointError",
    "ConfigError",
    "DirectionOptimizer",
    "EmbeddingMismatchError",
    "HubError",
    "Hyper",
    "L3RSConfig",
    "L3RSNet",
    "MetaTrainConfig",
    "MissingLossError",
    "NESParams",
    "NESState",
    "__version__",
    "bundled_weights",
    "centered_rank",
    "freeze_body",
    "load_net",
    "push_to_hub",
    "register_direction",
    "save_net",
    "set_verbosity",
    "unfreeze_body",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if name in _MOVED:
        raise AttributeError(f"hf_l3rs.{name} moved to {_MOVED[name]}")
    if module is None:
        raise AttributeError(f"module 'hf_l3rs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


def _install_timm_hook() -> None:
    from hf_l3rs.timm_hook import install

    install()


_install_timm_hook()

if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from hf_l3rs.meta.config import MetaTrainConfig
    from hf_l3rs.meta.shaping import centered_rank
    from hf_l3rs.meta.strategy import NES, NESParams, NESState
    from hf_l3rs.optim import (
        DIRECTIONS,
        L3RS,
        BaseDirection,
        ConfigError,
        EmbeddingMismatchError,
        Hyper,
        L3RSConfig,
        L3RSNet,
        MissingLossError,
        register_direction,
    )
    from hf_l3rs.optim.direction_optimizer import DirectionOptimizer
    from hf_l3rs.optim.foof import FOOF
    from hf_l3rs.optim.hub import CheckpointError, HubError, bundled_weights, load_net, push_to_hub, save_net
    from hf_l3rs.probe import freeze_body, unfreeze_body
    from hf_l3rs.verbosity import set_verbosity
