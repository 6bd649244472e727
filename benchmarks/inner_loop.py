"""Inner-loop cost: the share of a fine-tuning run's wall time spent outside model
forward, backward and the optimizer step (data, bookkeeping, set-up). Target ≤ 10 %.

Runs kanji meta-test tasks (the embedded D1 at its calibrated task shape) with Adam and
with L3RS, timing every phase of `run_task`, including task construction (image decoding
is cached per dataset, so the first task pays for it once; reported apart).
Usage: python benchmarks/inner_loop.py [--tasks 5] [--steps 50] [--checkpoint path]
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    from hf_l3rs.optim import L3RS
    from hf_l3rs.tasks.inner_loop import run_task
    from hf_l3rs.tasks.registry import get_family

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--checkpoint", default=None)
    args = ap.parse_args()
    fam = get_family("images", dataset="kanji", model="l3rs_resnet_tiny", checkpoint=args.checkpoint)
    t0 = time.perf_counter()
    warm = fam.sample(0, "test")  # decode this task's images once
    run_task(warm, lambda m, t: torch.optim.Adam(m.parameters()), num_steps=2)  # imports, first model
    first = time.perf_counter() - t0
    factories = {
        "adam": lambda m, t: torch.optim.Adam(m.parameters(), lr=1e-3),
        "l3rs": lambda m, t: L3RS(m, total_steps=t),
    }
    for name, make in factories.items():
        timer: dict[str, float] = {}
        sample_time = 0.0
        for i in range(args.tasks):
            s = time.perf_counter()
            task = fam.sample(i, "test")
            sample_time += time.perf_counter() - s
            run_task(task, make, num_steps=args.steps, timer=timer)
        total = sum(timer.values()) + sample_time
        core = timer.get("forward", 0) + timer.get("backward", 0) + timer.get("step", 0)
        evals = timer.get("evaluate", 0)
        outside = total - core - evals
        print(
            f"{name}: {args.tasks} tasks x {args.steps} steps, {total:.2f} s: forward {timer['forward']:.2f}, "
            f"backward {timer['backward']:.2f}, step {timer['step']:.2f}, evaluation forward {evals:.2f}, "
            f"batch {timer['batch']:.3f}, set-up {timer['setup']:.3f}, task sampling {sample_time:.3f} s"
        )
        print(
            f"  outside forward/backward/step (evaluation counted as forward): {100 * outside / total:.1f}%"
            f"  (evaluation counted as outside: {100 * (outside + evals) / total:.1f}%)"
        )
    print(f"warm-up (imports, first model, first task's images): {first:.2f} s, once per process")


if __name__ == "__main__":
    main()
