"""experiments/scripts/hd_variants.py: the probe modes of ADR 0019 and 0020 compute what their
tables' headers say. Each runs in a subprocess: importing the module patches the optimizer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import math, sys, torch
sys.path.insert(0, "experiments/scripts")
import hd_variants
from hf_l3rs import L3RS

mode = sys.argv[1]
hd_variants.MODE["mode"] = mode
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
opt = L3RS.from_pretrained("l3rs-general", model)
x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
controller = opt._controllers[0]
params = [p for p in model.parameters()]
norms = []
for scale in (1.0, 0.1, 0.01):  # the gradient vanishes: each step's loss 10x smaller
    loss = scale * torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward()
    g = [float(p.grad.norm()) for p in params]
    norms.append(g)
    x0 = [p.detach().clone() for p in params] if scale == 1.0 else x0
    opt.step(loss=loss.detach())
    if mode == "dog-plain" and scale == 1.0:  # first step: r_eps / ||g|| times ||g_l|| / sqrt(n_l)
        r_eps = 1e-6 * (1 + math.sqrt(sum(float(t.norm()) ** 2 for t in x0)))
        total = math.sqrt(sum(v * v for v in g) + 1e-8)
        want = [r_eps / total * v / math.sqrt(p.numel()) for v, p in zip(g, params)]
        got = opt.last_rate.tolist()
        assert all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(got, want)), (got, want)
if mode == "gscale":  # E = EMA 0.9 of ||g||, bias-corrected; left = E / max E: below 1 once g fades
    for l, got in enumerate(controller.grad_left.tolist()):
        ema, peak = 0.0, 0.0
        for t, g in enumerate(norms, 1):
            ema = 0.9 * ema + 0.1 * g[l]
            peak = max(peak, ema / (1 - 0.9**t))
        want = ema / (1 - 0.9 ** len(norms)) / peak
        assert math.isclose(got, want, rel_tol=1e-6) and want < 0.4, (got, want)
    assert (controller.log_multiplier != 0).any()  # the adaptation still moves in this mode
if mode == "dog-plain":
    assert (controller.log_multiplier == 0).all()  # the adaptation is off in the DoG modes
print("ok")
"""


#: both modes in one interpreter (one import of torch): each builds its own model and optimizer
BOTH = "import sys\nfor arg in ('gscale', 'dog-plain'):\n    sys.argv = ['probe', arg]\n    exec(PROBE)\n"


def test_gradient_left_and_dog_compute_what_their_tables_say() -> None:
    """gscale: E = EMA 0.9 of ‖g‖ over its peak, with the adaptation still moving; dog-plain: the
    first step is DoG's (r_ε/‖g‖ times each tensor's ‖g_l‖/√n_l), with the adaptation off."""
    code = f"PROBE = {PROBE!r}\n{BOTH}"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ok", "ok"]
