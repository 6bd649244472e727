"""The model card of shipped meta-weights, generated with ``huggingface_hub.ModelCard`` from the
benchmark's committed test report (issue 40: cards whose numbers come from result files).

``python -m hf_l3rs.benchmark.card WEIGHTS_FOLDER REPORT_JSON`` writes ``WEIGHTS_FOLDER/README.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hf_l3rs.benchmark import acceptance
from hf_l3rs.benchmark.report import render_summary

PEER_NAMES = {
    "schedulefree-adamw": "schedule-free AdamW",
    "prodigy": "Prodigy",
    "dadapt-adam": "D-Adaptation Adam",
    "muon": "Muon",
    "adamw-default": "AdamW 1e-3",
    "adamw": "tuned AdamW",
}
TASK_TYPES = {
    "vision-scratch": "image-classification",
    "vision-finetune": "image-classification",
    "text-encoder-trainer": "text-classification",
    "causal-lm-full": "text-generation",
    "causal-lm-lora": "text-generation",
}
CITATION = """@article{l3rs,
  title  = {Narrowing the Focus: Learned Optimizers for Pretrained Models},
  note   = {the L3RS paper; hf_l3rs is an independent implementation}
}"""


def eval_results(report: dict[str, Any]) -> list[Any]:
    """One EvalResult per test case and metric for L3RS (mean over the score seeds)."""
    from huggingface_hub import EvalResult

    out = []
    for case in report["cases"]:
        l3rs = case["peers"]["l3rs"]
        for metric, values in (("loss", l3rs["loss"]), ("accuracy", l3rs["accuracy"])):
            finite = [v for v in values if v is not None and v == v and abs(v) != float("inf")]
            if not finite:
                continue
            out.append(
                EvalResult(
                    task_type=TASK_TYPES[case["kind"]],
                    task_name=f"{case['name']} ({case['steps']} steps, no learning rate)",
                    dataset_type=case["name"],
                    dataset_name=case["description"],
                    dataset_split="test",
                    metric_type=metric,
                    metric_name=f"held-out {metric}, mean of {len(finite)} seeds",
                    metric_value=round(sum(finite) / len(finite), 4),
                )
            )
    return out


def _means_beside_peers(report: dict[str, Any], metric: str):
    """(case name, peer's display name, L3RS's mean, the peer's mean) of ``metric`` over the score
    seeds, for every case and every named peer that ran it."""
    for case in report["cases"]:
        mine = case["peers"]["l3rs"][metric]
        for peer, name in PEER_NAMES.items():
            other = case["peers"].get(peer)
            if other is not None:
                yield case["name"], name, sum(mine) / len(mine), sum(other[metric]) / len(other[metric])


def losses(report: dict[str, Any]) -> list[str]:
    """Plain sentences naming every case where L3RS trails a peer in accuracy by > 0.5 points."""
    return [
        f"- {case}: {100 * (theirs - acc):.1f} accuracy points behind {name}"
        for case, name, acc, theirs in _means_beside_peers(report, "accuracy")
        if theirs - acc > 0.005
    ]


def loss_losses(report: dict[str, Any], tolerance: float = 1.05) -> list[str]:
    """Plain sentences naming every case where L3RS's mean test loss exceeds a peer's by more than
    ``tolerance`` (issue 37's bar against tuned AdamW): a higher loss at equal accuracy is an
    over-confident model, which accuracy alone hides."""
    return [
        f"- {case}: test loss {loss:.3f}, {loss / theirs:.2f}× {name}'s {theirs:.3f}"
        for case, name, loss, theirs in _means_beside_peers(report, "loss")
        if loss > tolerance * theirs
    ]


def render(report: dict[str, Any], folder: Path, meta_training: str) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    config = json.loads((folder / "config.json").read_text())["l3rs"]
    curve = (
        "\n\n![meta-training curve: fitness against generation](meta_training_curve.png)"
        if (folder / "meta_training_curve.png").is_file()
        else ""
    )
    data = ModelCardData(
        library_name="hf_l3rs",
        license="apache-2.0",
        tags=["learned-optimizer", "l3rs", "optimizer"],
        model_name=f"{report['weights']}@{report['weights_version']}",
        eval_results=eval_results(report),
    )
    body = f"""
# {report["weights"]} — L3RS meta-weights (version `{report["weights_version"]}`)

A learned optimizer for [hf_l3rs](https://github.com/hf-l3rs/hf_l3rs): a small MLP over
optimization-state features gives every parameter tensor a rate and a mix of base directions
({", ".join(config["directions"])}), as in the L3RS paper. Use it with **no learning rate**:

```python
from hf_l3rs import L3RS

opt = L3RS.from_pretrained("{report["weights"]}", model)  # no lr, no schedule, no horizon
loss.backward()
opt.step(loss=loss)
opt.zero_grad()  # L3RS reads each step's loss
```

## Intended use
Fine-tuning pretrained vision models and language models (full or LoRA) and short runs from
random init, on a CPU or a GPU, where you would otherwise pick a learning-rate-free optimizer.
Per-tensor rate adaptation at rate {config.get("hypergradient_rate", 0.0):g} (target
{config.get("adaptation_target", 0.0):g}, multipliers in [{config.get("adaptation_min", 1 / 30):.3g},
{config.get("adaptation_max", 30.0):g}]), base rate {config["base_lr"]:g}; every other number is
meta-learned or the paper's (docs/adr/0004, 0014).

## Results: benchmark suite {report["suite"]}, test split, scored once for this version
`{report["command"]}` — five cases these weights never saw (other data and models than the
dev split and the meta-training mixture), {len(report["score_seeds"])} paired seeds.

{render_summary(report)}

{acceptance.render(report)}
## Limitations
Where it loses (accuracy, mean over seeds):

{chr(10).join(losses(report)) or "- nowhere by more than 0.5 points"}

Where its test loss is more than 1.05× a peer's (mean over seeds):

{chr(10).join(loss_losses(report)) or "- nowhere"}

A step costs more than fused AdamW's (see the report's step-time column); the network was
meta-trained on a 41-tensor ResNet and maps other architectures' tensors to the nearest trained
role and depth.

## Training data and cost
{meta_training}{curve}

## Citation
```bibtex
{CITATION}
```
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folder", help="the weights folder (config.json, model.safetensors)")
    ap.add_argument("report", help="the committed test report.json of these weights")
    ap.add_argument("--meta-training", default="Not recorded.", help="a paragraph: data, runs, CPU-hours")
    args = ap.parse_args()
    folder = Path(args.folder)
    report = json.loads(Path(args.report).read_text())
    (folder / "README.md").write_text(render(report, folder, args.meta_training))
    print(f"wrote {folder / 'README.md'}")


if __name__ == "__main__":
    main()
