"""Ablation rows on the dev split: the bundled default against itself with one hand-set
option group switched off (set to ``L3RSConfig``'s neutral default), paired seeds
(issue 37: "no knob without an ablation row that shows it earns its place").

``python -m hf_l3rs.benchmark.ablation --output outputs/suite-dev-quick`` writes the variants'
weights folders (same meta-network, edited config), runs the dev split for each (the peers'
runs are reused from OUTPUT), and writes ``ablation.md``/``ablation.json`` there."""

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
from hf_l3rs.benchmark.stats import geomean, holm, paired_bootstrap, paired_p
from hf_l3rs.benchmark.suite import cases

#: option group -> the config values that switch it off (L3RSConfig's defaults)
ABLATIONS: dict[str, dict[str, Any]] = {
    "rate adaptation (hypergradient controller, 7 fields + role floors)": {
        "rate_adaptation": "none",
        "role_adaptation_min": {},
        "role_adaptation_min_release": 0.0,
    },
    "gradient share (10 fields)": {"gradient_share_reference": 0.0, "gradient_share_boost": {}},
    "head calibration (6 fields)": {
        "head_calibration_growth": 1.0,
        "head_calibration_rise": 0.0,
        "head_calibration_acceleration": 1.0,
    },
    "role prior (conv x6)": {"role_rate_scale": {}},
    "adapter steps in weight units": {"adapter_steps": "tensor"},
    "init priors (head / backbone rates)": {
        "init_head_fraction": 0.0,
        "init_head_rate": 1.0,
        "init_backbone_rate": 1.0,
    },
    "cosine rate schedule": {"rate_schedule": "constant"},
}
ALL_OFF = "all of the above off (the meta-network alone)"


def make_variants(root: Path, base: str = DEFAULT_WEIGHTS) -> dict[str, Path]:
    """One weights folder per ablation (and one with every group off) under ``root``."""
    from hf_l3rs.optim.hub import resolve

    source = Path(resolve(base))
    out = {}
    groups = {**ABLATIONS, ALL_OFF: {k: v for g in ABLATIONS.values() for k, v in g.items()}}
    for name, overrides in groups.items():
        slug = (
            "all-off" if name == ALL_OFF else "no-" + re.sub(r"[^a-z0-9]+", "-", name.split(" (")[0].lower()).strip("-")
        )
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
    default = {c.name: _l3rs_scores(output, c, DEFAULT_WEIGHTS, profile.score_seeds) for c in dev}
    for name, folder in {"default (l3rs-general)": None, **variants}.items():
        per_case = {}
        for c in dev:
            loss, acc = default[c.name] if folder is None else _l3rs_scores(output, c, str(folder), profile.score_seeds)
            dl = paired_bootstrap(loss, default[c.name][0])
            da = paired_bootstrap(acc, default[c.name][1])
            per_case[c.name] = {
                "loss": statistics.fmean(loss),
                "accuracy": statistics.fmean(acc),
                "loss_diff": dl,
                "accuracy_diff": da,
                "loss_p": paired_p(loss, default[c.name][0]) if folder is not None else math.nan,
            }
        ps = holm([v["loss_p"] for v in per_case.values()])
        for v, p in zip(per_case.values(), ps):
            v["loss_p_holm"] = p
        rows[name] = {
            "cases": per_case,
            "loss_ratio_to_best_lr_free": geomean([per_case[c]["loss"] / best_free[c] for c in per_case]),
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
        f"scored on the dev split's score seeds (profile `{result['profile']}`), paired with the default. "
        "Δ = variant − default (loss: lower is better). Last column: geometric mean over the dev cases of the "
        "test loss divided by the best learning-rate-free peer's (schedule-free AdamW, Prodigy, D-Adaptation).",
        "",
        f"| option group switched off | {head} | loss ÷ best LR-free peer |",
        "|---|" + "---|" * len(names) + "---|",
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
        lines.append(f"| {name} | {' | '.join(cells)} | {row['loss_ratio_to_best_lr_free']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from hf_l3rs.benchmark.run import run_case

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--output", default="outputs/suite-dev-quick", help="the dev run whose peers are reused")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--results", default=None, help="also write ablation.md/json into this folder")
    args = ap.parse_args()
    output = Path(args.output)
    profile = plan.PROFILES[args.profile]
    if not (output / "report.json").is_file():
        raise SystemExit(
            f"{output}/report.json missing: run `hf-l3rs benchmark --suite dev --profile {args.profile} "
            f"--output {output}` first (the peers the rows are compared with)"
        )
    variants = make_variants(output / "weights")
    for folder in variants.values():
        for case in cases("dev"):
            run_case(case, profile, output, args.processes, str(folder))
    result = table(output, variants, profile)
    for folder in [output] + ([Path(args.results)] if args.results else []):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ablation.json").write_text(json.dumps(result, indent=1, default=str))
        (folder / "ablation.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
