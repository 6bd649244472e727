"""The whole product on the embedded default, in one command (`make demo`).

1. render the kanji (D1) and clipart (D2) domains into HF datasets (cached);
2. pretrain a small timm ResNet on each domain's pretrain classes;
3. meta-train L3RS briefly with NES on kanji tasks (the recipe of l3rs-kanji-cosine, 30 of its
   640 generations; the shipped l3rs-kanji-whiten continues that rule on short runs with a
   whitened head direction), 2 Accelerate CPU processes (resumable);
4. benchmark it, the shipped meta-weights (whole model and as a linear probe) and the
   untrained L3RS against the strongest baseline families, each tuned per horizon on
   validation tasks (2 processes);
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
#: The strongest families of the full tuned benchmark (README), tuned again here on the
#: demo's validation tasks; the full set is `hf-l3rs benchmark`.
DEMO_FAMILIES = ["adam-const-head", "nesterov-cos", "adam-warmcos", "shampoo-const-head", "foof-const-head"]
DEMO_LABEL = "L3RS (this demo's run)"
#: The bundled meta-weights from the long run, reported beside the demo's own short run.
SHIPPED = "l3rs-kanji-whiten"


def step(n: int, text: str) -> None:
    print(f"\n[demo {n}/6] {text}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--output", default=str(ROOT / "outputs" / "demo"))
    ap.add_argument("--config", default=str(ROOT / "examples" / "configs" / "cpu-kanji-long.yaml"))
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--num-tasks", type=int, default=10, help="test tasks of the benchmark")
    ap.add_argument("--val-tasks", type=int, default=4, help="validation tasks that tune the baselines")
    ap.add_argument(
        "--generations", type=int, default=30, help="NES generations of the demo's own short run (the shipped: 640)"
    )
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
    from hf_l3rs.meta.trainer import has_checkpoint

    margs = ["--config", args.config, "--output", str(run_dir)] + (["--resume"] if has_checkpoint(run_dir) else [])
    if args.generations:
        margs += ["--generations", str(args.generations)]
    cmd, env = launch_command(str(ROOT / "examples" / "metatrain.py"), args.processes, margs)
    subprocess.run(cmd, env=env, check=True, cwd=ROOT)
    timings["metatrain"] = time.perf_counter() - t0 - sum(timings.values())

    step(4, "benchmarking against baselines tuned per horizon on validation tasks")
    from hf_l3rs.meta.config import MetaTrainConfig
    from hf_l3rs.optim.hub import bundled_weights

    mcfg = MetaTrainConfig.from_yaml(args.config)
    entries = {DEMO_LABEL: str(run_dir / "best")}
    if SHIPPED in bundled_weights():
        entries[f"L3RS (shipped {SHIPPED})"] = SHIPPED
    entries["L3RS (untrained)"] = None
    bench_cfg = {
        "checkpoints": {
            "D1": str(ckpts / "kanji" / "model.safetensors"),
            "D2": str(ckpts / "clipart" / "model.safetensors"),
        },
        "evaluations": ["A"],
        "horizons": [10, 25, 50, 100],
        "families": DEMO_FAMILIES,
        "val_tasks": args.val_tasks,
        "test_tasks": args.num_tasks,
        "l3rs": entries,
    }
    if SHIPPED in bundled_weights():  # the shipped weights trained as a linear probe (README)
        bench_cfg["l3rs_probes"] = {f"L3RS probe (shipped {SHIPPED})": SHIPPED}
    (out / "benchmark.yaml").write_text(yaml.safe_dump(bench_cfg, sort_keys=False))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hf_l3rs.cli",
            "benchmark",
            "--config",
            str(out / "benchmark.yaml"),
            "--processes",
            str(args.processes),
            "--output",
            str(out / "benchmark"),
            "--reuse-baselines",
        ],
        check=True,
        cwd=ROOT,
    )
    results = json.loads((out / "benchmark" / "tuned.json").read_text())
    timings["benchmark"] = time.perf_counter() - t0 - sum(timings.values())

    step(5, "recording per-layer dynamics (paper Fig. 4-5)")
    from hf_l3rs.evaluation.dynamics import plot_dynamics, record
    from hf_l3rs.optim import L3RS
    from hf_l3rs.optim.hub import load_net
    from hf_l3rs.tasks.registry import get_family

    net = load_net(run_dir / "best")
    family = get_family("images", **mcfg.family_kwargs)
    opt, _ = record(family.sample(0, "test"), lambda m, t: L3RS(m, net, total_steps=t), 100)
    plot_dynamics(opt, out, title="(meta-trained L3RS, kanji task, T=100)")
    timings["dynamics"] = time.perf_counter() - t0 - sum(timings.values())

    step(6, "writing the report and the Hub-ready folder")
    write_report(out, results, pre, run_dir, timings, mcfg)
    print(f"\n[demo] done in {(time.perf_counter() - t0) / 60:.1f} min: {out / 'REPORT.md'}")


def write_report(out: Path, results: dict, pre: dict, run_dir: Path, timings: dict, mcfg) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    from ship_metaweights import benchmark_section

    from hf_l3rs.evaluation.tuned_report import markdown
    from hf_l3rs.optim.hub import load_net, save_net

    kw = mcfg.family_kwargs
    table, model_index = benchmark_section(results, DEMO_LABEL)
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
            "## Against baselines tuned per horizon (evaluation A)",
            "",
            table,
            "",
            "![A](benchmark/tuned_A.png)",
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
            "model_index": [{"name": "l3rs-kanji-demo", "results": model_index}],
            "datasets": ["kanjivg"],
            "tags": ["kanji"],
        },
    )
    for png in ("dynamics_layers.png", "dynamics_mean.png"):
        shutil.copy(out / png, hub / png)


if __name__ == "__main__":
    main()
