"""NES throughput: candidate-task evaluations per second with 1 and with 2 CPU processes
(one thread each), and the share of wall time spent communicating and in the strategy.

Runs examples/metatrain.py on the same config (two-moons tasks unless --config) with 1
process and, through `accelerate launch`, with 2, for several rounds; the order alternates
(1,2 then 2,1, ...) so that slow drifts of a shared machine hit both alike, and the median
of the per-round ratios is reported beside every round. The generation loop is timed
inside the trainer (timing.json), so start-up is excluded. Runs are sequential, never
parallel. Usage: python benchmarks/nes_throughput.py [--rounds 3] [--generations 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
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
    ap.add_argument("--rounds", type=int, default=3)
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
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(cfg))
        for r in range(args.rounds):
            row = {}
            for nproc in (1, 2) if r % 2 == 0 else (2, 1):
                t = launch(nproc, path, Path(tmp) / f"r{r}p{nproc}")
                row[nproc] = summarize(t)
            row["scaling"] = row[2]["evals_per_s"] / row[1]["evals_per_s"]
            rounds.append(row)
            print(f"round {r + 1}/{args.rounds}:")
            for n in (1, 2):
                print("  " + describe(n, row[n]))
            print(f"  scaling 2 vs 1 process: {row['scaling']:.2f}x")
    scalings = [row["scaling"] for row in rounds]
    median = statistics.median(scalings)
    overhead = statistics.median(row[2]["communicate_share"] + row[2]["strategy_share"] for row in rounds)
    print(
        f"scaling 2 vs 1 process: median {median:.2f}x over {len(rounds)} rounds "
        f"(min {min(scalings):.2f}x, max {max(scalings):.2f}x); communication + strategy "
        f"with 2 processes: median {100 * overhead:.1f}% of the loop"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": rounds, "scaling_median": median}, indent=2))


def summarize(t: dict) -> dict:
    return {
        "evaluations": t["evaluations"],
        "loop_s": round(t["loop"], 3),
        "evals_per_s": round(t["evaluations"] / t["loop"], 2),
        "items_on_main_process": t.get("items_here"),
        "communicate_share": round(t["communicate"] / t["loop"], 4),
        "imbalance_share": round(t.get("imbalance", 0.0) / t["loop"], 4),
        "strategy_share": round(t["strategy"] / t["loop"], 4),
    }


def describe(n: int, r: dict) -> str:
    return (
        f"{n} process(es): {r['evals_per_s']:.2f} candidate-task evaluations/s over {r['loop_s']:.1f} s "
        f"({r['items_on_main_process']} of {r['evaluations']} on the main process); communication "
        f"{100 * r['communicate_share']:.1f}%, waiting for the slower process "
        f"{100 * r['imbalance_share']:.1f}%, strategy {100 * r['strategy_share']:.1f}%"
    )


if __name__ == "__main__":
    main()
