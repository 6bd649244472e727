"""Integrations of L3RS with training frameworks (transformers, timm). Each module imports
its framework lazily, so installing hf_l3rs never requires them."""

from hf_l3rs.trainer_plugins.transformers_trainer import L3RSCallback, L3RSTrainer, find_l3rs

__all__ = ["L3RSCallback", "L3RSTrainer", "find_l3rs", "register_timm"]


def register_timm() -> None:
    """Make ``timm.optim.create_optimizer_v2(model, "l3rs")`` build an L3RS."""
    from hf_l3rs.trainer_plugins.timm_optim import register

    register()
