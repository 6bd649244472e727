"""Does a noisy from-scratch problem collapse the rate adaptation (docs/adr/0015)? The dev
split's fashion MLP at batch B, 1000 steps, 2 seeds, scored on validation images:
``PYTHONPATH=experiments/scripts python experiments/scripts/noise_probe.py 8 128``
(``HD_MODE=u``: the agreement against Adam's direction m/sqrt(v), hd_variants.py)."""

import dataclasses
import os
import statistics
import sys

import hd_variants
import torch

from hf_l3rs import L3RS
from hf_l3rs.benchmark import problems

torch.set_num_threads(1)

hd_variants.MODE["mode"] = os.environ.get("HD_MODE", "m")


def run(opt_name, batch, seed, steps=1000, **cfg):
    x, y, hx, hy = problems._fashion("tune")
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    prob = problems._classifier(model, x, y, batch, seed, hx, hy, chance=0.1)
    if opt_name == "sf":
        import schedulefree

        opt = schedulefree.AdamWScheduleFree(model.parameters(), lr=0.0025, warmup_steps=0)
        opt.train()
    else:
        opt = L3RS.from_pretrained("l3rs-general", model)
        if cfg:
            opt.config = dataclasses.replace(opt.config, **cfg)
            for c in opt._controllers:
                c.config = opt.config
    for t in range(steps):
        loss = prob.loss(model, prob.train_batch(t))
        opt.zero_grad()
        loss.backward()
        opt.step() if opt_name == "sf" else opt.step(loss=loss)
    if opt_name == "sf":
        opt.eval()
    model.eval()
    loss, acc = prob.evaluate(model)
    mult = "" if opt_name == "sf" else f"mult {[round(float(v), 3) for v in opt.rate_multipliers]}"
    return loss, acc, mult


VARIANTS = [
    ("l3rs", {}),
    ("l3rs-t0", {"adaptation_target": 0.0}),
    ("l3rs-off", {"hypergradient_rate": 0.0}),
    ("sf", {}),
]
if __name__ == "__main__":
    for batch in map(int, sys.argv[1:]):
        for name, kw in VARIANTS:
            rs = [run(name.split("-")[0], batch, s, **kw) for s in (0, 1)]
            print(
                batch,
                name,
                round(statistics.fmean(r[0] for r in rs), 3),
                round(statistics.fmean(r[1] for r in rs), 3),
                rs[0][2],
                flush=True,
            )
