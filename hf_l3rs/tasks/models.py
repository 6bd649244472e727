"""Small timm models for CPU-scale runs, registered in timm's model registry so that the
same ``timm.create_model(name)`` path serves them and ResNet-34."""

from __future__ import annotations

from typing import Any

from timm.models import register_model
from timm.models.resnet import BasicBlock, ResNet
from timm.models.vision_transformer import VisionTransformer


def _without_hub_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``create_model``'s keyword arguments less the pretrained-weights options timm passes to
    every registered model (these models have no downloadable weights)."""
    return {k: v for k, v in kwargs.items() if k not in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")}


def _small(width: int, **kwargs: Any) -> ResNet:
    """One BasicBlock per stage of width·(1, 2, 4, 8) channels (timm's 64-channel stem)."""
    kwargs = _without_hub_options(kwargs)
    channels = (width, 2 * width, 4 * width, 8 * width)
    return ResNet(BasicBlock, [1, 1, 1, 1], channels=channels, stem_width=width, **kwargs)


def _tiny_vit(**kwargs: Any) -> VisionTransformer:
    """A 4-block ViT for 32-pixel images: 4-pixel patches (64 tokens), width 96, 3 heads,
    MLP ratio 2, mean-pooled tokens into the head (~310k parameters, the tiny ResNet's size);
    other image sizes interpolate the position embedding."""
    defaults = {"img_size": 32, "patch_size": 4, "embed_dim": 96, "depth": 4, "num_heads": 3, "mlp_ratio": 2.0}
    defaults.update(global_pool="avg", class_token=False, dynamic_img_size=True)
    return VisionTransformer(**{**defaults, **_without_hub_options(kwargs)})


def _no_weights(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(f"{name} has no downloadable weights; pretrain with `hf-l3rs pretrain`")


try:

    @register_model
    def l3rs_resnet_tiny(pretrained: bool = False, **kwargs: Any) -> ResNet:
        """ResNet with one BasicBlock per stage, channels 16-128 (~330k parameters)."""
        _no_weights("l3rs_resnet_tiny", pretrained)
        return _small(16, **kwargs)

    @register_model
    def l3rs_resnet_narrow(pretrained: bool = False, **kwargs: Any) -> ResNet:
        """The tiny ResNet with its stages at 3/4 width, 12-96 channels (~190k parameters): a
        second architecture for meta-training mixtures (docs/adr/0006 "Photograph-like
        tasks in the mixture")."""
        _no_weights("l3rs_resnet_narrow", pretrained)
        return _small(12, **kwargs)

    @register_model
    def l3rs_vit_tiny(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
        """A tiny vision transformer (no convolution but the patch embedding; layer norms,
        attention and MLP linear layers): an architecture family no shipped rule was
        meta-trained on, for transfer checks (docs/adr/0006 "A vision transformer held out")."""
        _no_weights("l3rs_vit_tiny", pretrained)
        return _tiny_vit(**kwargs)

except (RuntimeError, ValueError):  # already registered (module reloaded)
    pass
