"""``hf-l3rs benchmark --suite dev|test``: run a split, write its report.

The test split is scored once per weights version (a hash of the weights' files, so any
change of meta-weights or config is a new version): its report goes to
``docs/results/<weights>@<version>-suite-v1/`` and a second scoring of the same version is
refused (docs/adr/0001-benchmark-suite.md)."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from hf_l3rs.benchmark import plan, report
from hf_l3rs.benchmark.peers import DEFAULT_WEIGHTS
from hf_l3rs.benchmark.run import native_bfloat16, run_case, weights_version
from hf_l3rs.benchmark.suite import SUITE_VERSION, cases, fingerprint
from hf_l3rs.verbosity import get_logger

logger = get_logger(__name__)


class AlreadyScored(RuntimeError):
    """The test split was scored for this weights version already."""


def warn_if_muon_is_emulated() -> bool:
    """Say before hours of runs why the Muon peer's take so long on a CPU without bfloat16."""
    if torch.cuda.is_available() or native_bfloat16() is not False or "muon" not in plan.ZERO_TUNING:
        return False
    logger.warning(
        "this CPU has no native bfloat16 (no avx512_bf16 or amx_bf16): the Muon peer orthogonalises in "
        "bfloat16, which is emulated here, so its runs take many times longer than the others' (0.5 s a step "
        "on the dev split's MLP on an AVX2-only CPU); the figures are unaffected"
    )
    return True


def results_folder(root: Path, weights: str, version: str) -> Path:
    return root / f"{Path(weights).name}@{version}-suite-{SUITE_VERSION}"


def run_suite(
    split: str,
    profile_name: str,
    output: Path,
    processes: int = 1,
    weights: str | None = None,
    names: list[str] | None = None,
    results_root: Path | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    profile = plan.PROFILES[profile_name]
    weights = weights or DEFAULT_WEIGHTS
    version = weights_version(weights)
    selected = cases(split, names)
    publish = None
    if split == "test":
        publish = results_folder(results_root or Path("docs/results"), weights, version)
        if (publish / "report.json").is_file():
            raise AlreadyScored(
                f"{publish} exists: the test split of suite {SUITE_VERSION} was scored for {weights}@{version} "
                "already. Scores are final per weights version; change the weights (a new version) to score again."
            )
    warn_if_muon_is_emulated()
    start = time.perf_counter()
    all_runs = {case.name: run_case(case, profile, output, processes, weights, progress) for case in selected}
    # Costs after every run has finished, so that no training run competes with the timings.
    tables = []
    for case in selected:
        runs = all_runs[case.name]
        costs = _costs(output / "costs" / f"{case.name}.json", version, case, profile, runs, weights)
        tables.append(report.analyse_case(case, profile, runs, weights, costs))
    report.correct_across_cases(tables)
    meta = report.META_TRAINING.get(Path(weights).name)
    result = {
        "suite": SUITE_VERSION,
        "split": split,
        "profile": profile_name,
        "fingerprint": fingerprint(selected),
        "weights": weights,
        "weights_version": version,
        "meta_training": f"{meta['cpu_hours']} CPU-hours ({meta['source']})" if meta else "not recorded",
        "command": command or "hf-l3rs " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "score_seeds": list(profile.score_seeds),
        "tune_seeds": list(profile.tune_seeds),
        "machines": sorted({m for t in tables for m in t["machines"]}),
        "cases": tables,
        "summary": report.summarise(tables),
        "cpu_seconds_of_runs": round(sum(r["seconds"] for runs in all_runs.values() for r in runs), 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "scored_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for folder in [output, publish] if publish else [output]:
        write(result, folder)
    return result


def write(result: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(result, indent=1, default=lambda x: None))
    (folder / "report.md").write_text(report.render_markdown(result))
    for case in result["cases"]:
        report.plot_case(case, folder / f"{case['name']}.png")


def _costs(path: Path, version: str, case: Any, profile: Any, runs: Any, weights: str) -> dict[str, dict[str, float]]:
    """Step time and memory of every scored optimizer, measured together (ratios to fused AdamW
    in one run) and kept beside the runs; measured again when the weights version changed, so a
    report never shows another version's step time."""
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("weights_version") == version:
            return saved["costs"]
    costs = report.measure_costs(case, plan.scoring(case, profile, plan.tune_results(runs), weights))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"weights_version": version, "costs": costs}, indent=1))
    return costs
