"""The best θ of a meta-training checkpoint as a weights folder, without stopping or finishing the
run: ``python experiments/scripts/export_best.py RUN_FOLDER START_WEIGHTS OUT [field=value ...]``
(START_WEIGHTS and the fields: the run's ``init_from`` and ``l3rs:`` block)."""

import json
import sys

from safetensors.torch import load_file

from hf_l3rs.meta.trainer import cost_line
from hf_l3rs.optim.hub import load_net, save_net


def main() -> None:
    run, start, out, *fields = sys.argv[1:]
    overrides = {k: json.loads(v) for k, v in (f.split("=", 1) for f in fields)}
    tensors = load_file(f"{run}/checkpoint/state.safetensors")
    net = load_net(start, **overrides)
    if (net.get_flat() - tensors["theta0"].to(net.get_flat().dtype)).abs().max() > 1e-6:
        raise SystemExit("the checkpoint's θ₀ is not these start weights with these fields")
    net.set_flat(tensors["best_theta"])
    meta = json.loads(open(f"{run}/checkpoint/trainer.json").read())
    # another θ than the start weights': their card (its test results) does not describe it
    net.card_info = {
        "title": f"best θ of {run} (generation ≤ {meta['generation']})",
        "training": f"NES from {start} with {overrides or 'its config'}: best validation fitness "
        f"{meta['best_val']:.4f} by generation {meta['generation']} (docs/adr/0015); cost so far: "
        f"{cost_line(meta['history'])}.",
    }
    save_net(net, out)
    print(f"wrote {out}: best θ of generation ≤ {meta['generation']} (validation fitness {meta['best_val']:.4f})")


if __name__ == "__main__":
    main()
