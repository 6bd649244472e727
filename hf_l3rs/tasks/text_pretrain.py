"""Pretrain the decoder of tasks/text.py on the language reference (``pydoc_data``),
the checkpoint its fine-tuning tasks start from.

Writes ``model.safetensors`` (the tied output layer saved once, under the input embedding's
name) and ``config.json`` (decoder shape, held-out loss, cost)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from hf_l3rs.tasks.pretrain import fit
from hf_l3rs.tasks.text import DECODER, build_decoder, encode, next_byte_loss, pydoc_topics, windows


@dataclass(frozen=True)
class DecoderPretrainConfig:
    steps: int = 2000
    batch_size: int = 32
    seq_len: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 50
    holdout_fraction: float = 0.05
    seed: int = 0
    #: Overrides of tasks.text.DECODER (the shape is recorded in config.json).
    decoder: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.seq_len < 2:
            raise ValueError("DecoderPretrainConfig needs steps >= 1, batch_size >= 1 and seq_len >= 2")
        if not 0 < self.holdout_fraction < 1:
            raise ValueError("DecoderPretrainConfig.holdout_fraction must be in (0, 1)")


def pretrain_decoder(config: DecoderPretrainConfig, output_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    from safetensors.torch import save_file

    start = time.perf_counter()
    data = encode(pydoc_topics())
    cut = int(len(data) * (1 - config.holdout_fraction))
    train, held = data[:cut], data[cut:]
    n = config.seq_len + 1
    torch.manual_seed(config.seed)
    shape = {**DECODER, **config.decoder}
    model = build_decoder(**shape)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def factor(t: int) -> float:
        if t < config.warmup:
            return (t + 1) / config.warmup
        return 0.5 * (1 + math.cos(math.pi * (t - config.warmup) / max(config.steps - config.warmup, 1)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    g = torch.Generator().manual_seed(config.seed)

    def batch_loss(_: int) -> torch.Tensor:
        starts = torch.randint(0, len(train) - n, (config.batch_size,), generator=g).tolist()
        return next_byte_loss(model, windows(train, starts, n))

    model.train()
    fit(batch_loss, opt, sched, config.steps, "pretraining the decoder on pydoc topics", progress)
    model.eval()
    with torch.no_grad():
        held_windows = windows(held, list(range(0, len(held) - n, n)), n)
        held_loss = float(torch.stack([next_byte_loss(model, w) for w in held_windows.split(64)]).mean())
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(out / "model.safetensors"))
    report = {
        "config": asdict(config),
        "decoder": shape,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_bytes": len(train),
        "heldout_bytes": len(held),
        "heldout_loss": held_loss,
        "heldout_bits_per_byte": held_loss / math.log(2),
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out / "config.json").write_text(json.dumps(report, indent=1))
    return report
