"""Model cards for meta-weights, rendered from the templates in ``hub_cards``."""

from __future__ import annotations

import json
from string import Template
from typing import Any

import yaml

from hf_l3rs.optim.network import L3RSNet


def _metadata(info: dict[str, Any]) -> str:
    meta: dict[str, Any] = {
        "library_name": "hf_l3rs",
        "license": info.get("license", "apache-2.0"),
        "tags": ["learned-optimizer", "l3rs", "optimizer", *info.get("tags", [])],
    }
    if info.get("datasets"):
        meta["datasets"] = list(info["datasets"])
    if info.get("model_index"):
        meta["model-index"] = info["model_index"]
    return yaml.safe_dump(meta, sort_keys=False).strip()


def render_card(net: L3RSNet, info: dict[str, Any]) -> str:
    """Fill ``hub_cards/l3rs_card.md``. ``info`` keys: title, repo_id, training (Markdown),
    evaluation (Markdown), datasets, tags, license, model_index (HF model-index list)."""
    from hf_l3rs.hub_cards import template

    cfg = net.config
    values = {
        "metadata": _metadata(info),
        "title": info.get("title", "L3RS meta-weights"),
        "repo_id": info.get("repo_id", "path/to/this/folder"),
        "directions": ", ".join(cfg.directions),
        "variant": cfg.variant,
        "norm": cfg.norm,
        "num_meta": f"{net.num_meta_parameters:,}",
        "num_components": str(cfg.num_components),
        "base_lr": f"{cfg.base_lr:g}",
        # 6 significant digits, not 6 decimals: ε ≈ 1e-8 must not print as 0.0
        "hyper": json.dumps({d: {k: float(f"{v:.6g}") for k, v in h.items()} for d, h in net.hyper_values().items()}),
        "rate_schedule": cfg.rate_schedule,
        "training": info.get("training", "Not recorded (untrained or trained outside `hf-l3rs metatrain`)."),
        "evaluation": info.get("evaluation", "No evaluation recorded."),
    }
    return Template(template()).safe_substitute(values)
