"""The ablation tool's extra seeds: paired runs of the current weights version only."""

from __future__ import annotations

import json
import shutil

import pytest

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
            "initial_weights": "0" * 12,
        }
        path.write_text(json.dumps(record))
    jobs = ablation.missing_runs(tmp_path, toy_case, ["l3rs-general"], seeds, toy_profile)
    assert [job[2] for job in jobs] == [3]  # the stale seed again; the current seed-4 run is kept


def test_ratio_column_pairs_each_row_with_the_default_on_its_seeds(tmp_path):
    """A row scored on fewer seeds than the default is compared with the default's ratio over
    those seeds (the default's own row may average more seeds and read better or worse)."""
    from hf_l3rs.benchmark import plan
    from hf_l3rs.benchmark.peers import DEFAULT_WEIGHTS
    from hf_l3rs.benchmark.suite import cases
    from hf_l3rs.optim.hub import resolve

    variant = tmp_path / "variant"
    shutil.copytree(resolve(DEFAULT_WEIGHTS), variant)
    dev = cases("dev")
    # default: loss 1 on seeds 0-2, 9 on seeds 3-7 (8 seeds); variant: loss 2 on seeds 0-2
    losses = {DEFAULT_WEIGHTS: [1.0] * 3 + [9.0] * 5, str(variant): [2.0] * 3}
    for weights, values in losses.items():
        for seed, loss in enumerate(values):
            for case in dev:
                p = run.run_path(tmp_path, case, PeerConfig("l3rs", weights=weights), seed, "score")
                p.parent.mkdir(parents=True, exist_ok=True)
                record = {
                    "suite": run.fingerprint([case]),
                    "config": {"weights": weights},
                    "weights_version": run.weights_version(weights),
                    "initial_weights": "0" * 12,
                    "loss": loss,
                    "accuracy": 0.5,
                }
                p.write_text(json.dumps(record))
    peers = {"schedulefree-adamw": {"loss": [1.0, 1.0, 1.0]}}
    report = {"cases": [{"name": c.name, "peers": peers} for c in dev]}
    (tmp_path / "report.json").write_text(json.dumps(report))
    result = ablation.table(tmp_path, {"variant": variant}, plan.PROFILES["quick"])
    row = result["rows"]["variant"]
    assert row["seeds"] == [0, 1, 2]
    assert row["loss_ratio_to_best_lr_free"] == pytest.approx(2.0)
    assert row["default_ratio_same_seeds"] == pytest.approx(1.0)
    default = result["rows"]["default (l3rs-general)"]
    assert default["loss_ratio_to_best_lr_free"] == pytest.approx((3 * 1 + 5 * 9) / 8)
    assert "| 2.000 (default 1.000) |" in ablation.render(result)


def test_the_rows_run_only_l3rs_and_need_the_peers_of_every_dev_case(tmp_path, monkeypatch):
    """The ablation scores its rows and nothing else: an output without the peers' runs (a dev
    report copied from another machine) must not send it tuning and scoring every peer again
    (hours on a CPU where Muon emulates bfloat16); a report that lacks a dev case is refused."""
    from hf_l3rs.benchmark import plan
    from hf_l3rs.benchmark.suite import cases

    profile = plan.PROFILES["quick"]
    with pytest.raises(SystemExit, match="fashion-resnet-probe"):
        report = {"cases": [{"name": c.name} for c in cases("dev") if c.name != "fashion-resnet-probe"]}
        (tmp_path / "report.json").write_text(json.dumps(report))
        ablation.require_peers(tmp_path, profile)
    jobs = []
    monkeypatch.setattr(run, "execute", lambda js, *a, **k: jobs.extend(js))
    ablation.score_rows(tmp_path, ["l3rs-general"], profile.score_seeds, profile, 1, "rows")
    assert len(jobs) == len(cases("dev")) * len(profile.score_seeds)
    assert {job[1].peer for job in jobs} == {"l3rs"}
