"""VeLO-lite's meta-network (docs/design.md §5): a per-tensor LSTM that writes the weights of
a tiny per-parameter MLP by mixing a bank of them, as VeLO (Metz et al. 2022) does at scale."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from experiments.velo.config import VeLOLiteConfig
from hf_l3rs.optim.flat import FlatMetaParameters


class VeLOLiteNet(FlatMetaParameters):
    """θ of VeLO-lite. ``tensor_step`` advances the LSTM of every tensor at once; ``apply_mlp``
    mixes the MLP bank per tensor; ``apply_mlp`` runs one tensor's MLP over its elements."""

    def __init__(self, config: VeLOLiteConfig | None = None, seed: int = 0) -> None:
        super().__init__()
        self.config = config = config or VeLOLiteConfig()
        gen = torch.Generator().manual_seed(seed)
        ft, fe, h, b, hm = (
            config.tensor_features,
            config.element_features,
            config.lstm_hidden,
            config.bank_size,
            config.mlp_hidden,
        )
        self.lstm = nn.LSTMCell(ft, h)
        with torch.no_grad():
            for p in self.lstm.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * config.init_scale / ft**0.5)
        # outputs: [log scale, bank mixing logits...]; zero so the untrained rule is Adam
        self.out = nn.Linear(h, 1 + b)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.w1 = nn.Parameter(torch.randn(b, fe, hm, generator=gen) * config.init_scale / fe**0.5)
        self.b1 = nn.Parameter(torch.zeros(b, hm))
        # outputs per element: [direction, log magnitude]; zero at init
        self.w2 = nn.Parameter(torch.zeros(b, hm, 2))
        self.b2 = nn.Parameter(torch.zeros(b, 2))

    def tensor_step(self, features: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """features [n, Ft], LSTM state [n, H] → (log scale [n], mixing [n, B], new h, new c)."""
        h2, c2 = self.lstm(features, (h, c))
        out = self.out(h2)
        bound = self.config.max_log_scale
        log_scale = bound * torch.tanh(out[:, 0] / bound)
        return log_scale, torch.softmax(out[:, 1:], dim=-1), h2, c2

    def mixed_mlps(self, mixing: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """mixing [n, B] → each tensor's MLP weights (w1 [n, Fe, Hm], b1 [n, Hm], w2 [n, Hm, 2],
        b2 [n, 2]): the bank's weights mixed per tensor, as VeLO does."""
        return (
            torch.einsum("nb,bfh->nfh", mixing, self.w1),
            mixing @ self.b1,
            torch.einsum("nb,bho->nho", mixing, self.w2),
            mixing @ self.b2,
        )

    @staticmethod
    def apply_mlp(features: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> tuple[Tensor, Tensor]:
        """One tensor's elements [N, Fe] through its mixed MLP → (direction [N], magnitude [N])."""
        out = torch.addmm(b2, torch.relu(torch.addmm(b1, features, w1)), w2)
        return out[:, 0], out[:, 1]

    def hyper_values(self) -> dict[str, dict[str, float]]:
        """No meta-learned base-direction hyper-parameters (the fixed betas are config)."""
        return {}
