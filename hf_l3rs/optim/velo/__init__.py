"""VeLO-lite: the per-parameter learned-optimizer baseline (docs/design.md §5)."""

from hf_l3rs.optim.velo.config import VeLOLiteConfig
from hf_l3rs.optim.velo.network import VeLOLiteNet
from hf_l3rs.optim.velo.optimizer import VeLOLite

__all__ = ["VeLOLite", "VeLOLiteConfig", "VeLOLiteNet"]
