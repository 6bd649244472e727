"""Any meta-weights folders on the dev split, paired with the default (ablation-style table):
``python experiments/scripts/dev_compare.py RESULTS.md LABEL=FOLDER [LABEL=FOLDER ...]``; runs are
stored beside the dev suite's in outputs/suite-dev-quick (a rerun only renders); only L3RS runs
(the default and the rows): the peers' figures come from the dev report there, or are assembled
case by case from the committed dev reports whose cases are current (computed on another CPU
perhaps: then the last column's denominators are that machine's, while the paired Δ columns and the
by-kind table, all L3RS runs of this machine, are exact). Used for the
long-horizon meta-training's checkpoints (ADR 0015), exported with
``experiments/scripts/export_best.py``; dev_variants.py renders its rows through :func:`compare`."""

import json
import sys
from pathlib import Path

from hf_l3rs.benchmark import plan
from hf_l3rs.benchmark.ablation import missing_dev_runs, render, table
from hf_l3rs.benchmark.peers import DEFAULT_WEIGHTS
from hf_l3rs.benchmark.run import execute
from hf_l3rs.benchmark.stats import geomean
from hf_l3rs.benchmark.suite import cases, fingerprint

OUT = Path("outputs/suite-dev-quick")
#: the committed dev reports, each of some of the current dev cases: v6's ten, v7's two twins
COMMITTED_REPORTS = (Path("docs/results/dev/report.json"), Path("docs/results/dev/twins-v7/report.json"))


def current_cases_of(report: dict) -> list[str]:
    """The names of ``report``'s cases if its fingerprint is that of their current definitions
    (the same cases, unchanged), else none."""
    names = [c["name"] for c in report["cases"]]
    known = {c.name for c in cases("dev")}
    if report.get("split") != "dev" or not set(names) <= known:
        return []
    return names if fingerprint(cases("dev", names)) == report["fingerprint"] else []


def assemble(reports: list[dict]) -> dict:
    """One report of every dev case, each case from the first of ``reports`` that holds it
    under its current definition; SystemExit naming the cases none holds."""
    found: dict[str, dict] = {}
    sources = []
    for report in reports:
        current = set(current_cases_of(report))
        taken = [c for c in report["cases"] if c["name"] in current and c["name"] not in found]
        if taken:
            names = [c["name"] for c in taken]
            sources.append({"command": report["command"], "fingerprint": report["fingerprint"], "cases": names})
        found.update((c["name"], c) for c in taken)
    missing = [c.name for c in cases("dev") if c.name not in found]
    if missing:
        raise SystemExit(
            f"no current dev report holds {missing}: run `hf-l3rs benchmark --suite dev --profile quick "
            f"--cases {' '.join(missing)}` first"
        )
    return {
        "split": "dev",
        "fingerprint": fingerprint(cases("dev")),
        "command": "assembled by experiments/scripts/dev_compare.py",
        "assembled_from": sources,
        "cases": [found[c.name] for c in cases("dev")],
    }


def peers_report() -> None:
    """The dev report the table reads the peers' losses from: OUT's own when it is of the current
    dev suite, else one assembled case by case from OUT's and the committed reports (the peers'
    runs are deterministic per seed and CPU)."""
    own = OUT / "report.json"
    reports = [json.loads(own.read_text())] if own.is_file() else []
    if reports and reports[0]["fingerprint"] == fingerprint(cases("dev")):
        return
    reports += [json.loads(p.read_text()) for p in COMMITTED_REPORTS if p.is_file()]
    OUT.mkdir(parents=True, exist_ok=True)
    own.write_text(json.dumps(assemble(reports), indent=1))


def score_l3rs(weights: list[str], processes: int = 2, dry: bool = False) -> None:
    """Score each weights (name or folder) on every dev case's score seeds; stored runs are kept.
    ``dry``: only check that none is missing."""
    profile = plan.PROFILES["quick"]
    jobs = missing_dev_runs(OUT, weights, profile.score_seeds, profile)
    if dry and jobs:
        raise SystemExit(
            f"{len(jobs)} runs of {weights} are missing; score them without HD_MODE first: "
            "python experiments/scripts/dev_compare.py /dev/null"
        )
    execute(jobs, processes, "L3RS on the dev split")


def compare(rows: dict[str, Path], generated_by: str, column: str, results: str | None, patched: bool = False) -> str:
    """Run every folder of ``rows`` on the dev split (stored runs are reused) and render the
    paired table, its header naming ``generated_by`` and its first column ``column``. ``patched``:
    this process runs a patched rule (hd_variants.py), so the default is never run here — its
    runs must exist, scored unpatched."""
    profile = plan.PROFILES["quick"]
    peers_report()
    if patched:
        score_l3rs([DEFAULT_WEIGHTS], dry=True)
        score_l3rs(list(map(str, rows.values())))
    else:
        score_l3rs([DEFAULT_WEIGHTS, *map(str, rows.values())])
    result = table(OUT, rows, profile)
    text = (
        render(result)
        .replace("Generated by `python -m hf_l3rs.benchmark.ablation`", f"Generated by {generated_by}")
        .replace("option group switched off", column)
    )
    text += by_kind(result)
    if results:
        Path(results).write_text(text)
    return text


def by_kind(result: dict) -> str:
    """Per dev kind, each row's geometric-mean test loss ÷ the default's on the same seeds."""
    kinds: dict[str, list[str]] = {}
    for case in cases("dev"):
        kinds.setdefault(case.kind, []).append(case.name)
    lines = [
        "",
        "## By kind: geometric-mean test loss ÷ the default's (same seeds)",
        "",
        "| row | " + " | ".join(f"{k} ({len(v)})" for k, v in kinds.items()) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for name, row in list(result["rows"].items())[1:]:
        cells = []
        for names in kinds.values():
            ratio = geomean([row["cases"][n]["loss"] / row["cases"][n]["default_loss"] for n in names])
            cells.append(f"{ratio:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    rows = {k: Path(v) for k, v in (arg.split("=", 1) for arg in sys.argv[2:])}
    command = "`python experiments/scripts/dev_compare.py " + " ".join(sys.argv[1:]) + "`"
    print(compare(rows, command, "weights", sys.argv[1]))


if __name__ == "__main__":
    main()
