"""Linear probes: only the classifier trains, the backbone is frozen (docs/adr/0006 "Frozen
tensors count for depth").

L3RS with no learning rate against head-only Adam at the rate the tuned benchmark chose on
validation tasks for the same family and horizon (read from that benchmark's ``tuned.json``),
on the same held-out test tasks, paired; and L3RS as it was before frozen tensors counted for
depth (the trained tensors handed over without the model), to show what the fix changed.

    python examples/linear_probe.py --families A D F C --output outputs/linear_probe.json

writes the per-task results (JSON) and, beside them, the paired table (``.md``).

Needs `hf-l3rs prepare-data`, `hf-l3rs pretrain` and the tuned benchmarks named in TUNED
(`hf-l3rs benchmark --evaluations D ...`, `--config examples/configs/benchmark-fashion.yaml`,
`--evaluations C E`); evaluation A's head-only rates are the ones the README's tuned table gives.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from hf_l3rs import L3RS
from hf_l3rs.evaluation.protocol import EvalConfig, Protocol
from hf_l3rs.evaluation.stats import mean_se
from hf_l3rs.optim.hub import load_net
from hf_l3rs.registry import parse_optimizer
from hf_l3rs.tasks.inner_loop import run_task

CHECKPOINTS = {
    "kanji": "outputs/checkpoints/kanji/model.safetensors",
    "clipart": "outputs/checkpoints/clipart/model.safetensors",
}
#: family -> (checkpoint domain, task dataset, tuned benchmark folder and evaluation)
FAMILIES = {
    "A": ("kanji", "kanji", None),
    "C": ("clipart", "kanji", ("outputs/benchmark-CE-run", "C")),
    "D": ("clipart", "clipart", ("outputs/benchmark-D-run", "D")),
    "F": ("clipart", "fashion", ("outputs/benchmark-fashion-run", "D")),
}
A_RATES = {10: 1e-2, 25: 1e-2, 50: 1e-2, 100: 10**-2.5}
HORIZONS = (10, 25, 50, 100)


def test_tasks(name: str, count: int) -> list:
    """The family's held-out tasks, each building its model with everything but ``fc`` frozen."""
    init, data, _ = FAMILIES[name]
    domains = {"D1": data, "D2": init}
    config = EvalConfig(domains=domains, checkpoints={"D2": CHECKPOINTS[init]}, optimizers=[], evaluations=["A"])
    family = Protocol(config, progress=False).family("D2", "D1")
    tasks = [family.sample(seed, "test") for seed in range(count)]
    for task in tasks:
        build = task.init_model

        def frozen(build=build):
            model = build()
            for pname, p in model.named_parameters():
                p.requires_grad_(pname.startswith("fc."))
            return model

        task.init_model = frozen
    return tasks


def trained_tensors(model: torch.nn.Module) -> list:
    """The trainable (name, tensor) pairs without the model: depth counted among them (before)."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def head_rates(name: str) -> dict[int, float]:
    source = FAMILIES[name][2]
    if source is None:
        return dict(A_RATES)
    folder, evaluation = source
    test = json.loads((Path(folder) / "tuned.json").read_text())["evaluations"][evaluation]["test"]
    return {h: test["adam-const-head"]["accuracy"][str(h)]["lr"] for h in HORIZONS}


def table(results: dict[str, dict]) -> list[str]:
    """Markdown: mean accuracy / loss per family and horizon, and paired differences (mean ± s.e.
    over tasks; * beyond 2 s.e.)."""

    def cell(runs: dict) -> str:
        return f"{100 * mean_se(runs['acc'])[0]:.1f} % / {mean_se(runs['loss'])[0]:.3f}"

    def diff(a: dict, b: dict, key: str, scale: float, digits: int) -> str:
        m, se = mean_se([scale * (x - y) for x, y in zip(a[key], b[key])])
        return f"{m:+.{digits}f} ± {se:.{digits}f}" + (" *" if abs(m) > 2 * se else "")

    lines = []
    for name, res in results.items():
        lines += [
            f"### {name}",
            "",
            "| T | head-only Adam (rate) | L3RS before | L3RS after "
            "| after − Adam: Δ acc (pt) / Δ loss | after − before: Δ acc |",
            "|---|---|---|---|---|---|",
        ]
        for h in HORIZONS:
            new, old, adam = (res[k][h] for k in ("l3rs-new", "l3rs-old", "adam-head"))
            lines.append(
                f"| {h} | {cell(adam)} ({res['rates'][h]:.3g}) | {cell(old)} | {cell(new)} "
                f"| {diff(new, adam, 'acc', 100, 1)} / {diff(new, adam, 'loss', 1, 2)} "
                f"| {diff(new, old, 'acc', 100, 1)} |"
            )
        lines.append("")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--meta-weights", default="l3rs-general")
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--output", default="outputs/linear_probe.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    net = load_net(args.meta_weights)
    results: dict[str, dict] = {}
    for name in args.families:
        rates = head_rates(name)
        tasks = test_tasks(name, args.tasks)
        makers = {
            "l3rs-new": lambda h: lambda m, total: L3RS(m, net, total_steps=total),
            "l3rs-old": lambda h: lambda m, total: L3RS(trained_tensors(m), net, total_steps=total),
            "adam-head": lambda h, rates=rates: parse_optimizer(f"adam-const-head-{rates[h]:.3g}").factory(),
        }
        start = time.perf_counter()
        results[name] = {"rates": rates}
        for label, make in makers.items():
            results[name][label] = {}
            for h in HORIZONS:
                runs = [run_task(task, make(h), num_steps=h) for task in tasks]
                results[name][label][h] = {
                    "acc": [float(r.eval_accuracy) for r in runs],
                    "loss": [float(r.eval_loss) for r in runs],
                }
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results))
        Path(args.output).with_suffix(".md").write_text("\n".join(table(results)) + "\n")


if __name__ == "__main__":
    main()
