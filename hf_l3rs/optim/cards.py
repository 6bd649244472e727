"""Model cards for meta-weights, rendered from the templates in ``hub_cards``."""

from __future__ import annotations

import json
from typing import Any

from hf_l3rs.optim.network import L3RSNet

#: Tags every hf_l3rs card carries (a re-save does not repeat them from the loaded card).
BASE_TAGS = ("learned-optimizer", "l3rs", "optimizer")


def eval_results(model_index: list[dict[str, Any]]) -> list[Any]:
    """Hub model-index entries (``[{"name", "results": [{"task", "dataset", "metrics"}]}]``)
    as ``huggingface_hub.EvalResult``s; every result needs its task type and dataset."""
    from huggingface_hub import EvalResult

    out = []
    for entry in model_index:
        for result in entry.get("results", []):
            task, dataset = result.get("task", {}), result.get("dataset", {})
            if "type" not in task or "type" not in dataset or "name" not in dataset:
                raise ValueError("model_index results need task.type, dataset.type and dataset.name")
            for metric in result.get("metrics", []):
                out.append(
                    EvalResult(
                        task_type=task["type"],
                        task_name=task.get("name"),
                        dataset_type=dataset["type"],
                        dataset_name=dataset["name"],
                        dataset_config=dataset.get("config"),
                        dataset_split=dataset.get("split"),
                        metric_type=metric["type"],
                        metric_value=metric["value"],
                        metric_name=metric.get("name"),
                    )
                )
    return out


def card_data(info: dict[str, Any]) -> Any:
    """The card's metadata as ``huggingface_hub.ModelCardData`` (model-index from
    ``EvalResult``s), so the Hub and ``ModelCard.load`` read it as they read any model's."""
    from huggingface_hub import ModelCardData

    index = info.get("model_index") or []
    data = ModelCardData(
        library_name="hf_l3rs",
        license=info.get("license", "apache-2.0"),
        tags=[*BASE_TAGS, *[t for t in info.get("tags", []) if t not in BASE_TAGS]],
        datasets=list(info["datasets"]) if info.get("datasets") else None,
        model_name=index[0].get("name") if index else None,
        eval_results=eval_results(index) or None,
    )
    return data


def card_metadata(info: dict[str, Any]) -> str:
    """:func:`card_data` as the YAML between a card's ``---`` lines."""
    return card_data(info).to_yaml().strip()


def render_card(net: L3RSNet, info: dict[str, Any]) -> str:
    """Render ``hub_cards/l3rs_card.md`` with ``huggingface_hub.ModelCard.from_template``. ``info``
    keys: title, repo_id, training (Markdown),
    evaluation (Markdown), datasets, tags, license, model_index (HF model-index list)."""
    if not isinstance(net, L3RSNet):
        import hf_l3rs.optim.learned as learned

        other = learned.for_net(net)
        if other is None:
            raise TypeError(f"no model card for {type(net).__name__} meta-weights: not a registered learned optimizer")
        return other.render_card(net, info)
    from huggingface_hub import ModelCard

    from hf_l3rs.hub_cards import template

    cfg = net.config
    values = {
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
        "training": info.get("training", "Not recorded (untrained or trained outside `hf-l3rs metatrain`)."),
        "evaluation": info.get("evaluation", "No evaluation recorded."),
    }
    # huggingface_hub renders the Jinja template with the metadata as ``card_data``
    card = ModelCard.from_template(card_data(info), template_str=template(), **values)
    return str(card).rstrip("\n") + "\n"
