"""The L3RS optimizer: config, base directions, features, meta-network, update."""

from hf_l3rs.optim.components import Component, EmbeddingMismatchError
from hf_l3rs.optim.config import ConfigError, L3RSConfig
from hf_l3rs.optim.directions import DIRECTIONS, BaseDirection, Hyper, register_direction
from hf_l3rs.optim.l3rs import L3RS
from hf_l3rs.optim.loss_source import MissingLossError
from hf_l3rs.optim.network import L3RSNet

__all__ = [
    "DIRECTIONS",
    "L3RS",
    "BaseDirection",
    "Component",
    "ConfigError",
    "EmbeddingMismatchError",
    "Hyper",
    "L3RSConfig",
    "L3RSNet",
    "MissingLossError",
    "register_direction",
]
