"""NES throughput: candidate-task evaluations per second with 1 and with 2 CPU processes
(one thread each), and the share of wall time spent communicating and in the strategy.

Runs examples/metatrain.py twice on the same config (two-moons tasks unless --config),
through `accelerate launch` for 2 processes. The generation loop is timed inside the
trainer (timing.json), so start-up is excluded. The runs are sequential, never parallel.
Usage: python benchmarks/nes_throughput.py [--generations 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def launch(nproc: int, config: Path, out: Path) -> dict:
    from hf_l3rs.launch import launch_command

    cmd, env = launch_command(
        str(ROOT / "examples" / "metatrain.py"), nproc, ["--config", str(config), "--output", str(out), "--no-trackers"]
    )
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return json.loads((out / "timing.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default=None)
    ap.add_argument("--generations", type=int, default=20)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.config:
        cfg = yaml.safe_load(Path(args.config).read_text())
    else:
        cfg = {
            "name": "bench",
            "family": "two_moons_mlp",
            "family_kwargs": {"k_min": 20, "k_max": 50},
            "l3rs": {"base_lr": 0.1},
            "nes": {"popsize": 8, "sigma": 0.02, "learning_rate": 0.02},
            "tasks_per_generation": 2,
            "val_every": 1000,
            "val_tasks": 2,
            "checkpoint_every": 1000,
        }
    cfg["generations"] = args.generations
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(cfg))
        for nproc in (1, 2):
            t = launch(nproc, path, Path(tmp) / f"p{nproc}")
            results[nproc] = {
                "evaluations": t["evaluations"],
                "loop_s": round(t["loop"], 3),
                "evals_per_s": round(t["evaluations"] / t["loop"], 2),
                "communicate_share": round(t["communicate"] / t["loop"], 4),
                "imbalance_share": round(t.get("imbalance", 0.0) / t["loop"], 4),
                "strategy_share": round(t["strategy"] / t["loop"], 4),
            }
    scaling = results[2]["evals_per_s"] / results[1]["evals_per_s"]
    for n, r in results.items():
        print(
            f"{n} process(es): {r['evals_per_s']:.2f} candidate-task evaluations/s over {r['loop_s']:.1f} s; "
            f"communication {100 * r['communicate_share']:.1f}%, waiting for the slower process "
            f"{100 * r['imbalance_share']:.1f}%, strategy {100 * r['strategy_share']:.1f}%"
        )
    print(f"scaling 2 vs 1 process: {scaling:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "scaling": scaling}, indent=2))


if __name__ == "__main__":
    main()
