"""Re-apply the seeded bugs of issue 13, of the benchmark suite (issue 36: a dishonest
benchmark) and of issue 39 (the meta-trainer and the evaluation), one at a time, and check that
the tests catch each.

Usage: python tests/seeded_bugs.py [NAME-PART]  (about 4 min; restores every file it touches;
``suite:`` runs only the benchmark's). Each line
names the bug and whether its test files failed on it; the exit status is 1 if one was missed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (bug, file, correct code, seeded code, test files that must fail)
BUGS = [
    (
        "NES gradient ignores the antithetic partner",
        "hf_l3rs/meta/strategy.py",
        "grad += (shaped[2 * pair] - shaped[2 * pair + 1]) * eps",
        "grad += 2 * shaped[2 * pair] * eps",
        "tests/test_seeded.py tests/meta/test_meta.py",
    ),
    (
        "embedding mapped to the farthest depth",
        "hf_l3rs/optim/components.py",
        "out[j] = pool[int(torch.argmin(dist))]",
        "out[j] = pool[int(torch.argmax(dist))]",
        "tests/optim/test_errors.py tests/optim/test_state.py",
    ),
    (
        "decoupled weight decay ignores the group lr",
        "hf_l3rs/optim/rule.py",
        "decay = lr * rate * weight_decay",
        "decay = rate * weight_decay",
        "tests/test_seeded.py tests/optim/test_parity.py",
    ),
    (
        "bias correction with the global step",
        "hf_l3rs/optim/backends.py",
        'by_step.setdefault(opt.state[opt._params[j]]["step"] + 1, []).append(pos)',
        "by_step.setdefault(opt._step, []).append(pos)",
        "tests/test_seeded.py tests/optim/test_parity.py",
    ),
    (
        "classic comparison tunes to the worst rate",
        "hf_l3rs/evaluation/classic.py",
        "if best is None or s.mean < best.mean:",
        "if best is None or s.mean > best.mean:",
        "tests/test_seeded.py tests/benchmark/test_classic.py",
    ),
    # ---- the sampled Adam sums (docs/adr/0012)
    (
        "sampled sums: the kernel reads every page but the sampled one",
        "hf_l3rs/optim/csrc/fused_l3rs.cpp",
        "if (page % kSampleEvery != offset) continue;",
        "if (page % kSampleEvery == offset) continue;",
        "tests/optim/test_sampling.py",
    ),
    (
        "sampled sums: the cosine scaled by element count, not the sample's own",
        "hf_l3rs/optim/sampling.py",
        "ratio = torch.where(exact, torch.ones_like(gg), ratio)",
        "ratio = torch.where(exact, torch.ones_like(gg), numel.to(dd) / count.clamp_min(1))",
        "tests/optim/test_sampling.py",
    ),
    # ---- the benchmark suite (hf_l3rs/benchmark): each of these would publish a dishonest number
    (
        "suite: baselines selected on the test split",
        "hf_l3rs/benchmark/plan.py",
        'if r["role"] == "tune":',
        'if r["role"] in ("tune", "score"):',
        "tests/benchmark/test_suite_honesty.py",
    ),
    (
        "suite: unpaired bootstrap",
        "hf_l3rs/benchmark/stats.py",
        "        paired=True,\n",
        "        paired=False,\n",
        "tests/benchmark/test_suite_honesty.py",
    ),
    (
        "suite: a grid whose optimum sits on its edge is not extended",
        "hf_l3rs/benchmark/plan.py",
        "if side and extended < profile.max_extensions:",
        "if False:",
        "tests/benchmark/test_suite_honesty.py",
    ),
    (
        "suite: an edge optimum is not reported",
        "hf_l3rs/benchmark/report.py",
        'entry["edge"] = plan.edge(tune, config)',
        'entry["edge"] = None',
        "tests/benchmark/test_suite_honesty.py",
    ),
    (
        "suite: a peer runs with other settings than reported",
        "hf_l3rs/benchmark/peers.py",
        '    groups = actual_settings(opt)\n    if config.peer == "l3rs":',
        '    groups = actual_settings(opt)\n    return groups\n    if config.peer == "l3rs":',
        "tests/benchmark/test_suite_honesty.py",
    ),
    (
        "suite: a tuned peer silently runs a constant rate",
        "hf_l3rs/benchmark/peers.py",
        "    return opt, schedule_factor(config.schedule, steps)",
        '    return opt, schedule_factor("constant", steps)',
        "tests/benchmark/test_suite_honesty.py",
    ),
    (
        "suite: a diverged run is dropped",
        "hf_l3rs/benchmark/report.py",
        'records = sorted(by_key.get(config.key, []), key=lambda r: r["seed"])',
        'records = sorted([r for r in by_key.get(config.key, []) if not r["diverged"]], key=lambda r: r["seed"])',
        "tests/benchmark/test_suite_honesty.py",
    ),
    (
        "meta: the fitness grid's layout scrambled",
        "hf_l3rs/meta/trainer.py",
        "grid = fit.reshape(p, m)",
        "grid = fit.reshape(m, p).T",
        "tests/meta/test_meta.py tests/test_seeded.py",
    ),
    (
        "meta: resume forgets the best validation score",
        "hf_l3rs/meta/trainer.py",
        'self.best_val = -math.inf if meta["best_val"] is None else float(meta["best_val"])',
        "self.best_val = -math.inf",
        "tests/meta/test_meta.py tests/meta/test_faults.py",
    ),
    (
        "meta: the same tasks every generation",
        "hf_l3rs/meta/trainer.py",
        "hash_seed(self.config.seed, generation, j)",
        "hash_seed(self.config.seed, 0, j)",
        "tests/meta/test_meta.py tests/test_seeded.py",
    ),
    (
        "meta: validation runs on the training split",
        "hf_l3rs/meta/trainer.py",
        'tasks = [self.family.sample(i, "val") for i in range(self.config.val_tasks)]',
        'tasks = [self.family.sample(i, "train") for i in range(self.config.val_tasks)]',
        "tests/meta/test_meta.py tests/test_seeded.py",
    ),
    (
        "loss hook also captures evaluation forwards",
        "hf_l3rs/optim/loss_source.py",
        "if not (module.training and torch.is_grad_enabled()):",
        "if False:",
        "tests/optim/test_state.py tests/integrations/test_trainer.py",
    ),
    (
        "suite: the Nesterov baseline runs plain momentum",
        "hf_l3rs/benchmark/peers.py",
        "opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=wd)",
        "opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=False, weight_decay=wd)",
        "tests/benchmark/test_suite_honesty.py",
    ),
    (
        "suite: runs of another weights version are reused",
        "hf_l3rs/benchmark/run.py",
        'return not weights or record.get("weights_version") == weights_version(weights)',
        "return True",
        "tests/benchmark/test_suite_run.py",
    ),
    (
        "evaluation: unpaired bootstrap of the speed-up",
        "hf_l3rs/evaluation/stats.py",
        "s, _ = speedup_at(horizon, horizons, c, float(ref[idx].mean()), higher_is_better)",
        "jdx = torch.randint(0, n, (n,), generator=g)\n"
        "        s, _ = speedup_at(horizon, horizons, c, float(ref[jdx].mean()), higher_is_better)",
        "tests/benchmark/test_tuned.py tests/test_seeded.py",
    ),
    (
        "evaluation: the Nesterov families run plain momentum",
        "hf_l3rs/registry.py",
        '"nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),',
        '"nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),',
        "tests/benchmark/test_tuned.py",
    ),
    (
        "evaluation: baselines tuned on the test split",
        "hf_l3rs/evaluation/tuned.py",
        '(ev, "val", i, self.families[f].with_lr(cfg.rate(k)), tuple(horizons))',
        '(ev, "test", i, self.families[f].with_lr(cfg.rate(k)), tuple(horizons))',
        "tests/benchmark/test_tuned.py tests/test_seeded.py",
    ),
]


def main() -> int:
    missed = []
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    for name, file, correct, seeded, tests in BUGS:
        if only not in name:
            continue
        path = ROOT / file
        source = path.read_text()
        if source.count(correct) != 1:
            print(f"{name}: the code to seed is no longer in {file}; update this script")
            missed.append(name)
            continue
        path.write_text(source.replace(correct, seeded))
        try:
            cmd = [sys.executable, "-m", "pytest", "-q", "-x", *tests.split()]
            run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        finally:
            path.write_text(source)
        caught = run.returncode == 1
        print(f"{name}: {'caught' if caught else 'NOT CAUGHT'} by {tests}")
        if not caught:
            missed.append(name)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
