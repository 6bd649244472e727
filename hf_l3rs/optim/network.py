"""``L3RSNet``: the meta-network (docs/design.md §1 "Network") and every meta-learned number.

Everything evolution perturbs lives here as parameters (MLP, layer embeddings, the base
directions' unconstrained hyper-parameters), so ``get_flat``/``set_flat`` is the whole θ.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from hf_l3rs.optim.config import ROLES, L3RSConfig
from hf_l3rs.optim.directions import get_direction
from hf_l3rs.optim.flat import FlatMetaParameters

#: A fresh network (meta-training's θ₀; a loaded checkpoint replaces it): the output layer's
#: weights scaled down so every component starts at the rate logit 0 (η = base_lr), and the
#: mixing logits giving the Adam direction this share (docs/adr/0014).
INIT_OUTPUT_SCALE = 0.01
INIT_ADAM_MIX = 0.9


class L3RSNet(FlatMetaParameters):
    """Maps per-component features to a rate η and mixing α over the base directions."""

    def __init__(
        self,
        config: L3RSConfig,
        trained_roles: Tensor | None = None,
        trained_depths: Tensor | None = None,
        seed: int = 0,
        output_scale: float = INIT_OUTPUT_SCALE,
        adam_mix: float = INIT_ADAM_MIX,
    ) -> None:
        super().__init__()
        if not 0.0 < adam_mix < 1.0:
            raise ValueError(f"L3RSNet: adam_mix must be in (0, 1), got {adam_mix!r}")
        if config.num_components is None:
            raise ValueError("L3RSNet needs config.num_components (L3RS sets it from the model)")
        self.config = config
        n, k = config.num_components, len(config.directions)
        gen = torch.Generator().manual_seed(seed)
        if trained_roles is None:
            trained_roles = torch.full((n,), ROLES.index("other"), dtype=torch.long)
        if trained_depths is None:
            trained_depths = torch.linspace(0, 1, n) if n > 1 else torch.zeros(1)
        if trained_roles.shape != (n,) or trained_depths.shape != (n,):
            raise ValueError(f"trained_roles/trained_depths must have shape ({n},)")
        self.register_buffer("trained_roles", trained_roles.to(torch.long).clone())
        self.register_buffer("trained_depths", trained_depths.to(torch.float32).clone())

        if config.embedding:
            self.embedding = nn.Parameter(0.1 * torch.randn(n, config.embedding_dim, generator=gen))
        else:
            self.register_parameter("embedding", None)

        sizes = [config.num_features, *config.hidden_sizes, 1 + k]
        copies = n if config.variant == "per_layer_mlp" else 1
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand(copies, fan_out, fan_in, generator=gen) * 2 - 1) * bound
            b = (torch.rand(copies, fan_out, generator=gen) * 2 - 1) * bound
            if i == len(sizes) - 2:
                w *= output_scale
                b.copy_(self._output_bias(config, adam_mix).expand_as(b))
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

        names, raws = [], []
        for dname in config.directions:
            for hname, spec in get_direction(dname).hyper_defaults.items():
                key = f"{dname}.{hname}"
                names.append(key)
                raws.append(spec.to_raw(config.hyper_init.get(key, spec.default)))
        self.hyper_names: tuple[str, ...] = tuple(names)
        self.hyper_raw = nn.Parameter(torch.tensor(raws, dtype=torch.float32))

    @staticmethod
    def _output_bias(config: L3RSConfig, adam_mix: float) -> Tensor:
        """Rate logit 0 (η = η₀); mixing logits giving α(adam) = adam_mix."""
        k = len(config.directions)
        bias = torch.zeros(1 + k)
        if "adam" in config.directions and k > 1:
            a = adam_mix
            bias[1 + config.directions.index("adam")] = math.log(a * (k - 1) / (1 - a))
        return bias

    # ----------------------------------------------------------------- forward
    def forward(self, features: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """features: [C, F - embedding_dim] (everything but the embedding);
        index: [C] trained-component index of each row. Returns rate [C], mix [C, K]."""
        cfg = self.config
        x = features
        if self.embedding is not None:
            x = torch.cat([x, self.embedding[index]], dim=1)
        if cfg.variant == "global":
            x = x.mean(dim=0, keepdim=True)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if cfg.variant == "per_layer_mlp":
                x = torch.einsum("coi,ci->co", w[index], x) + b[index]
            else:
                x = x @ w[0].T + b[0]
            if i < last:
                x = torch.relu(x)
        if cfg.variant == "global":
            x = x.expand(features.shape[0], -1)
        rate = cfg.base_lr * torch.exp(torch.clamp(x[:, 0], -cfg.rate_clamp, cfg.rate_clamp))
        mix = torch.softmax(x[:, 1:], dim=1)
        return rate, mix

    # ------------------------------------------------------ hyper-parameters
    def hyper_values(self) -> dict[str, dict[str, float]]:
        """Base-direction hyper-parameters, constrained: {"adam": {"beta1": 0.9, ...}}. Computed
        again only when ``hyper_raw`` changed (its storage or torch's version counter): a step
        reads them every time, meta-training writes them between candidates."""
        key = (self.hyper_raw.data_ptr(), self.hyper_raw._version)
        cached = self.__dict__.get("_hyper_cache")
        if cached is None or cached[0] != key:
            cached = (key, self._compute_hyper_values())
            self.__dict__["_hyper_cache"] = cached
        return {d: dict(h) for d, h in cached[1].items()}

    def _compute_hyper_values(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {d: {} for d in self.config.directions}
        raw = self.hyper_raw.detach().cpu().tolist()
        for key, r in zip(self.hyper_names, raw):
            dname, hname = key.split(".", 1)
            spec = get_direction(dname).hyper_defaults[hname]
            out[dname][hname] = float(spec.from_raw(torch.tensor(r, dtype=torch.float64)))
        return out
