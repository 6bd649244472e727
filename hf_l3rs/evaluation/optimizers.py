"""The optimizers an evaluation compares, by name: L3RS entries plus the project's registry
of hand-designed ones (``hf_l3rs.registry``).

``l3rs`` (the configured meta-weights, or the untrained L3RS when none are configured),
``l3rs:<label>`` (the same, under another label) and ``l3rs-untrained`` (always untrained);
anything else is a registry name such as ``adam-cos-1e-4`` or ``nesterov-const-3e-2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hf_l3rs.registry import PAPER_BASELINES, OptimizerSpec, parse_optimizer

__all__ = ["PAPER_BASELINES", "L3RSEntry", "parse_entry"]


@dataclass(frozen=True)
class L3RSEntry:
    """L3RS in an evaluation: the configured meta-weights, or the untrained rule."""

    label: str = "L3RS"
    untrained: bool = False
    head_only: bool = False  # a linear probe: only the head trains, on the frozen body's features
    per_horizon: bool = True  # its time features depend on the announced horizon
    #: the meta-network to run (None: the evaluation's configured one, or untrained)
    net: Any = field(default=None, compare=False, repr=False)

    @property
    def family(self) -> str:
        return "l3rs-untrained" if self.untrained else "l3rs"


def parse_entry(name: str) -> OptimizerSpec | L3RSEntry:
    """A name of the evaluation's ``optimizers`` list → what to run."""
    if name == "l3rs-untrained":
        return L3RSEntry("L3RS (untrained)", untrained=True)
    if name == "l3rs" or name.startswith("l3rs:"):
        return L3RSEntry(name.split(":", 1)[1] if ":" in name else "L3RS")
    return parse_optimizer(name)
