"""Small timm models for CPU-scale runs, registered in timm's model registry so that the
same ``timm.create_model(name)`` path serves them and ResNet-34."""

from __future__ import annotations

from typing import Any

from timm.models import register_model
from timm.models.resnet import BasicBlock, ResNet


def _tiny(**kwargs: Any) -> ResNet:
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    kwargs.pop("cache_dir", None)
    return ResNet(BasicBlock, [1, 1, 1, 1], channels=(16, 32, 64, 128), stem_width=16, **kwargs)


try:

    @register_model
    def l3rs_resnet_tiny(pretrained: bool = False, **kwargs: Any) -> ResNet:
        """ResNet with one BasicBlock per stage, channels 16-128 (~330k parameters)."""
        if pretrained:
            raise ValueError("l3rs_resnet_tiny has no downloadable weights; pretrain with `hf-l3rs pretrain`")
        return _tiny(**kwargs)

except (RuntimeError, ValueError):  # already registered (module reloaded)
    pass
