"""The ablation tool's extra seeds: paired runs of the current weights version only."""

from __future__ import annotations

import json

from hf_l3rs.benchmark import ablation, run
from hf_l3rs.benchmark.peers import PeerConfig


def test_extra_seeds_rerun_runs_of_another_weights_version(toy_case, toy_profile, tmp_path):
    """A seed-3 run kept from before a rule or config change is not the current version's run:
    it is run again instead of being left out of (or, worse, mixed into) the paired rows."""
    seeds = [3, 4]
    assert len(ablation.missing_runs(tmp_path, toy_case, ["l3rs-general"], seeds, toy_profile)) == 2
    for seed, version in ((3, "0123456789"), (4, run.weights_version("l3rs-general"))):
        path = run.run_path(tmp_path, toy_case, PeerConfig("l3rs", weights="l3rs-general"), seed, "score")
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "suite": run.fingerprint([toy_case]),
            "config": {"weights": "l3rs-general"},
            "weights_version": version,
        }
        path.write_text(json.dumps(record))
    jobs = ablation.missing_runs(tmp_path, toy_case, ["l3rs-general"], seeds, toy_profile)
    assert [job[2] for job in jobs] == [3]  # the stale seed again; the current seed-4 run is kept
