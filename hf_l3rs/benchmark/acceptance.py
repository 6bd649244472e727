"""The claim's bars (issue 37's acceptance), read off a suite report.

Computed from the report's own figures, so a bar's verdict is as reproducible as the report:
``python -m hf_l3rs.benchmark.acceptance REPORT.json`` prints them for any committed report
without changing it. The bars, all on means over the report's paired seeds:

1. L3RS's geometric-mean test loss is at most the best learning-rate-free peer's (the one with the
   lowest geometric mean: schedule-free AdamW, Prodigy, D-Adaptation at their defaults);
2. on every case its accuracy is at most 0.5 points behind the most accurate learning-rate-free
   peer of that case;
3. on every case, against the tuned AdamW with the lowest test loss there (AdamW, or the two-rate
   AdamW where the case has it): loss at most 1.05× and accuracy at most 1 point behind;
4. (stretch) a geometric-mean speed-up of at least 1.5× to tuned AdamW's final validation loss.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LR_FREE = ("schedulefree-adamw", "prodigy", "dadapt-adam")
TUNED_ADAMW = ("adamw", "two-rate-adamw")
#: a bar is met at its edge (rounding of means over seeds must not decide it)
EPS = 1e-9
LABELS = {"schedulefree-adamw": "schedule-free AdamW", "prodigy": "Prodigy", "dadapt-adam": "D-Adaptation Adam"}


@dataclass(frozen=True)
class Bar:
    name: str
    met: bool
    evidence: str


def _mean(peer: dict[str, Any], key: str) -> float:
    return statistics.fmean(peer[key])


def bars(report: dict[str, Any]) -> list[Bar]:
    """Each bar's verdict and the figures behind it (failing cases named)."""
    summary = report["summary"]
    free = [p for p in LR_FREE if p in summary]
    best = min(free, key=lambda p: summary[p]["geomean_loss"])
    ours = summary["l3rs"]["geomean_loss"]
    out = [
        Bar(
            "geometric-mean test loss ≤ the best learning-rate-free peer's",
            ours <= summary[best]["geomean_loss"],
            f"{ours:.3f} against {LABELS[best]}'s {summary[best]['geomean_loss']:.3f} "
            f"({ours / summary[best]['geomean_loss']:.3f}×)",
        )
    ]
    behind, loss_over, acc_under = [], [], []
    for case in report["cases"]:
        peers = case["peers"]
        acc = _mean(peers["l3rs"], "accuracy")
        top = max((p for p in LR_FREE if p in peers), key=lambda p: _mean(peers[p], "accuracy"))
        gap = 100 * (acc - _mean(peers[top], "accuracy"))
        if gap < -0.5 - EPS:
            behind.append(f"{case['name']} {gap:+.1f} pts ({LABELS[top]})")
        tuned = min((p for p in TUNED_ADAMW if p in peers), key=lambda p: _mean(peers[p], "loss"))
        ratio = _mean(peers["l3rs"], "loss") / _mean(peers[tuned], "loss")
        if ratio > 1.05 + EPS:
            loss_over.append(f"{case['name']} {ratio:.2f}×")
        gap = 100 * (acc - _mean(peers[tuned], "accuracy"))
        if gap < -1.0 - EPS:
            acc_under.append(f"{case['name']} {gap:+.1f} pts")
    n = len(report["cases"])
    out.append(
        Bar(
            "every case ≤ 0.5 accuracy points behind its most accurate learning-rate-free peer",
            not behind,
            "; ".join(behind) if behind else f"all {n} cases",
        )
    )
    failures = [f"{what} {', '.join(names)}" for what, names in (("loss", loss_over), ("accuracy", acc_under)) if names]
    out.append(
        Bar(
            "every case ≤ 1.05× the best tuned AdamW's loss and ≤ 1 point behind its accuracy",
            not failures,
            "; ".join(failures) or f"all {n} cases",
        )
    )
    speed = summary["l3rs"].get("geomean_speedup")
    reached = summary["l3rs"].get("speedup_reached", 0)
    out.append(
        Bar(
            "(stretch) ≥ 1.5× fewer steps than tuned AdamW to its final validation loss (geometric mean)",
            bool(speed and speed >= 1.5),
            f"{speed:.2f}×" if speed else f"tuned AdamW's loss not reached on {n - reached} of {n} cases",
        )
    )
    return out


def applicable(report: dict[str, Any]) -> bool:
    """Whether every case has L3RS, a learning-rate-free peer and a tuned AdamW to judge by."""
    return bool(report["cases"]) and all(
        "l3rs" in c["peers"] and any(p in c["peers"] for p in LR_FREE) and any(p in c["peers"] for p in TUNED_ADAMW)
        for c in report["cases"]
    )


def render(report: dict[str, Any], heading: str = "## The claim's bars") -> str:
    """The bars as a markdown section ("" where the report cannot judge them: :func:`applicable`)."""
    if not applicable(report):
        return ""
    lines = [
        heading,
        "",
        "What the claim asks (level with the best learning-rate-free peer, close to tuned AdamW), computed from "
        "this report's figures (`hf_l3rs.benchmark.acceptance`); means over the paired seeds.",
        "",
        "| bar | met | evidence |",
        "|---|---|---|",
    ]
    lines += [f"| {b.name} | {'yes' if b.met else '**no**'} | {b.evidence} |" for b in bars(report)]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m hf_l3rs.benchmark.acceptance REPORT.json")
    print(render(json.loads(Path(sys.argv[1]).read_text())))


if __name__ == "__main__":
    main()
