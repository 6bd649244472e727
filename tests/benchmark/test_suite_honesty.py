"""Tests that catch a dishonest benchmark: each fails when its bug is seeded
(selection on test data, an unpaired bootstrap, a grid whose optimum sits on its edge, a peer
running with other settings than the report prints, a diverged run dropped)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_l3rs.benchmark import plan, report
from hf_l3rs.benchmark.peers import PeerConfig, SettingsMismatch, build, check_settings
from hf_l3rs.benchmark.plan import tune_results
from hf_l3rs.benchmark.run import run_case, run_one
from hf_l3rs.benchmark.stats import paired_bootstrap


def _record(config: PeerConfig, role: str, seed: int, loss: float) -> dict:
    return {"role": role, "seed": seed, "config": config.to_dict(), "key": config.key, "loss": loss}


def test_selection_reads_validation_runs_only(toy_case, toy_profile):
    a, b = PeerConfig("adamw", 1e-3, "cosine", 0.01), PeerConfig("adamw", 1e-2, "cosine", 0.01)
    runs = [_record(a, "tune", 100, 0.5), _record(b, "tune", 100, 0.9)]  # validation prefers a
    runs += [_record(b, "score", s, 0.1) for s in (0, 1, 2)] + [_record(a, "score", s, 0.8) for s in (0, 1, 2)]
    tune = tune_results(runs)
    assert set(tune) == {a, b} and tune[a] == [0.5]  # score runs never enter the tuning table
    chosen = [c for c in plan.scoring(toy_case, toy_profile, tune) if c.peer == "adamw"]
    assert chosen == [a]


def test_the_report_scores_the_setting_validation_chose(toy_case, toy_profile, tmp_path):
    runs = run_case(toy_case, toy_profile, tmp_path, progress=False)
    table = report.analyse_case(toy_case, toy_profile, runs)
    tune = tune_results(runs)
    for peer in ("adamw", "nesterov", "two-rate-adamw"):
        best_on_validation = min((c for c in tune if c.peer == peer), key=lambda c: plan.mean_loss(tune[c]))
        assert table["peers"][peer]["key"] == best_on_validation.key
        scored_seeds = sorted(r["seed"] for r in runs if r["role"] == "score" and r["key"] == best_on_validation.key)
        assert scored_seeds == [0, 1, 2]


def test_interval_is_paired():
    # seeds differ wildly, but L3RS beats the peer by exactly 0.01 on each seed
    base = np.array([1.0, 3.0, 0.2, 5.0, 2.0])
    mean, low, high = paired_bootstrap(base - 0.01, base)
    assert mean == pytest.approx(-0.01)
    assert low == pytest.approx(-0.01) and high == pytest.approx(-0.01)  # unpaired: an interval spanning ±2


def test_interval_shuffling_seeds_changes_it():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.1, 2.1, 3.1, 4.1])
    _, low, high = paired_bootstrap(a, b)
    _, low2, high2 = paired_bootstrap(a, b[::-1])  # pairs broken
    assert high < 0 and (low2, high2) != (low, high)


def test_an_optimum_on_the_grid_edge_extends_the_grid(toy_case, toy_profile):
    # validation loss falls with the rate over the whole first grid: the optimum is past its top
    tune = {c: [1.0 / c.lr] for c in plan.initial_grid(toy_case, toy_profile)}
    todo = plan.next_tuning(toy_case, toy_profile, tune)
    top = max(c.lr for c in tune if c.peer == "adamw")
    assert any(c.peer == "adamw" and c.lr > top for c in todo)
    # and once the extensions are used up, the edge is reported, not hidden
    for _ in range(10):
        todo = plan.next_tuning(toy_case, toy_profile, tune)
        if not todo:
            break
        tune.update({c: [1.0 / c.lr] for c in todo})
    chosen = plan.select(tune, "adamw")
    assert plan.edge(tune, chosen) == "high"


def test_an_interior_optimum_needs_no_extension(toy_case, toy_profile):
    grid = plan.initial_grid(toy_case, toy_profile)
    centre = {p: sorted({c.lr for c in grid if c.peer == p})[1] for p in ("adamw", "nesterov", "two-rate-adamw")}
    tune = {c: [abs(math.log10(c.lr / centre[c.peer]))] for c in grid}  # each best in its grid's middle
    todo = plan.next_tuning(toy_case, toy_profile, tune)
    assert todo == []  # the toy profile tunes one weight decay: nothing left
    for peer in centre:
        assert plan.edge(tune, plan.select(tune, peer)) is None


def test_the_report_flags_an_edge(toy_case, toy_profile, tmp_path, monkeypatch):
    import dataclasses

    narrow = dataclasses.replace(toy_profile, adamw_rates=(-8, -7), max_extensions=0)  # far too small rates
    runs = run_case(toy_case, narrow, tmp_path, progress=False)
    table = report.analyse_case(toy_case, narrow, runs)
    assert table["peers"]["adamw"]["edge"] == "high"
    md = report.render_markdown(
        {
            "suite": "v1",
            "split": "dev",
            "profile": "toy",
            "command": "x",
            "weights": "w",
            "meta_training": "n/a",
            "fingerprint": "f",
            "score_seeds": [0, 1, 2],
            "tune_seeds": [100],
            "cases": [table],
            "summary": report.summarise([table]),
        }
    )
    assert "optimum on the high edge of the grid" in md


def test_a_peer_built_with_other_settings_is_refused(monkeypatch):
    model = torch.nn.Linear(4, 2)
    config = PeerConfig("adamw", 1e-3, "cosine", 0.1)
    opt, _ = build(config, model, 10)
    assert check_settings(config, opt)[0]["weight_decay"] == 0.1
    opt.param_groups[0]["weight_decay"] = 0.0
    with pytest.raises(SettingsMismatch, match="weight_decay"):
        check_settings(config, opt)


def test_published_defaults_are_what_runs(monkeypatch, toy_case):
    import prodigyopt

    for name in ("schedulefree-adamw", "prodigy", "dadapt-adam", "muon", "adamw-1e-3"):
        config = PeerConfig(name)
        opt, _ = build(config, torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)), 10)
        check_settings(config, opt)
    real = prodigyopt.Prodigy
    monkeypatch.setattr(prodigyopt, "Prodigy", lambda params: real(params, d_coef=2.0))  # a silently tuned peer
    with pytest.raises(SettingsMismatch, match="d_coef"):
        run_one(toy_case, PeerConfig("prodigy"), 0, "score")


def test_a_diverged_run_is_reported_not_dropped(toy_case, toy_profile, tmp_path):
    record = run_one(toy_case, PeerConfig("nesterov", 1e6, "constant", 0.0), 0, "score")
    assert record["diverged"] and record["loss"] == math.inf
    runs = run_case(toy_case, toy_profile, tmp_path, progress=False)
    for r in runs:  # one of muon's three seeds blows up
        if r["role"] == "score" and r["config"]["peer"] == "muon" and r["seed"] == 1:
            r.update(loss=math.inf, accuracy=0.0, diverged=True)
    table = report.analyse_case(toy_case, toy_profile, runs)
    assert table["peers"]["muon"]["diverged"] == 1 and table["peers"]["muon"]["loss"][1] == math.inf
    assert report.summarise([table])["muon"]["geomean_loss"] == math.inf


def test_a_peer_running_another_schedule_is_refused(toy_case, monkeypatch):
    from hf_l3rs.benchmark import peers, run

    run.run_one(toy_case, PeerConfig("adamw", 1e-2, "warmup-linear", 0.01), 0, "score")  # as printed: passes
    real = peers.schedule_factor
    monkeypatch.setattr(peers, "schedule_factor", lambda s, n: real("constant", n))  # the schedule silently dropped
    with pytest.raises(SettingsMismatch, match="schedule"):
        run.run_one(toy_case, PeerConfig("adamw", 1e-2, "cosine", 0.01), 0, "score")
