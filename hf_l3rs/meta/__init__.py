"""Meta-training: NES strategy (ask/tell), fitness shaping, and the Accelerate driver."""

from hf_l3rs.meta.config import MetaTrainConfig
from hf_l3rs.meta.shaping import centered_rank
from hf_l3rs.meta.strategy import NES, NESParams, NESState

__all__ = ["NES", "MetaTrainConfig", "NESParams", "NESState", "centered_rank"]
