"""Per-component feature rows (docs/design.md §1 "Per-component features"), all components at once.

Column order: EMA features (statistic-major: log‖p‖, log‖g‖, loss; one column per β),
relative time, absolute time, log‖d_k‖ per base direction, descriptor. The learned layer
embedding is appended by the network.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from hf_l3rs.optim.config import L3RSConfig


def time_features(config: L3RSConfig, step: int, total_steps: int | None) -> Tensor:
    """Relative (VeLO-style) and absolute time features, float32 [R + A]. Horizon-free
    (``total_steps=None``): the features of an unbounded run, t/T = 0 and T = ∞ (the same every
    step, so kept rather than recomputed)."""
    progress = step / total_steps if total_steps else 0.0
    key = (config.relative_time_points, config.relative_time_sharpness, tuple(config.absolute_time_scales))
    return _time_features(*key, progress, total_steps).clone()


@functools.lru_cache(maxsize=8)
def _time_features(r: int, sharpness: float, scales: tuple[float, ...], progress: float, total: int | None) -> Tensor:
    refs = torch.linspace(0.0, 1.0, r, dtype=torch.float64) if r > 1 else torch.zeros(r, dtype=torch.float64)
    rel = torch.tanh(sharpness * (progress - refs))
    scale = torch.tensor(scales, dtype=torch.float64)
    absolute = torch.tanh(total / scale) if total else torch.ones_like(scale)
    return torch.cat([rel, absolute]).to(torch.float32)


class EMAFeatures:
    """Bias-corrected EMAs of (log‖p‖, log‖g‖, loss) per component and β."""

    def __init__(self, config: L3RSConfig, num_components: int, device: torch.device) -> None:
        self.betas = torch.tensor(config.ema_betas, dtype=torch.float32, device=device)
        self.value = torch.zeros(num_components, 3, len(config.ema_betas), device=device)
        self.count = torch.zeros(num_components, device=device)

    def update(self, stats: Tensor, rows: Tensor) -> None:
        """stats: [C, 3]; only rows where ``rows`` is True move (others keep their EMA)."""
        if self.betas.numel() == 0:
            return
        b = self.betas
        new = b * self.value + (1 - b) * stats.unsqueeze(-1)
        self.value = torch.where(rows[:, None, None], new, self.value)
        self.count = self.count + rows.to(self.count.dtype)

    def read(self) -> Tensor:
        """[C, 3·nβ] bias-corrected; zero for a component never updated."""
        if self.betas.numel() == 0:
            return self.value.reshape(self.value.shape[0], 0)
        correction = 1 - self.betas[None, :] ** self.count[:, None]  # [C, nβ]
        safe = torch.where(correction > 0, correction, torch.ones_like(correction))
        out = self.value / safe[:, None, :]
        return out.reshape(self.value.shape[0], -1)

    def state(self) -> dict[str, Tensor]:
        return {"ema_value": self.value.clone(), "ema_count": self.count.clone()}

    def load(self, state: dict[str, Tensor]) -> None:
        if state["ema_value"].shape != self.value.shape:
            raise ValueError(
                f"L3RS state: EMA shape {tuple(state['ema_value'].shape)} does not match "
                f"{tuple(self.value.shape)} (different model or ema_betas?)"
            )
        self.value = state["ema_value"].to(self.value)
        self.count = state["ema_count"].to(self.count)


def assemble(ema: Tensor, time: Tensor, dir_log_norms: Tensor, descriptor: Tensor | None) -> Tensor:
    """Concatenate the non-learned feature blocks into [C, F - embedding_dim]."""
    c = ema.shape[0]
    blocks = [ema, time.expand(c, -1), dir_log_norms]
    if descriptor is not None:
        blocks.append(descriptor)
    return torch.cat(blocks, dim=1)
