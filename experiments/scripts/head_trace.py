"""The head's rate multiplier along one dev run (docs/adr/0017): ``python
experiments/scripts/head_trace.py [CASE] [SEED] [WEIGHTS]`` (default: fashion-resnet-fewshot-long,
seed 0, l3rs-general) prints, every 25 steps, the training loss, the held-out loss and accuracy,
the head's weight norm and its log multiplier beside the mean over all tensors."""

import sys

import torch

from hf_l3rs.benchmark.peers import PeerConfig, build
from hf_l3rs.benchmark.problems import build as build_problem
from hf_l3rs.benchmark.suite import cases


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "fashion-resnet-fewshot-long"
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    weights = sys.argv[3] if len(sys.argv) > 3 else None
    torch.set_num_threads(1)
    case = {c.name: c for c in cases("dev")}[name]
    problem = build_problem(case, seed, "score")
    torch.manual_seed(seed)
    opt, _ = build(PeerConfig("l3rs", weights=weights), problem.model, case.steps, head=problem.head)
    names = [n for n, p in problem.model.named_parameters() if p.requires_grad]
    head = next(i for i, n in enumerate(names) if n.startswith(problem.head) and n.endswith("weight"))
    weight = dict(problem.model.named_parameters())[names[head]]
    print("step | train loss | held-out loss | acc. | head ‖W‖ | head log a | mean log a")
    for t in range(case.steps):
        loss = problem.loss(problem.model, problem.train_batch(t))
        opt.zero_grad()
        loss.backward()
        opt.step(loss=loss)
        if (t + 1) % 25 == 0:
            with torch.no_grad():
                held, acc = problem.evaluate(problem.model)
            log_a = torch.log(opt.rate_multipliers)
            print(
                f"{t + 1} | {loss.item():.3f} | {held:.3f} | {acc:.2f} | {weight.norm().item():.2f} | "
                f"{log_a[head].item():.2f} | {log_a.mean().item():.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
