"""VeLO-lite: the per-parameter learned-optimizer baseline (docs/design.md §5)."""

from experiments.velo import hub as _hub  # noqa: F401  registers VeLO-lite with hf_l3rs's learned optimizers
from experiments.velo.config import VeLOLiteConfig
from experiments.velo.network import VeLOLiteNet
from experiments.velo.optimizer import VeLOLite

__all__ = ["VeLOLite", "VeLOLiteConfig", "VeLOLiteNet"]
