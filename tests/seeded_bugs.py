"""Re-apply the seeded bugs of issue 13, one at a time, and check that the tests catch each.

Usage: python tests/seeded_bugs.py  (about 2 min; restores every file it touches). Each line
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
        "tests/test_seeded.py tests/test_meta.py",
    ),
    (
        "embedding mapped to the farthest depth",
        "hf_l3rs/optim/components.py",
        "out[j] = pool[int(torch.argmin(dist))]",
        "out[j] = pool[int(torch.argmax(dist))]",
        "tests/test_errors.py tests/test_state.py",
    ),
    (
        "decoupled weight decay ignores the group lr",
        "hf_l3rs/optim/l3rs.py",
        "decay = lr * rate64 * wd",
        "decay = rate64 * wd",
        "tests/test_seeded.py tests/test_parity.py",
    ),
    (
        "bias correction with the global step",
        "hf_l3rs/optim/backends.py",
        'by_step.setdefault(opt.state[opt._params[j]]["step"] + 1, []).append(pos)',
        "by_step.setdefault(opt._step, []).append(pos)",
        "tests/test_seeded.py tests/test_parity.py",
    ),
    (
        "classic comparison tunes to the worst rate",
        "hf_l3rs/evaluation/classic.py",
        "if best is None or s.mean < best.mean:",
        "if best is None or s.mean > best.mean:",
        "tests/test_seeded.py tests/test_classic.py",
    ),
]


def main() -> int:
    missed = []
    for name, file, correct, seeded, tests in BUGS:
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
