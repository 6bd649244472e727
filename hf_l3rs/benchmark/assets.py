"""What the suite's cases start from, built once and cached: the embedded image domains and
the pretrained checkpoints (a tiny ResNet per image domain, two decoders of different shapes
pretrained on the Python language reference). Nothing is downloaded."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: decoder name -> shape overrides of hf_l3rs.tasks.text.DECODER (heads of 64, as SmolLM2)
DECODERS: dict[str, dict[str, Any]] = {
    "small": {
        "hidden_size": 128,
        "intermediate_size": 344,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
    },
    "wide": {
        "hidden_size": 192,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 3,
        "num_key_value_heads": 3,
    },
}
DECODER_PRETRAIN_STEPS = 1000


def cache_dir() -> Path:
    """``$HF_L3RS_CACHE/suite-v1`` (default ``~/.cache/hf_l3rs/suite-v1``)."""
    root = Path(os.environ.get("HF_L3RS_CACHE", Path.home() / ".cache" / "hf_l3rs"))
    return root / "suite-v1"


def image_checkpoint(domain: str) -> Path:
    """The tiny ResNet pretrained on ``domain``'s pretrain classes (built on first use)."""
    from hf_l3rs.tasks.pretrain import pretrain, pretrain_config_for

    folder = cache_dir() / f"resnet-{domain}"
    if not (folder / "config.json").is_file():
        pretrain(pretrain_config_for(domain), folder)
    return folder / "model.safetensors"


def decoder_checkpoint(name: str) -> Path:
    """The decoder ``name`` pretrained on pydoc topics (built on first use)."""
    from hf_l3rs.tasks.text_pretrain import DecoderPretrainConfig, pretrain_decoder

    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; known: {sorted(DECODERS)}")
    folder = cache_dir() / f"decoder-{name}"
    meta = folder / "config.json"
    if not meta.is_file() or json.loads(meta.read_text()).get("decoder", {}).get("hidden_size") is None:
        pretrain_decoder(DecoderPretrainConfig(steps=DECODER_PRETRAIN_STEPS, decoder=DECODERS[name]), folder)
    return folder / "model.safetensors"
