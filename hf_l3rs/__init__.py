"""hf_l3rs: the learned optimizer L3RS for the Hugging Face ecosystem."""

__version__ = "0.1.0"

from hf_l3rs.hub import CheckpointError, bundled_weights, load_net, push_to_hub, save_net
from hf_l3rs.meta import NES, MetaTrainConfig, NESParams, NESState, centered_rank
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

__all__ = [
    "DIRECTIONS",
    "L3RS",
    "NES",
    "BaseDirection",
    "CheckpointError",
    "ConfigError",
    "EmbeddingMismatchError",
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
    "load_net",
    "push_to_hub",
    "register_direction",
    "save_net",
]
