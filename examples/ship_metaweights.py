"""Turn a meta-training run into a shipped meta-weights folder: the run's ``best/`` weights,
its meta-training curve, and a model card carrying the curve and the tuned-benchmark table.

    python examples/ship_metaweights.py --run runs/cpu-kanji-long \
        --benchmark outputs/benchmark-new/tuned.json --label "L3RS (l3rs-kanji-cosine)" \
        --name l3rs-kanji-cosine [--set hypergradient_rate=0.4 --note "..."]

Several ``--benchmark`` files (each holding ``--label``) give one table per evaluation;
``--extra`` appends a markdown file (e.g. language-model results) to the card's evaluation.

writes ``hf_l3rs/pretrained/<name>/`` (or ``--output``): model.safetensors, config.json,
README.md (card with model-index metadata) and meta_training_curve.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setting(cfg: dict, ev: str) -> str:
    """'checkpoint → dataset' of evaluation ``ev`` under the benchmark's domains."""
    from hf_l3rs.evaluation.protocol import EVALUATIONS

    init, tasks = EVALUATIONS[ev]
    start = "random init" if init is None else f"{Path(cfg['checkpoints'].get(init, init)).parent.name} checkpoint"
    return f"{start}, {cfg['domains'][tasks]} meta-test tasks"


def benchmark_section(results: dict, label: str) -> tuple[str, list[dict]]:
    """The card's evaluation text (the tuned benchmark's table for ``label``) and the
    model-index entries (accuracy and loss per horizon and evaluation)."""
    from hf_l3rs.evaluation.protocol import EVALUATIONS
    from hf_l3rs.evaluation.tuned_report import _num, _paired, _speedup

    cfg = results["config"]
    lines = [
        f"Tuned benchmark (`hf-l3rs benchmark`, docs/design.md §4.2): {cfg['test_tasks']} meta-test tasks "
        f"per cell, never seen in meta-training; every baseline family ({', '.join(cfg['families'])}) tuned per "
        f"horizon and metric on {cfg['val_tasks']} validation tasks, rate grid extended at its edges. "
        "Paired Δ and speedup F against the best tuned baseline at each T (68 % bootstrap interval).",
        "",
    ]
    index = []
    for ev, data in results["evaluations"].items():
        comp = data["comparisons"][label]
        lines += [
            f"**Evaluation {ev}: {_setting(cfg, ev)}**",
            "",
            f"| T | metric | best tuned baseline | baseline | {label} | paired Δ | speedup F |",
            "|---|---|---|---|---|---|---|",
        ]
        metrics = []
        for h in map(str, cfg["horizons"]):
            for metric in ("accuracy", "loss"):
                b, mine, c = data["best"][metric][h], data["summary"][label][metric][h], comp[metric][h]
                lines.append(
                    f"| {h} | {metric} | {b['family']} ({b['lr']:.3g}) | {_num(b['mean'], metric, b['se'])} "
                    f"| {_num(mine['mean'], metric, mine['se'])} | {_paired(c['paired'], metric)} | {_speedup(c)} |"
                )
                if mine["mean"] is not None:
                    value = round(mine["mean"], 4)
                    metrics.append({"type": metric, "name": f"{metric} after {h} steps", "value": value})
        lines.append("")
        index.append(
            {
                "task": {"type": "image-classification", "name": f"fine-tuning, evaluation {ev}"},
                # The Hub groups metrics by task and dataset type, config and split: A, C and
                # E share their tasks' dataset and differ in the checkpoint, so the
                # evaluation is the config (else C's and E's metrics read as A's).
                "dataset": {
                    "type": cfg["domains"][EVALUATIONS[ev][1]],
                    "name": _setting(cfg, ev),
                    "config": f"evaluation-{ev}",
                    "split": "meta-test",
                },
                "metrics": metrics,
            }
        )
    return "\n".join(lines), index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="meta-training output folder (has best/ and history.json)")
    ap.add_argument(
        "--benchmark", nargs="+", required=True, help="tuned.json file(s) of `hf-l3rs benchmark` that include --label"
    )
    ap.add_argument("--title", default=None, help="card title (default: meta-trained on kanji fine-tuning tasks)")
    ap.add_argument("--datasets", nargs="*", default=["kanjivg"], help="card metadata: datasets")
    ap.add_argument("--tags", nargs="*", default=["kanji"], help="card metadata: tags")
    ap.add_argument("--extra", default=None, help="markdown file appended to the card's evaluation section")
    ap.add_argument("--label", required=True, help="the L3RS entry of the benchmark that is these weights")
    ap.add_argument("--name", required=True, help="name of the shipped folder (and model-index name)")
    ap.add_argument("--output", default=None, help="folder (default hf_l3rs/pretrained/<name>)")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=JSON",
        help="config fields that do not change the network, e.g. hypergradient_rate=0.4",
    )
    ap.add_argument("--note", default="", help="a paragraph for the card (what --set changes and why)")
    args = ap.parse_args()

    from hf_l3rs.optim.hub import load_net, save_net

    run, out = Path(args.run), Path(args.output or ROOT / "hf_l3rs" / "pretrained" / args.name)
    sections, index = [], []
    for path in args.benchmark:
        results = json.loads(Path(path).read_text())
        if not any(args.label in ev["comparisons"] for ev in results["evaluations"].values()):
            raise SystemExit(f"{path} has no L3RS entry {args.label!r}")
        text, entries = benchmark_section(results, args.label)
        sections.append(text)
        index += entries
    if args.extra:
        sections.append(Path(args.extra).read_text().strip())
    evaluation = "\n\n".join(sections)
    training = (run / "best" / "README.md").read_text().split("## Meta-training", 1)[-1].split("## Evaluation", 1)[0]
    training = training.strip() + "\n\n![meta-training curve](meta_training_curve.png)"
    from hf_l3rs.analysis.variant import parse_overrides
    from hf_l3rs.optim.components import Component

    net = load_net(run / "best", **parse_overrides(args.set))
    if args.note:
        training = args.note.strip() + "\n\n" + training
    trained = json.loads((run / "best" / "config.json").read_text())["trained_components"]
    components = [Component(c["name"], c["role"], c["depth"], c["numel"]) for c in trained]
    if out.exists():
        shutil.rmtree(out)
    save_net(
        net,
        out,
        components=components,
        card={
            "title": args.title
            or f"{'VeLO-lite' if type(net).__name__ == 'VeLOLiteNet' else 'L3RS'} meta-trained on kanji "
            f"fine-tuning tasks ({args.name})",
            "repo_id": args.name,
            "training": training,
            "evaluation": evaluation,
            "model_index": [{"name": args.name, "results": index}],
            "datasets": args.datasets,
            "tags": args.tags,
        },
    )
    shutil.copy(run / "meta_training_curve.png", out / "meta_training_curve.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
