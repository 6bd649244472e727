"""How far can the rate alone take a meta-trained rule? (docs/adr/0006, "Speed on the kanji
domain: what bounds evaluation A's speedup")

Runs the rule with two param groups, the backbone and the fresh head, whose ``lr`` multipliers
change per segment of the run (``--segments`` equal parts of the horizon), and searches those
multipliers coordinate by coordinate on ``--fit-tasks`` validation tasks to lower the held-out
loss at horizon ``--horizon``; the result is then scored on ``--check-tasks`` other validation
tasks. The rule's directions, mixing and per-tensor rates stay its own, so the search bounds what
any per-step schedule on top of the rule (a warm-up, a faster head, a slower backbone, a
different annealing) could give at that horizon.

    python examples/schedule_bound.py --horizon 10 --output outputs/schedule_bound_T10.json

Needs `hf-l3rs prepare-data` and `hf-l3rs pretrain`. Evaluation A (kanji checkpoint, kanji
tasks, meta-train classes, running BatchNorm statistics) and `l3rs-kanji-cosine` by default.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hf_l3rs import L3RS
from hf_l3rs.evaluation.protocol import EVALUATIONS, EvalConfig, Protocol
from hf_l3rs.evaluation.stats import mean_se
from hf_l3rs.optim.hub import load_net
from hf_l3rs.tasks.images import head_name
from hf_l3rs.tasks.inner_loop import run_task

CHECKPOINTS = {
    "kanji": "outputs/checkpoints/kanji/model.safetensors",
    "clipart": "outputs/checkpoints/clipart/model.safetensors",
}
DOMAINS = {"D1": "kanji", "D2": "clipart"}


def task_family(evaluation: str):
    """The evaluation's task family (validation tasks come from its meta-train classes)."""
    init, tasks = EVALUATIONS[evaluation]
    checkpoints = {key: CHECKPOINTS[DOMAINS[key]] for key in DOMAINS}
    config = EvalConfig(domains=DOMAINS, checkpoints=checkpoints, optimizers=[], evaluations=[evaluation])
    return Protocol(config, progress=False).family(init, tasks)


def scheduled_factory(net, multipliers: list[list[float]]):
    """L3RS over (backbone, head) param groups whose lr follows ``multipliers[group][segment]``."""
    segments = len(multipliers[0])

    def make(model, total):
        prefix = head_name(model) + "."
        named = list(model.named_parameters())
        groups = [
            {"params": [p for n, p in named if not n.startswith(prefix)]},
            {"params": [p for n, p in named if n.startswith(prefix)]},
        ]
        opt = L3RS(groups, net, total_steps=total, model=model)
        step, count = opt.step, [0]

        def scheduled_step(*args, **kwargs):
            segment = min(segments - 1, count[0] * segments // max(1, total))
            for group, values in zip(opt.param_groups, multipliers):
                group["lr"] = values[segment]
            count[0] += 1
            return step(*args, **kwargs)

        opt.step = scheduled_step
        return opt

    return make


def score(net, multipliers, tasks, horizon: int) -> list[tuple[float, float]]:
    """Per task (held-out loss, accuracy) after ``horizon`` steps."""
    make = scheduled_factory(net, multipliers)
    out = []
    for task in tasks:
        result = run_task(task, make, num_steps=horizon)
        out.append((result.eval_loss, result.eval_accuracy))
    return out


def average(rows, k: int) -> float:
    return sum(r[k] for r in rows) / len(rows)


def mean_loss(rows) -> float:
    return average(rows, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--l3rs", default="experiments/weights/l3rs-kanji-cosine", help="meta-weights (folder, Hub id or bundled name)"
    )
    ap.add_argument("--evaluation", default="A", choices=sorted(EVALUATIONS))
    ap.add_argument("--horizon", type=int, default=10)
    ap.add_argument("--segments", type=int, default=5)
    ap.add_argument("--fit-tasks", type=int, default=8)
    ap.add_argument("--check-tasks", type=int, default=8)
    ap.add_argument("--factors", type=float, nargs="+", default=[0.5, 0.7, 1.4, 2.0])
    ap.add_argument("--sweeps", type=int, default=2)
    ap.add_argument("--min-gain", type=float, default=0.003, help="nats a move must gain to be kept")
    ap.add_argument("--output", type=Path, default=Path("outputs/schedule_bound.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    family = task_family(args.evaluation)
    fit = [family.sample(s, "val") for s in range(args.fit_tasks)]
    check = [family.sample(s, "val") for s in range(args.fit_tasks, args.fit_tasks + args.check_tasks)]
    net = load_net(args.l3rs)
    multipliers = [[1.0] * args.segments, [1.0] * args.segments]
    start_fit, start_check = score(net, multipliers, fit, args.horizon), score(net, multipliers, check, args.horizon)
    end_fit, best = start_fit, mean_loss(start_fit)
    print(f"start: fit loss {best:.4f}, check loss {mean_loss(start_check):.4f}", flush=True)
    for sweep in range(args.sweeps):
        moved = False
        for group in (1, 0):  # the head first: it decides the early loss
            for segment in range(args.segments):
                for factor in args.factors:
                    trial = [list(values) for values in multipliers]
                    trial[group][segment] *= factor
                    rows = score(net, trial, fit, args.horizon)
                    if mean_loss(rows) < best - args.min_gain:
                        best, end_fit, multipliers, moved = mean_loss(rows), rows, trial, True
                        print(
                            f"sweep {sweep}: {'head' if group else 'backbone'} segment {segment} ×{factor}: {best:.4f}"
                        )
        if not moved:
            break
    end_check = score(net, multipliers, check, args.horizon)  # the fit tasks' rows are the search's

    def paired(after, before, k):
        diff = [a[k] - b[k] for a, b in zip(after, before)]
        m, se = mean_se(diff)
        return {
            "before": sum(b[k] for b in before) / len(before),
            "after": sum(a[k] for a in after) / len(after),
            "delta": m,
            "se": se,
        }

    report = {
        "l3rs": args.l3rs,
        "evaluation": args.evaluation,
        "horizon": args.horizon,
        "multipliers": {"backbone": multipliers[0], "head": multipliers[1]},
        "fit": {"loss": paired(end_fit, start_fit, 0), "accuracy": paired(end_fit, start_fit, 1)},
        "check": {"loss": paired(end_check, start_check, 0), "accuracy": paired(end_check, start_check, 1)},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    c = report["check"]
    print(
        f"schedule backbone {multipliers[0]} head {multipliers[1]}\n"
        f"check tasks: loss {c['loss']['before']:.4f} -> {c['loss']['after']:.4f} "
        f"({c['loss']['delta']:+.4f} ± {c['loss']['se']:.4f}), accuracy {100 * c['accuracy']['before']:.1f} -> "
        f"{100 * c['accuracy']['after']:.1f} %"
    )


if __name__ == "__main__":
    main()
