"""VeLO-lite's meta-weights folder (the layout of L3RS's, a ``velo_lite`` config block) and
card, and its registration with hf_l3rs's learned-optimizer plugins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hf_l3rs.optim.learned as learned
from experiments.velo.config import VeLOLiteConfig
from experiments.velo.network import VeLOLiteNet
from experiments.velo.optimizer import VeLOLite
from hf_l3rs.optim.cards import card_metadata
from hf_l3rs.optim.config import ConfigError
from hf_l3rs.optim.hub import CONFIG_NAME, FORMAT, WEIGHTS_NAME, CheckpointError, load_tensors, read_card


def load(folder: Path, raw: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """VeLO-lite meta-weights (docs/design.md §5): the same folder layout, a ``velo_lite`` config."""
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{folder / CONFIG_NAME}: format {raw.get('format')!r} is not {FORMAT!r}")
    try:
        config = VeLOLiteConfig.from_dict({**raw["velo_lite"], **overrides})
    except ConfigError as exc:
        raise ConfigError(f"{folder / CONFIG_NAME}: {exc}") from exc
    net = VeLOLiteNet(config)
    tensors = load_tensors(folder)
    expected = net.state_dict()
    if set(tensors) != set(expected) or any(tensors[k].shape != expected[k].shape for k in expected):
        raise CheckpointError(f"{folder / WEIGHTS_NAME}: tensors do not match the VeLO-lite config")
    net.load_state_dict(tensors, strict=True)
    net.card_info = read_card(folder)
    return net


def render_card(net: Any, info: dict[str, Any]) -> str:
    """The card of VeLO-lite meta-weights (the learned baseline, docs/design.md §5)."""
    cfg = net.config
    title = info.get("title", "VeLO-lite meta-weights")
    lines = [
        "---",
        card_metadata({**info, "tags": [*info.get("tags", []), "velo-lite"]}),
        "---",
        "",
        f"# {title}",
        "",
        "A per-parameter learned optimizer in the VeLO family (a per-tensor LSTM that mixes a bank of "
        "per-parameter MLPs), built by hf_l3rs as the learned baseline of its evaluation. These are not "
        "Google's VeLO weights (none exist offline); they were meta-trained with hf_l3rs's own NES and tasks.",
        "",
        "```python",
        "from hf_l3rs.optim.velo import VeLOLite",
        "",
        f'opt = VeLOLite.from_pretrained("{info.get("repo_id", "path/to/this/folder")}", model, total_steps=T)',
        "```",
        "",
        f"- meta-parameters: {net.num_meta_parameters:,}; LSTM {cfg.lstm_hidden} units, bank of {cfg.bank_size} "
        f"MLPs with {cfg.mlp_hidden} units; base rate {cfg.base_lr:g} on a {cfg.rate_schedule} prior",
        "",
        "## Meta-training",
        "",
        info.get("training", "Not recorded."),
        "",
        "## Evaluation",
        "",
        info.get("evaluation", "No evaluation recorded."),
        "",
    ]
    return "\n".join(lines)


def make_net(block: dict[str, Any], seed: int) -> VeLOLiteNet:
    return VeLOLiteNet(VeLOLiteConfig.from_dict(dict(block)), seed=seed)


SPEC = learned.LearnedOptimizer(
    name="velo-lite",
    config_key="velo_lite",
    optimizer=VeLOLite,
    net_type=VeLOLiteNet,
    make_net=make_net,
    load=load,
    render_card=render_card,
)
learned.register(SPEC)
