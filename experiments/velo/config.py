"""Configuration of VeLO-lite, the per-parameter learned-optimizer baseline (docs/design.md §5)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from hf_l3rs.optim.config import ConfigError, reject_unknown_fields


@dataclass(frozen=True)
class VeLOLiteConfig:
    """Shape and defaults of a VeLO-lite meta-network.

    A per-tensor LSTM (``lstm_hidden`` units) reads tensor-level features and outputs a
    log step-size scale and mixing weights over a bank of ``bank_size`` per-parameter MLPs
    (``mlp_hidden`` units) that read per-element features. The untrained network is Adam at
    ``base_lr`` on the ``rate_schedule`` prior, as the untrained L3RS is.
    """

    base_lr: float = 3e-3
    rate_schedule: str = "cosine"
    lstm_hidden: int = 16
    bank_size: int = 4
    mlp_hidden: int = 8
    momentum_betas: tuple[float, ...] = (0.5, 0.9, 0.99)
    rms_beta: float = 0.999
    eps: float = 1e-8
    #: the per-element magnitude output m scales the update by exp(magnitude_scale · m)
    magnitude_scale: float = 0.1
    #: the per-tensor log scale s is bounded to ±max_log_scale (a factor of e^±3 = 20×)
    max_log_scale: float = 3.0
    relative_time_points: int = 5
    relative_time_sharpness: float = 10.0
    absolute_time_scales: tuple[float, ...] = (10.0, 100.0, 1000.0)
    init_scale: float = 1.0
    #: L3RS's head/backbone prior (docs/design.md §1), as a fixed per-tensor factor on the rate:
    #: the deepest ``init_head_fraction`` of the tensors (the fresh head) at ``init_head_rate``·η₀,
    #: the others at ``init_backbone_rate``·η₀; the LSTM's log scale moves from there. 0 = off.
    init_head_fraction: float = 0.0
    init_head_rate: float = 1.0
    init_backbone_rate: float = 1.0

    def __post_init__(self) -> None:
        for name in ("momentum_betas", "absolute_time_scales"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ConfigError(f"VeLOLiteConfig.{name} must be a sequence, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        self.validate()

    def validate(self) -> None:
        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "float" and not number(v):
                raise ConfigError(f"VeLOLiteConfig.{f.name} must be a finite number, got {v!r}")
            if f.type == "int" and not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ConfigError(f"VeLOLiteConfig.{f.name} must be an integer >= 1, got {v!r}")
        if self.rate_schedule not in ("constant", "cosine"):
            raise ConfigError(
                f"VeLOLiteConfig.rate_schedule must be 'constant' or 'cosine', got {self.rate_schedule!r}"
            )
        if self.base_lr <= 0:
            raise ConfigError(f"VeLOLiteConfig.base_lr must be positive, got {self.base_lr!r}")
        if len(self.momentum_betas) < 1 or not all(number(b) and 0 <= b < 1 for b in self.momentum_betas):
            raise ConfigError(f"VeLOLiteConfig.momentum_betas must be numbers in [0, 1), got {self.momentum_betas!r}")
        if not 0 <= self.init_head_fraction < 1 or self.init_head_rate <= 0 or self.init_backbone_rate <= 0:
            raise ConfigError("VeLOLiteConfig: init_head_fraction must be in [0, 1) and the prior rates positive")
        if not 0 <= self.rms_beta < 1:
            raise ConfigError(f"VeLOLiteConfig.rms_beta must be in [0, 1), got {self.rms_beta!r}")
        if self.eps <= 0 or self.magnitude_scale < 0 or self.max_log_scale <= 0:
            raise ConfigError("VeLOLiteConfig: eps and max_log_scale must be positive, magnitude_scale >= 0")
        if not all(number(s) and s > 0 for s in self.absolute_time_scales):
            raise ConfigError(
                f"VeLOLiteConfig.absolute_time_scales must be positive, got {self.absolute_time_scales!r}"
            )

    @property
    def element_features(self) -> int:
        """Per-element inputs: g, each momentum, Adam's direction, g/√v and p (each normalised)."""
        return len(self.momentum_betas) + 4

    @property
    def tensor_features(self) -> int:
        """Per-tensor inputs: 4 log-RMS statistics, 2 loss features, time, role one-hot, depth."""
        from hf_l3rs.optim.config import ROLES

        return 6 + self.relative_time_points + len(self.absolute_time_scales) + len(ROLES) + 1

    def replace(self, **changes: Any) -> VeLOLiteConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VeLOLiteConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"VeLO-lite config must be a JSON object, got {type(data).__name__}")
        reject_unknown_fields(cls, data, "VeLO-lite config")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"VeLO-lite config: {exc}") from exc
