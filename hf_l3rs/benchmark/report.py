"""From stored runs to the suite's report: per case the scored peers (mean ± s.e. over paired
seeds), L3RS's paired differences with bootstrap intervals and Holm-corrected p-values, the
steps each peer needs to reach the best tuned AdamW's final held-out loss, step time and
state memory as ratios to fused AdamW measured in one run, and the one-row summaries
(geometric mean over cases, zero-tuning and tuned views apart). Markdown, JSON and a plot
of held-out loss against step per case."""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from hf_l3rs.benchmark import acceptance, plan
from hf_l3rs.benchmark.peers import TUNED, PeerConfig
from hf_l3rs.benchmark.stats import geomean, holm, paired_bootstrap, paired_p, steps_to_reach
from hf_l3rs.benchmark.suite import Case

LABELS = {
    "l3rs": "L3RS (default, no lr)",
    "schedulefree-adamw": "schedule-free AdamW",
    "prodigy": "Prodigy",
    "dadapt-adam": "D-Adaptation Adam",
    "muon": "Muon (+AdamW)",
    "adamw-1e-3": "AdamW 1e-3",
    "adamw-5e-5": "AdamW 5e-5",
    "adamw": "AdamW (tuned)",
    "nesterov": "SGD-Nesterov (tuned)",
    "two-rate-adamw": "two-rate AdamW (tuned)",
}
#: Meta-training cost of bundled weights, from their lineage's run logs (docs/metatraining/*/README.md):
#: wall-clock minutes x processes. The sessions that hand-set the config's knobs are not counted.
#: l3rs-general since fd7ca5ea42 (docs/adr/0016): the earlier lineage, then cpu-general-long to
#: generation 50 — generations 1-24 from its log's wall clock (163.8 process-minutes), 25-50 from
#: the process-seconds its history records (2.53 h).
META_TRAINING = {
    "l3rs-general": {
        "cpu_hours": round((96 * 2 + 42 * 2 + 163.8) / 60 + 2.53, 1),
        "source": "cpu-kanji-long (96 min x 2 CPU) + cpu-general-text (42 min x 2 processes) + "
        "cpu-general-long, 50 generations (5.3 CPU-hours)",
    },
}


def _mean_se(xs: list[float]) -> tuple[float, float]:
    if any(not math.isfinite(x) for x in xs):
        return math.inf, math.nan
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else math.nan)


def _mean_curve(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    if any(r["diverged"] for r in records):
        return []
    steps = [s for s, *_ in records[0]["held_curve"]]
    return [(s, statistics.fmean(r["held_curve"][i][1] for r in records)) for i, s in enumerate(steps)]


def analyse_case(
    case: Case,
    profile: plan.Profile,
    runs: list[dict[str, Any]],
    weights: str | None = None,
    costs: dict[str, dict[str, float]] | None = None,
) -> dict[str, Any]:
    """The case's table. Winners are chosen from tune runs only; every number shown is a score run."""
    tune = plan.tune_results(runs)
    scored = plan.scoring(case, profile, tune, weights)
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        if r["role"] == "score" and r["seed"] in profile.score_seeds:
            by_key.setdefault(r["key"], []).append(r)
    peers: dict[str, dict[str, Any]] = {}
    for config in scored:
        records = sorted(by_key.get(config.key, []), key=lambda r: r["seed"])
        if [r["seed"] for r in records] != sorted(profile.score_seeds):
            raise ValueError(
                f"{case.name}: {config.key} has score seeds {[r['seed'] for r in records]}, "
                f"expected {sorted(profile.score_seeds)} (run the suite to completion)"
            )
        loss, acc = [r["loss"] for r in records], [r["accuracy"] for r in records]
        entry = {
            "view": "tuned" if config.peer in TUNED else "zero-tuning",
            "config": config.to_dict(),
            "key": config.key,
            "declared": records[0]["declared"],
            "settings": records[0]["settings"],
            "loss": loss,
            "accuracy": acc,
            "diverged": sum(r["diverged"] for r in records),
            "seconds": sum(r["seconds"] for r in records),
            "curve": _mean_curve(records),
        }
        if config.peer in TUNED:
            entry["edge"] = plan.edge(tune, config)
            entry["tuned_settings"] = sum(1 for c in tune if c.peer == config.peer)
        peers[config.peer] = entry
    target = plan.mean_loss(peers["adamw"]["loss"])
    for entry in peers.values():
        reached = steps_to_reach(target, entry["curve"]) if entry["curve"] else None
        entry["steps_to_tuned_adamw_loss"] = reached
        entry["speedup"] = case.steps / reached if reached else None
        if costs and entry["key"] in costs:
            entry["cost"] = costs[entry["key"]]
    records = [r for c in scored for r in by_key.get(c.key, [])]
    starts = _paired_starts(case, records)
    l3 = peers["l3rs"]
    comparisons = {}
    for name, entry in peers.items():
        if name == "l3rs":
            continue
        peer_loss = plan.mean_loss(entry["loss"])
        dl, lo_l, hi_l = paired_bootstrap(l3["loss"], entry["loss"])
        da, lo_a, hi_a = paired_bootstrap(l3["accuracy"], entry["accuracy"])
        comparisons[name] = {
            "loss_diff": dl,
            "loss_ci": [lo_l, hi_l],
            "loss_p": paired_p(l3["loss"], entry["loss"]),
            "accuracy_diff": da,
            "accuracy_ci": [lo_a, hi_a],
            "accuracy_p": paired_p(l3["accuracy"], entry["accuracy"]),
            "loss_ratio": plan.mean_loss(l3["loss"]) / peer_loss if math.isfinite(peer_loss) else 0.0,
        }
    return {
        "name": case.name,
        "split": case.split,
        "kind": case.kind,
        "steps": case.steps,
        "description": case.description,
        "tuned_adamw_target_loss": target,
        "initial_weights": starts,
        "machines": sorted({r["machine"] for r in records}),
        "peers": peers,
        "l3rs_vs": comparisons,
    }


def _paired_starts(case: Case, records: list[dict[str, Any]]) -> list[str]:
    """The digest of the initial weights per score seed, the same for every optimizer: the
    pairing the intervals and p-values assume, checked rather than assumed (runs computed on
    another machine start from other checkpoints and must not be mixed in)."""
    seen: dict[int, set[str]] = {}
    for r in records:
        seen.setdefault(r["seed"], set()).add(r["initial_weights"])
    mixed = {s: sorted(d) for s, d in seen.items() if len(d) > 1}
    if mixed:
        raise ValueError(
            f"{case.name}: the optimizers of a seed started from different weights {mixed} (runs from another "
            "machine or checkpoint in this output folder): score again into a fresh --output"
        )
    return [next(iter(seen[s])) for s in sorted(seen)]


def correct_across_cases(cases: list[dict[str, Any]]) -> None:
    """Holm over cases, per peer and metric: the family of tests a summary row stands on."""
    peers = {p for c in cases for p in c["l3rs_vs"]}
    for peer in peers:
        for metric in ("loss", "accuracy"):
            have = [c for c in cases if peer in c["l3rs_vs"]]
            adjusted = holm([c["l3rs_vs"][peer][f"{metric}_p"] for c in have])
            for c, p in zip(have, adjusted):
                c["l3rs_vs"][peer][f"{metric}_p_holm"] = p


def summarise(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per peer over the cases it ran on: geometric mean of final test loss, of L3RS's loss
    ratio to it, mean accuracy difference, cases where L3RS is significantly worse/better
    (Holm, 5 %), geometric-mean speedup to the tuned AdamW's loss; split by view."""
    rows: dict[str, dict[str, Any]] = {}
    for peer in LABELS:
        have = [c for c in cases if peer in c["peers"]]
        if not have:
            continue
        entry = {
            "view": have[0]["peers"][peer]["view"],
            "cases": len(have),
            "geomean_loss": geomean([plan.mean_loss(c["peers"][peer]["loss"]) for c in have]),
            "mean_accuracy": statistics.fmean(statistics.fmean(c["peers"][peer]["accuracy"]) for c in have),
            "diverged_runs": sum(c["peers"][peer]["diverged"] for c in have),
        }
        speed = [c["peers"][peer]["speedup"] or 0.0 for c in have]
        entry["geomean_speedup"] = geomean(speed) if all(s > 0 for s in speed) else None
        entry["speedup_reached"] = sum(s > 0 for s in speed)
        if peer != "l3rs":
            comps = [c["l3rs_vs"][peer] for c in have]
            entry["l3rs_loss_ratio_geomean"] = (
                geomean([x["loss_ratio"] for x in comps]) if all(x["loss_ratio"] > 0 for x in comps) else math.inf
            )
            entry["l3rs_accuracy_diff_mean"] = (
                statistics.fmean(x["accuracy_diff"] for x in comps)
                if all(math.isfinite(x["accuracy_diff"]) for x in comps)
                else math.nan
            )
            entry["l3rs_worst_accuracy_diff"] = min(x["accuracy_diff"] for x in comps)
            for metric in ("loss", "accuracy"):
                sign = -1 if metric == "loss" else 1
                sig = [x for x in comps if x.get(f"{metric}_p_holm", math.nan) < 0.05]
                entry[f"l3rs_better_{metric}"] = sum(sign * x[f"{metric}_diff"] > 0 for x in sig)
                entry[f"l3rs_worse_{metric}"] = sum(sign * x[f"{metric}_diff"] < 0 for x in sig)
        rows[peer] = entry
    return rows


# ------------------------------------------------------------------ costs
def measure_costs(case: Case, configs: list[PeerConfig], repeats: int = 10) -> dict[str, dict[str, float]]:
    """Optimizer-step time and state memory of each setting as ratios to fused AdamW, all
    measured here in one run on the case's model with one fixed gradient (1 thread)."""
    from hf_l3rs.benchmark.peers import build
    from hf_l3rs.benchmark.problems import build as build_problem

    torch.set_num_threads(1)
    reference = PeerConfig("adamw", 1e-3, "constant", 0.01)
    out: dict[str, dict[str, float]] = {}
    measured: dict[str, tuple[float, int]] = {}
    for config in [reference, *configs]:
        problem = build_problem(case, 0, "score")
        model = problem.model
        opt, _ = build(config, model, case.steps, head=problem.head, trainer=case.trainer)
        if callable(getattr(opt, "train", None)):
            opt.train()
        loss = problem.loss(model, problem.train_batch(0))
        loss.backward()
        times = []
        for i in range(repeats + 3):
            start = time.perf_counter()
            opt.step(loss=loss.detach()) if config.peer == "l3rs" else opt.step()
            if i >= 3:
                times.append(time.perf_counter() - start)
        state = sum(
            t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)
        )
        measured[config.key] = (statistics.median(times), state)
    ref_time, ref_mem = measured[reference.key]
    for config in configs:
        t, m = measured[config.key]
        out[config.key] = {"step_time_ratio": t / ref_time, "state_memory_ratio": m / ref_mem if ref_mem else math.nan}
    return out


# ------------------------------------------------------------------ rendering
def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "diverged"
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    return f"{x:.{digits}f}"


def render_summary(report: dict[str, Any]) -> str:
    """The one-row-per-optimizer summary table (the README embeds it verbatim)."""
    lines = [
        "| view | optimizer | cases | geo-mean test loss | L3RS loss ÷ peer | mean acc. | L3RS acc. − peer "
        "(mean / worst case) | L3RS sig. better / worse (loss, acc.) | geo-mean speed-up to tuned AdamW's loss "
        "| diverged runs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for peer, row in sorted(
        report["summary"].items(), key=lambda kv: (kv[1]["view"] != "zero-tuning", kv[0] != "l3rs")
    ):
        ratio = _fmt(row.get("l3rs_loss_ratio_geomean"))
        acc = (
            "—"
            if peer == "l3rs"
            else (f"{100 * row['l3rs_accuracy_diff_mean']:+.1f} / {100 * row['l3rs_worst_accuracy_diff']:+.1f} pts")
        )
        sig = (
            "—"
            if peer == "l3rs"
            else (
                f"{row['l3rs_better_loss']}/{row['l3rs_worse_loss']}, "
                f"{row['l3rs_better_accuracy']}/{row['l3rs_worse_accuracy']}"
            )
        )
        speed = (
            _fmt(row["geomean_speedup"], 2) + "×"
            if row["geomean_speedup"]
            else f"not reached on {row['cases'] - row['speedup_reached']} case(s)"
        )
        lines.append(
            f"| {row['view']} | {LABELS[peer]} | {row['cases']} | {_fmt(row['geomean_loss'])} | {ratio} | "
            f"{100 * row['mean_accuracy']:.1f} % | {acc} | {sig} | {speed} | {row['diverged_runs']} |"
        )
    return "\n".join(lines)


def _machines_line(report: dict[str, Any]) -> list[str]:
    """Where the runs were computed: the checkpoints are built on first use and a seed's figures
    differ between CPUs, so a rerun elsewhere reproduces the comparisons, not every digit."""
    if not report.get("machines"):
        return []  # reports scored before the machine was recorded
    return [
        "",
        f"Computed on {'; '.join(report['machines'])}. Every optimizer of a case and seed started from the same "
        "weights (digests checked, in report.json); the checkpoints are built on first use, so on another CPU "
        "the figures differ in their digits while the comparisons are what to reproduce.",
    ]


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# L3RS benchmark suite {report['suite']} — `{report['split']}` split, profile `{report['profile']}`",
        "",
        "Generated by `hf_l3rs.benchmark` — do not edit. Command:",
        "",
        f"    {report['command']}",
        "",
        f"Weights: `{report['weights']}` (meta-training: {report['meta_training']}). Suite fingerprint "
        f"`{report['fingerprint']}`; score seeds {report['score_seeds']} (paired: every optimizer sees the same data "
        f"and initial weights per seed); tune seeds {report['tune_seeds']} on validation data only. Intervals: 95 % "
        "paired bootstrap over seeds; p: paired t-test, Holm-corrected across cases per peer and metric. "
        "Step time and state memory: ratios to fused AdamW measured in the same run.",
        *_machines_line(report),
        "",
        "## Summary (geometric mean over cases)",
        "",
        render_summary(report),
    ]
    bars = acceptance.render(report)
    if bars:
        lines += ["", bars.rstrip("\n")]
    for case in report["cases"]:
        lines += [
            "",
            f"## {case['name']} ({case['kind']}, {case['steps']} steps)",
            "",
            case["description"],
            "",
            f"![held-out loss against step]({case['name']}.png)",
            "",
            "| optimizer | settings (as run) | test loss | test acc. | L3RS − peer: loss [95 % CI] (p Holm) | "
            "accuracy pts [95 % CI] (p Holm) | steps to tuned AdamW's loss | step time ÷ fused AdamW | "
            "state memory ÷ fused AdamW |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for peer, e in case["peers"].items():
            ml, sl = _mean_se(e["loss"])
            ma, sa = _mean_se(e["accuracy"])
            decl = ", ".join(f"{k}={v}" for k, v in e["declared"].items())
            if e.get("edge"):
                decl += f" (**optimum on the {e['edge']} edge of the grid**)"
            if e["diverged"]:
                decl += f" (**{e['diverged']} run(s) diverged**)"
            c = case["l3rs_vs"].get(peer)
            dl = (
                "—"
                if c is None
                else (
                    f"{_fmt(c['loss_diff'])} [{_fmt(c['loss_ci'][0])}, {_fmt(c['loss_ci'][1])}] "
                    f"({_fmt(c.get('loss_p_holm'), 2)})"
                )
            )
            da = (
                "—"
                if c is None
                else (
                    f"{100 * c['accuracy_diff']:+.1f} [{100 * c['accuracy_ci'][0]:+.1f}, "
                    f"{100 * c['accuracy_ci'][1]:+.1f}] ({_fmt(c.get('accuracy_p_holm'), 2)})"
                )
            )
            reach = _fmt(e["steps_to_tuned_adamw_loss"], 0) if e["steps_to_tuned_adamw_loss"] else "not reached"
            cost = e.get("cost", {})
            lines.append(
                f"| {LABELS[peer]} | {decl} | {_fmt(ml)} ± {_fmt(sl)} | {100 * ma:.1f} ± {100 * sa:.1f} % | "
                f"{dl} | {da} | {reach} | {_fmt(cost.get('step_time_ratio'), 2)} | "
                f"{_fmt(cost.get('state_memory_ratio'), 2)} |"
            )
    return "\n".join(lines) + "\n"


def plot_case(case: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for peer, e in case["peers"].items():
        if e["curve"]:
            steps, losses = zip(*e["curve"])
            ax.plot(
                steps,
                losses,
                label=LABELS[peer],
                lw=2.5 if peer == "l3rs" else 1.2,
                ls="-" if e["view"] == "zero-tuning" else "--",
            )
    ax.axhline(case["tuned_adamw_target_loss"], color="grey", lw=0.8, ls=":", label="tuned AdamW's final loss")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="step",
        ylabel="held-out (test) loss",
        title=f"{case['name']} (mean of seeds)",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


README_BEGIN = "<!-- suite test summary: generated from {path}; do not edit -->"
README_END = "<!-- end of generated summary -->"


def readme_block(result: dict[str, Any], path: str) -> str:
    """The README's results table: the committed test report's summary and the claim's bars
    computed from it (:mod:`hf_l3rs.benchmark.acceptance`), verbatim."""
    bars = acceptance.render(result, heading="**The claim's bars** (issue 37's acceptance)").rstrip("\n")
    return "\n".join([README_BEGIN.format(path=path), "", render_summary(result), "", bars, "", README_END])


def update_readme(readme: Path, result: dict[str, Any], path: str) -> None:
    """Replace the generated block of ``readme`` with ``result``'s summary."""
    text = readme.read_text()
    start = text.index(README_BEGIN.split("{")[0])
    end = text.index(README_END) + len(README_END)
    readme.write_text(text[:start] + readme_block(result, path) + text[end:])
