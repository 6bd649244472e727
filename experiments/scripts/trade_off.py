"""Where each measured rule sits on the dev split's trade-off (ADR 0022): per group of dev cases,
the geometric mean of its test loss ÷ the default's on the same seeds, from the runs stored in
outputs/suite-dev-quick (nothing is run here: score rows with dev_compare.py / dev_variants.py
first). ``python experiments/scripts/trade_off.py OUT.png LABEL=FOLDER [LABEL=FOLDER ...]``
writes the figure and prints the table (the same figures)."""

import sys
from pathlib import Path

from dev_compare import OUT, peers_report

from hf_l3rs.benchmark import plan
from hf_l3rs.benchmark.ablation import missing_dev_runs, table
from hf_l3rs.benchmark.stats import geomean
from hf_l3rs.benchmark.suite import Case, cases

#: the groups the rules trade against each other (ADR 0017-0022): the kanji cases are the
#: meta-training distribution, where the default's confident head generalises; the other-domain
#: and text classifiers are where it does not
GROUPS = {
    "kanji fine-tuning": lambda c: c.kind == "vision-finetune" and c.data == "kanji",
    "other-domain fine-tuning, text classification": lambda c: (
        (c.kind == "vision-finetune" and c.data != "kanji") or c.kind == "text-encoder-trainer"
    ),
    "from scratch": lambda c: c.kind == "vision-scratch",
    "causal LM": lambda c: c.kind.startswith("causal-lm"),
}


def group_of(case: Case) -> str:
    return next(name for name, member in GROUPS.items() if member(case))


def ratios(rows: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Per row and group: geometric mean of (row's mean test loss ÷ the default's), paired seeds."""
    profile = plan.PROFILES["quick"]
    missing = [
        label for label, folder in rows.items() if missing_dev_runs(OUT, [str(folder)], profile.score_seeds, profile)
    ]
    if missing:
        raise SystemExit(f"rows without every dev run: {missing}; score them first (dev_compare.py)")
    peers_report()
    result = table(OUT, rows, profile)
    group = {c.name: group_of(c) for c in cases("dev")}
    out = {}
    for label in rows:
        per_case = result["rows"][label]["cases"]
        out[label] = {
            g: geomean([v["loss"] / v["default_loss"] for n, v in per_case.items() if group[n] == g]) for g in GROUPS
        }
    return out


def plot(values: dict[str, dict[str, float]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, ys = "kanji fine-tuning", ("other-domain fine-tuning, text classification", "from scratch")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, y in zip(axes, ys):
        ax.axvline(1, color="0.7", lw=1)
        ax.axhline(1, color="0.7", lw=1)
        ax.plot([1], [1], "k*", ms=12)
        ax.annotate("default", (1, 1), textcoords="offset points", xytext=(6, 6))
        for label, v in values.items():
            ax.plot([v[x]], [v[y]], "o", color="tab:blue")
            ax.annotate(label, (v[x], v[y]), textcoords="offset points", xytext=(5, -11), fontsize=8)
        ax.set_xlabel(f"{x}: test loss ÷ default's")
        ax.set_ylabel(f"{y}: test loss ÷ default's")
    fig.suptitle("dev split: each rule against the default (geometric mean per group, 3 paired seeds; lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    rows = {k: Path(v) for k, v in (arg.split("=", 1) for arg in sys.argv[2:])}
    values = ratios(rows)
    plot(values, sys.argv[1])
    print("| row | " + " | ".join(GROUPS) + " |")
    print("|---|" + "---|" * len(GROUPS))
    for label, v in values.items():
        print(f"| {label} | " + " | ".join(f"{v[g]:.3f}" for g in GROUPS) + " |")


if __name__ == "__main__":
    main()
