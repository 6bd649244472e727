"""Other learned optimizers the meta-trainer, the evaluations and the Hub loader can serve,
registered by the code that defines them (VeLO-lite registers itself from ``experiments/``):
the product names none of them, so research code stays out of the installed package.

A meta-training config selects one with ``learned_optimizer: <name>`` and imports the module
that registers it with ``plugins: [<module>]``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where the learned optimizers this repository keeps outside the package live, by the key
#: their ``config.json`` holds: named in errors only.
ELSEWHERE = {"velo_lite": "experiments.velo (a source checkout of hf_l3rs)"}


@dataclass(frozen=True)
class LearnedOptimizer:
    """How to build, load and describe one learned optimizer."""

    name: str  #: ``learned_optimizer`` in a meta-training config, e.g. ``"velo-lite"``
    config_key: str  #: the key of its config block in ``config.json``, e.g. ``"velo_lite"``
    optimizer: type  #: ``optimizer(model, net, total_steps=T)``
    net_type: type
    make_net: Callable[[dict[str, Any], int], Any]  #: (config block, seed) -> a fresh network
    load: Callable[[Path, dict[str, Any], dict[str, Any]], Any]  #: (folder, config.json, overrides)
    render_card: Callable[[Any, dict[str, Any]], str]


_REGISTRY: dict[str, LearnedOptimizer] = {}


def register(spec: LearnedOptimizer) -> None:
    _REGISTRY[spec.name] = spec


def by_name(name: str) -> LearnedOptimizer:
    if name not in _REGISTRY:
        known = ["l3rs", *sorted(_REGISTRY)]
        raise KeyError(
            f"unknown learned optimizer {name!r}; known: {known}. A learned optimizer defined outside "
            "the package registers itself when its module is imported (meta-training config: plugins: [module])"
        )
    return _REGISTRY[name]


def for_net(net: Any) -> LearnedOptimizer | None:
    """The registered optimizer whose network ``net`` is (``None``: an L3RS network)."""
    return next((s for s in _REGISTRY.values() if isinstance(net, s.net_type)), None)


def for_saved_config(raw: Any) -> LearnedOptimizer | None:
    """The registered optimizer a ``config.json`` belongs to (``None``: L3RS's). A config of an
    optimizer that is not registered is refused by name, with where it lives."""
    if not isinstance(raw, dict) or "l3rs" in raw:
        return None
    for spec in _REGISTRY.values():
        if spec.config_key in raw:
            return spec
    for key, where in ELSEWHERE.items():
        if key in raw:
            raise KeyError(f"these meta-weights are {key!r}, not L3RS's; their loader is registered by {where}")
    return None


def import_plugins(modules: list[str]) -> None:
    """Import the modules that register learned optimizers; from a source checkout the
    current folder is searched too (``experiments`` is not installed)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            cwd = str(Path.cwd())
            if exc.name is None or not module.startswith(exc.name) or cwd in sys.path:
                raise
            sys.path.append(cwd)
            importlib.import_module(module)
