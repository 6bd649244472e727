"""Ablation rows on the dev split: the bundled default against itself with one hand-set
option group switched off (set to ``L3RSConfig``'s neutral default), paired seeds
(issue 37: "no knob without an ablation row that shows it earns its place").

``python -m hf_l3rs.benchmark.ablation --output outputs/suite-dev-quick`` writes the variants'
weights folders (same meta-network, edited config), runs the dev split for each (the peers'
runs are reused from OUTPUT), and writes ``ablation-<weights>@<version>.md``/``.json`` there."""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import statistics
from pathlib import Path
from typing import Any

from hf_l3rs.benchmark import plan
from hf_l3rs.benchmark.peers import DEFAULT_WEIGHTS, PeerConfig
from hf_l3rs.benchmark.run import is_current, pending_jobs
from hf_l3rs.benchmark.stats import geomean, holm, paired_bootstrap, paired_p
from hf_l3rs.benchmark.suite import cases

#: option group -> the config values that switch it off (L3RSConfig's defaults). What ADR 0004
#: removed was judged by this module's earlier rows against l3rs-general@83524d4905
#: (docs/results/dev/ablation-l3rs-general@83524d4905.md); what is left of the default is here.
ABLATIONS: dict[str, dict[str, Any]] = {
    "rate adaptation (hypergradient controller, 3 fields acting)": {"hypergradient_rate": 0.0},
    # its hand-set parts, one at a time (issue 37: each earns its place or goes). The target was
    # 0 from l3rs-general@fd7ca5ea42 (docs/adr/0016) until ADR 0018 chose -0.05 on dev.
    "adaptation target (-0.05 -> 0)": {"adaptation_target": 0.0},
    "adaptation clamps ([1/10, 10] -> [1e-4, 1e4])": {"adaptation_min": 1e-4, "adaptation_max": 1e4},
}
#: (the distance scale of docs/adr/0003, once rows of the meta-network alone with d in place of
#: base_lr, lost on the dev split and went with ADR 0014: its rows are in the ablation of
#: l3rs-general@a28265c962, as is the one-multiplier scope's)
ALL_OFF = "all of the above off (the meta-network alone)"


def make_variants(root: Path, base: str = DEFAULT_WEIGHTS) -> dict[str, Path]:
    """One weights folder per ablation (and one with every group off) under ``root``."""
    from hf_l3rs.optim.hub import resolve

    source = Path(resolve(base))
    out = {}
    all_off = {k: v for g in ABLATIONS.values() for k, v in g.items()}
    groups = {**ABLATIONS, ALL_OFF: all_off}
    for name, overrides in groups.items():
        words = re.sub(r"[^a-z0-9]+", "-", name.split(" (")[0].lower()).strip("-")
        slug = "all-off" if name == ALL_OFF else "no-" + words
        folder = root / slug
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(source, folder)
        config = json.loads((folder / "config.json").read_text())
        config["l3rs"].update(overrides)
        config["ablation"] = name
        (folder / "config.json").write_text(json.dumps(config, indent=1))
        out[name] = folder
    return out


def _seeds_run(output: Path, weights: str, seeds) -> tuple[int, ...]:
    """``seeds`` plus every further seed scored for ``weights`` on every dev case (paired runs
    added with ``--extra-seeds``)."""
    key = PeerConfig("l3rs", weights=weights).key
    found = tuple(seeds)
    for extra in range(max(seeds) + 1, max(seeds) + 20):
        paths = [output / "runs" / c.name / "score" / f"{key}-seed{extra}.json" for c in cases("dev")]
        if all(p.is_file() and is_current(json.loads(p.read_text()), c) for p, c in zip(paths, cases("dev"))):
            found += (extra,)
    return found


def _l3rs_scores(output: Path, case, weights: str, seeds) -> tuple[list[float], list[float]]:
    key = PeerConfig("l3rs", weights=weights).key
    recs = [json.loads((output / "runs" / case.name / "score" / f"{key}-seed{s}.json").read_text()) for s in seeds]
    return [math.inf if r["loss"] is None else r["loss"] for r in recs], [r["accuracy"] for r in recs]


def table(output: Path, variants: dict[str, Path], profile: plan.Profile) -> dict[str, Any]:
    """Per variant and dev case: paired difference (variant − default) in test loss and accuracy,
    95 % interval, Holm-corrected p over the cases; and the geometric-mean loss ratio of each to
    the best learning-rate-free peer of each case."""
    dev = cases("dev")
    rows = {}
    report = json.loads((output / "report.json").read_text())
    best_free = {}
    for c in report["cases"]:
        free = [p for p in ("schedulefree-adamw", "prodigy", "dadapt-adam") if p in c["peers"]]
        best_free[c["name"]] = min(statistics.fmean(c["peers"][p]["loss"]) for p in free)
    default_seeds = _seeds_run(output, DEFAULT_WEIGHTS, profile.score_seeds)
    for name, folder in {"default (l3rs-general)": None, **variants}.items():
        seeds = default_seeds if folder is None else _seeds_run(output, str(folder), profile.score_seeds)
        seeds = tuple(s for s in seeds if s in default_seeds)  # paired: seeds both were scored on
        per_case = {}
        for c in dev:
            base = _l3rs_scores(output, c, DEFAULT_WEIGHTS, seeds)
            loss, acc = base if folder is None else _l3rs_scores(output, c, str(folder), seeds)
            dl = paired_bootstrap(loss, base[0])
            da = paired_bootstrap(acc, base[1])
            per_case[c.name] = {
                "loss": statistics.fmean(loss),
                "accuracy": statistics.fmean(acc),
                "loss_diff": dl,
                "accuracy_diff": da,
                "loss_p": paired_p(loss, base[0]) if folder is not None else math.nan,
                "default_loss": statistics.fmean(base[0]),
            }
        ps = holm([v["loss_p"] for v in per_case.values()])
        for v, p in zip(per_case.values(), ps):
            v["loss_p_holm"] = p
        rows[name] = {
            "seeds": list(seeds),
            "cases": per_case,
            "loss_ratio_to_best_lr_free": geomean([per_case[c]["loss"] / best_free[c] for c in per_case]),
            # the default's ratio over this row's seeds: the two ratios are paired only then
            "default_ratio_same_seeds": geomean([per_case[c]["default_loss"] / best_free[c] for c in per_case]),
        }
    return {"profile": profile.name, "output": str(output), "rows": rows}


def render(result: dict[str, Any]) -> str:
    names = list(next(iter(result["rows"].values()))["cases"])
    head = " | ".join(f"{n}: Δloss [95 % CI] (p Holm) / Δacc. pts" for n in names)
    lines = [
        "# Ablation of the default's hand-set options on the dev split",
        "",
        "Generated by `python -m hf_l3rs.benchmark.ablation` — do not edit. Each row switches one option group "
        "of `l3rs-general` off (same meta-network; the field set to `L3RSConfig`'s neutral default) and is "
        f"scored on the dev split's score seeds (profile `{result['profile']}`; rows run with `--extra-seeds` on "
        "more, column *seeds*), paired with the default. "
        "Δ = variant − default (loss: lower is better). Last column: geometric mean over the dev cases of the "
        "test loss divided by the best learning-rate-free peer's (schedule-free AdamW, Prodigy, D-Adaptation); "
        "in brackets the default's over the same seeds, the figure a row's is paired with.",
        "",
        f"| option group switched off | seeds | {head} | loss ÷ best LR-free peer |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for name, row in result["rows"].items():
        cells = []
        for n in names:
            v = row["cases"][n]
            dl, lo, hi = v["loss_diff"]
            da = v["accuracy_diff"][0]
            p = v["loss_p_holm"]
            cells.append(
                "—"
                if name.startswith("default")
                else f"{dl:+.3f} [{lo:+.3f}, {hi:+.3f}] ({'n/a' if math.isnan(p) else f'{p:.2f}'}) / {100 * da:+.1f}"
            )
        seeds = len(row.get("seeds", [])) or "—"
        ratio = f"{row['loss_ratio_to_best_lr_free']:.3f}"
        if not name.startswith("default"):
            ratio += f" (default {row['default_ratio_same_seeds']:.3f})"
        lines.append(f"| {name} | {seeds} | {' | '.join(cells)} | {ratio} |")
    return "\n".join(lines) + "\n"


def missing_runs(output: Path, case, weights: list[str], seeds, profile: plan.Profile) -> list[tuple]:
    """The extra-seed jobs still to run: a stored run of another weights version (the same
    files under an older rule, or before their config changed) is run again, not counted."""
    configs = [PeerConfig("l3rs", weights=w) for w in weights]
    return pending_jobs(output, case, configs, seeds, "score", profile.curve_points)


def missing_dev_runs(output: Path, weights: list[str], seeds, profile: plan.Profile) -> list[tuple]:
    """:func:`missing_runs` over every dev case, in case order."""
    return [job for case in cases("dev") for job in missing_runs(output, case, weights, seeds, profile)]


def require_peers(output: Path, profile: plan.Profile) -> None:
    """The rows are compared with the peers of ``output``'s dev report: it must hold every current
    dev case (the rows never run a peer; that is ``hf-l3rs benchmark --suite dev``'s job)."""
    path = output / "report.json"
    held = {c["name"] for c in json.loads(path.read_text())["cases"]} if path.is_file() else set()
    missing = [c.name for c in cases("dev") if c.name not in held]
    if missing:
        raise SystemExit(
            f"{path} lacks the peers of {missing}: run `hf-l3rs benchmark --suite dev --profile {profile.name} "
            f"--output {output}` first (or experiments/scripts/dev_compare.py, which assembles the committed reports)"
        )


def score_rows(output: Path, weights: list[str], seeds, profile: plan.Profile, processes: int, desc: str) -> None:
    """Score each of ``weights`` on every dev case's ``seeds``; stored current runs are kept.
    Only L3RS runs: the peers' figures come from the report (:func:`require_peers`)."""
    from hf_l3rs.benchmark.run import execute

    execute(missing_dev_runs(output, weights, seeds, profile), processes, f"dev split: {desc}")


def main() -> None:
    from hf_l3rs.benchmark.run import weights_version

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--output", default="outputs/suite-dev-quick", help="the dev run whose peers are reused")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--results", default=None, help="also write the ablation's .md/.json into this folder")
    ap.add_argument(
        "--extra-seeds",
        type=int,
        default=0,
        help="score the default and the rows named by --rows on this many further paired seeds",
    )
    ap.add_argument("--rows", nargs="*", default=[], help="slugs of the rows that get --extra-seeds (e.g. all-off)")
    args = ap.parse_args()
    output = Path(args.output)
    profile = plan.PROFILES[args.profile]
    require_peers(output, profile)
    variants = make_variants(output / "weights")
    rows = [DEFAULT_WEIGHTS] + [str(f) for f in variants.values()]
    score_rows(output, rows, profile.score_seeds, profile, args.processes, "rows")
    if args.extra_seeds:
        start = max(profile.score_seeds) + 1
        seeds = range(start, start + args.extra_seeds)
        chosen = [DEFAULT_WEIGHTS] + [str(f) for f in variants.values() if f.name in args.rows]
        score_rows(output, chosen, seeds, profile, args.processes, "extra seeds")
    result = table(output, variants, profile)
    stem = f"ablation-{DEFAULT_WEIGHTS}@{weights_version(DEFAULT_WEIGHTS)}"
    for folder in [output] + ([Path(args.results)] if args.results else []):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str))
        (folder / f"{stem}.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
