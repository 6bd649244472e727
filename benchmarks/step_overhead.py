"""Optimizer-step time and state memory of L3RS(sgd+adam), of L3RS(sgd+shampoo) (its head
whitened: one eigendecomposition of the 512-input classifier per step), of the
per-parameter learned baseline VeLO-lite and of the FOOF baseline (its input-whitened
classifier: one eigendecomposition of the 513-dimensional input moment per step, SGD
elsewhere) against torch.optim.AdamW.

Backends side by side: the C++ kernels (``fused``), ``foreach`` and ``compiled``
(torch.compile of the two passes; its compile time is the first step's time minus a
steady step's, reported separately).

Real gradients of timm resnet34 (110 tensors, 21.3M parameters) from one backward pass;
every optimizer steps on the same gradients in the same process, interleaved round by
round so that machine noise hits all of them alike. Reports medians and ratios.
Usage: python benchmarks/step_overhead.py [--model resnet34] [--rounds 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def state_bytes(opt: torch.optim.Optimizer) -> int:
    total = 0
    for st in opt.state.values():
        for v in st.values():
            if torch.is_tensor(v):
                total += v.numel() * v.element_size()
    return total


def main() -> None:
    import copy

    import timm

    from hf_l3rs import FOOF, L3RS, L3RSConfig
    from hf_l3rs.optim.learned import import_plugins

    import_plugins(["experiments.velo"])  # research, not installed: from the repository root
    from experiments.velo import VeLOLite

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet34")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = timm.create_model(args.model, num_classes=25)
    x = torch.randn(8, 3, args.image_size, args.image_size)
    y = torch.randint(0, 25, (8,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad.clone() for p in params]
    n_params = sum(p.numel() for p in params)

    def fresh_params() -> list[torch.nn.Parameter]:
        out = []
        for p, g in zip(params, grads):
            q = torch.nn.Parameter(p.detach().clone())
            q.grad = g.clone()
            out.append(q)
        return out

    # FOOF reads its linear layers' inputs through hooks: a copy of the model, one forward to
    # record them, the same gradients; each timed step whitens with the recorded moment.
    foof_model = copy.deepcopy(model)
    foof = FOOF(foof_model.parameters(), model=foof_model, lr=1.0)
    foof_model(x)
    for q, g in zip(foof_model.parameters(), grads):
        q.grad = g.clone()
    opts = {
        "adamw_forloop": torch.optim.AdamW(fresh_params(), lr=1e-3, foreach=False),
        "adamw_foreach": torch.optim.AdamW(fresh_params(), lr=1e-3, foreach=True),
        "adamw_fused": torch.optim.AdamW(fresh_params(), lr=1e-3, fused=True),
        "l3rs_fused": L3RS(fresh_params(), total_steps=1000, implementation="fused"),
        "l3rs_foreach": L3RS(fresh_params(), total_steps=1000, implementation="foreach"),
        "l3rs_compiled": L3RS(fresh_params(), total_steps=1000, implementation="compiled"),
        "l3rs_shampoo": L3RS(fresh_params(), L3RSConfig(directions=("sgd", "shampoo")), total_steps=1000),
        # the per-parameter learned baseline (docs/design.md §5)
        "velo_lite": VeLOLite(fresh_params(), total_steps=1000),
        "foof": foof,
    }
    loss_value = float(loss)

    def step(name: str, opt: torch.optim.Optimizer) -> None:
        if name.startswith(("l3rs", "velo")):
            opt.step(loss=loss_value)
        else:
            opt.step()

    first_ms: dict[str, float] = {}
    for name, opt in opts.items():  # warm-up (state allocation, kernel build, compilation)
        for i in range(3):
            t0 = time.perf_counter()
            step(name, opt)
            if i == 0:
                first_ms[name] = (time.perf_counter() - t0) * 1e3
    times: dict[str, list[float]] = {k: [] for k in opts}
    for _ in range(args.rounds):
        for name, opt in opts.items():
            t0 = time.perf_counter()
            step(name, opt)
            times[name].append(time.perf_counter() - t0)

    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    mem = {k: state_bytes(o) for k, o in opts.items()}
    fastest_adamw = min((k for k in med if k.startswith("adamw")), key=med.get)
    result = {
        "model": args.model,
        "tensors": len(params),
        "parameters": n_params,
        "threads": torch.get_num_threads(),
        "median_ms": {k: round(v, 2) for k, v in med.items()},
        "fastest_adamw": fastest_adamw,
        "time_ratio_vs": {
            f"{l3}/{aw}": round(med[l3] / med[aw], 2)
            for l3 in ("l3rs_fused", "l3rs_foreach", "l3rs_compiled", "l3rs_shampoo", "velo_lite", "foof")
            for aw in ("adamw_forloop", "adamw_foreach", "adamw_fused")
        },
        "compile_s": round((first_ms["l3rs_compiled"] - med["l3rs_compiled"]) / 1e3, 1),
        "compiled_vs_fused_kernels": round(med["l3rs_compiled"] / med["l3rs_fused"], 2),
        # the whitened head's cost over the same rule's foreach path (what it runs on)
        "shampoo_vs_foreach": round(med["l3rs_shampoo"] / med["l3rs_foreach"], 2),
        # compile time in units of one fused AdamW step (how many steps it takes to pay back)
        "compile_in_adamw_steps": round((first_ms["l3rs_compiled"] - med["l3rs_compiled"]) / med["adamw_fused"]),
        "state_bytes": mem,
        "memory_ratio_l3rs_vs_adamw": round(mem["l3rs_fused"] / mem["adamw_fused"], 4),
        "memory_ratio_velo_lite_vs_adamw": round(mem["velo_lite"] / mem["adamw_fused"], 4),
    }
    print(f"{args.model}: {len(params)} tensors, {n_params / 1e6:.1f}M parameters, {result['threads']} threads")
    for k, v in med.items():
        print(f"  {k:15s} {v:8.2f} ms/step   state {mem[k] / 2**20:8.1f} MiB")
    for k, v in result["time_ratio_vs"].items():
        print(f"  ratio {k:32s} {v:.2f}x")
    print(f"  L3RS fused / fastest AdamW ({fastest_adamw}): {med['l3rs_fused'] / med[fastest_adamw]:.2f}x")
    print(
        f"  L3RS compiled / fastest AdamW: {med['l3rs_compiled'] / med[fastest_adamw]:.2f}x, "
        f"/ L3RS fused kernels: {result['compiled_vs_fused_kernels']:.2f}x, compile time {result['compile_s']:.1f} s "
        f"(= {result['compile_in_adamw_steps']} fused AdamW steps)"
    )
    print(f"  memory ratio L3RS / AdamW: {result['memory_ratio_l3rs_vs_adamw']:.4f}")
    print(
        f"  VeLO-lite / fastest AdamW: {med['velo_lite'] / med[fastest_adamw]:.2f}x time, "
        f"{result['memory_ratio_velo_lite_vs_adamw']:.2f}x state memory"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
