"""The whole product on the embedded default, in one command (`make demo`).

1. render the kanji (D1) and clipart (D2) domains into HF datasets (cached);
2. pretrain a small timm ResNet on each domain's pretrain classes;
3. meta-train L3RS with NES on kanji tasks, 2 Accelerate CPU processes (resumable);
4. evaluate A–F against the Adam baselines (2 processes);
5. record the meta-trained L3RS's per-layer η/α dynamics (paper Fig. 4–5);
6. write outputs/demo/REPORT.md and a Hub-ready folder outputs/demo/hub (safetensors,
   config.json, model card with the evaluation tables as model-index metadata).
Every step is cached or resumable: running it again continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO_OPTIMIZERS = [
    "l3rs",
    "l3rs-untrained",
    "adam-const-1e-3",
    "adam-const-1e-4",
    "adam-cos-1e-3",
    "adam-cos-1e-4",
    "adam-const-head-1e-3",
    "adam-cos-head-1e-3",
    "momentum-const-1e-2",
]


def step(n: int, text: str) -> None:
    print(f"\n[demo {n}/6] {text}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--output", default=str(ROOT / "outputs" / "demo"))
    ap.add_argument("--config", default=str(ROOT / "examples" / "configs" / "cpu-kanji.yaml"))
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--num-tasks", type=int, default=6)
    ap.add_argument("--generations", type=int, default=None)
    args = ap.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    step(1, "preparing the embedded domains")
    from hf_l3rs.tasks.domains import prepare_domain

    for name in ("kanji", "clipart"):
        print(f"  {name}: {prepare_domain(name)}", flush=True)
    timings["prepare"] = time.perf_counter() - t0

    step(2, "pretraining the domain checkpoints")
    from hf_l3rs.tasks.pretrain import pretrain, pretrain_config_for

    ckpts = ROOT / "outputs" / "checkpoints"
    pre = {}
    for name in ("kanji", "clipart"):
        cfg_path = ckpts / name / "config.json"
        wanted = pretrain_config_for(name)
        if cfg_path.is_file() and json.loads(cfg_path.read_text())["config"]["steps"] == wanted.steps:
            pre[name] = json.loads(cfg_path.read_text())
            print(f"  {name}: cached ({100 * pre[name]['heldout_accuracy']:.1f}% held-out)")
        else:
            pre[name] = pretrain(wanted, ckpts / name)
            print(f"  {name}: {100 * pre[name]['heldout_accuracy']:.1f}% held-out accuracy ({pre[name]['seconds']} s)")
    timings["pretrain"] = time.perf_counter() - t0 - sum(timings.values())

    step(3, f"meta-training L3RS with NES on {args.processes} process(es)")
    from hf_l3rs.launch import launch_command

    run_dir = out / "metatrain"
    margs = ["--config", args.config, "--output", str(run_dir), "--resume"]
    if args.generations:
        margs += ["--generations", str(args.generations)]
    cmd, env = launch_command(str(ROOT / "examples" / "metatrain.py"), args.processes, margs)
    subprocess.run(cmd, env=env, check=True, cwd=ROOT)
    timings["metatrain"] = time.perf_counter() - t0 - sum(timings.values())

    step(4, "evaluating A-F against the Adam baselines")
    from hf_l3rs.meta.config import MetaTrainConfig

    mcfg = MetaTrainConfig.from_yaml(args.config)
    eval_cfg = {
        "checkpoints": {
            "D1": str(ckpts / "kanji" / "model.safetensors"),
            "D2": str(ckpts / "clipart" / "model.safetensors"),
        },
        "num_tasks": args.num_tasks,
        "horizons": [10, 25, 50, 100],
        "optimizers": DEMO_OPTIMIZERS,
        "l3rs": str(run_dir / "best"),
        "l3rs_label": "L3RS (meta-trained)",
    }
    (out / "eval.yaml").write_text(yaml.safe_dump(eval_cfg))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hf_l3rs.cli",
            "evaluate",
            "--config",
            str(out / "eval.yaml"),
            "--processes",
            str(args.processes),
            "--output",
            str(out / "evaluation"),
        ],
        check=True,
        cwd=ROOT,
    )
    results = json.loads((out / "evaluation" / "results.json").read_text())
    timings["evaluate"] = time.perf_counter() - t0 - sum(timings.values())

    step(5, "recording per-layer dynamics (paper Fig. 4-5)")
    from hf_l3rs.evaluation.dynamics import plot_dynamics, record
    from hf_l3rs.hub import load_net
    from hf_l3rs.optim import L3RS
    from hf_l3rs.tasks.registry import get_family

    net = load_net(run_dir / "best")
    family = get_family("images", **mcfg.family_kwargs)
    opt, _ = record(family.sample(0, "test"), lambda m, t: L3RS(m, net, total_steps=t), 100)
    plot_dynamics(opt, out, title="(meta-trained L3RS, kanji task, T=100)")
    timings["dynamics"] = time.perf_counter() - t0 - sum(timings.values())

    step(6, "writing the report and the Hub-ready folder")
    write_report(out, results, pre, run_dir, timings, mcfg)
    print(f"\n[demo] done in {(time.perf_counter() - t0) / 60:.1f} min: {out / 'REPORT.md'}")


def headline(results: dict, horizons_meta: tuple[int, int]) -> tuple[str, str]:
    """L3RS against the best Adam baseline on A at the meta-training horizons."""
    summary = results["evaluations"]["A"]["summary"]
    l3rs = "L3RS (meta-trained)"
    adams = [k for k in summary if k.startswith("Adam")]
    lines = [
        "| T | L3RS (meta-trained) | best Adam baseline at T | its accuracy | speedup F |",
        "|---|---|---|---|---|",
    ]
    sp = results.get("speedup", {})
    for h in results["config"]["horizons"]:
        best = max(adams, key=lambda k: summary[k]["accuracy"][str(h)]["mean"])
        f = sp.get(best, {}).get(str(h), {})
        fs = ("≥" if f.get("at_least") else "") + f"{f['speedup']:.2f}×" if f.get("speedup") else "not reached"
        mark = " (meta-training horizon)" if horizons_meta[0] <= h <= horizons_meta[1] else ""
        lines.append(
            f"| {h}{mark} | {100 * summary[l3rs]['accuracy'][str(h)]['mean']:.1f}% | {best} | "
            f"{100 * summary[best]['accuracy'][str(h)]['mean']:.1f}% | {fs} |"
        )
    return "\n".join(lines), l3rs


def write_report(out: Path, results: dict, pre: dict, run_dir: Path, timings: dict, mcfg) -> None:
    from hf_l3rs.evaluation.report import markdown
    from hf_l3rs.hub import load_net, save_net

    kw = mcfg.family_kwargs
    table, _ = headline(results, (kw.get("k_min", 0), kw.get("k_max", 0)))
    history = json.loads((run_dir / "history.json").read_text())
    vals = [h for h in history if "val_fitness" in h]
    text = "\n".join(
        [
            "# hf_l3rs demo report",
            "",
            "Everything below was produced by `make demo` on this machine, from the embedded domains.",
            "",
            "## Checkpoints",
            "",
            f"- kanji (D1): {pre['kanji']['num_classes']} pretrain classes, held-out accuracy "
            f"{100 * pre['kanji']['heldout_accuracy']:.1f}%",
            f"- clipart (D2): {pre['clipart']['num_classes']} pretrain classes, held-out accuracy "
            f"{100 * pre['clipart']['heldout_accuracy']:.1f}%",
            "",
            "## Meta-training",
            "",
            f"NES on `{mcfg.family}` tasks ({kw}), {history[-1]['generation']} generations. Validation fitness "
            f"(−loss on fixed meta-train-distribution tasks): untrained {vals[0]['val_fitness']:.4f} → "
            f"best {max(v['val_fitness'] for v in vals):.4f}.",
            "",
            "![meta-training curve](metatrain/meta_training_curve.png)",
            "",
            "## Evaluation A at the meta-training horizons",
            "",
            table,
            "",
            "Speedup F: steps the best Adam baseline takes divided by the steps the meta-trained L3RS needs to "
            "reach its accuracy (log-interpolated between horizons). The paper's goal on ImageNet is ≥ 2×.",
            "",
            "![A](evaluation/eval_A.png)",
            "",
            "![F](evaluation/speedup_F.png)",
            "",
            "## L3RS dynamics (paper Fig. 4–5)",
            "",
            "![layers](dynamics_layers.png)",
            "",
            "![mean](dynamics_mean.png)",
            "",
            "## All tables",
            "",
            markdown(results),
            "",
            "## Time",
            "",
            " · ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()),
            "",
        ]
    )
    (out / "REPORT.md").write_text(text)
    hub = out / "hub"
    if hub.exists():
        shutil.rmtree(hub)
    summary = results["evaluations"]["A"]["summary"]["L3RS (meta-trained)"]["accuracy"]
    model_index = [
        {
            "name": "l3rs-kanji-tiny",
            "results": [
                {
                    "task": {
                        "type": "image-classification",
                        "name": "fine-tuning (evaluation A, kanji meta-test tasks)",
                    },
                    "dataset": {"type": "kanjivg-rendered", "name": "KanjiVG rendered (embedded D1)"},
                    "metrics": [
                        {"type": "accuracy", "name": f"accuracy after {h} steps", "value": round(summary[h]["mean"], 4)}
                        for h in summary
                    ],
                }
            ],
        }
    ]
    save_net(
        load_net(run_dir / "best"),
        hub,
        card={
            "title": "L3RS meta-trained on kanji fine-tuning tasks (hf_l3rs demo)",
            "repo_id": "path/to/outputs/demo/hub",
            "training": (run_dir / "best" / "README.md")
            .read_text()
            .split("## Meta-training", 1)[-1]
            .split("## Evaluation", 1)[0]
            .strip(),
            "evaluation": table,
            "model_index": model_index,
            "datasets": ["kanjivg"],
            "tags": ["kanji"],
        },
    )
    for png in ("dynamics_layers.png", "dynamics_mean.png"):
        shutil.copy(out / png, hub / png)


if __name__ == "__main__":
    main()
