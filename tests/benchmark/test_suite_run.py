"""Running the suite: resumable runs, L3RS as a user runs it, the report's numbers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hf_l3rs.benchmark import main, report, run
from hf_l3rs.benchmark.peers import PeerConfig
from hf_l3rs.benchmark.stats import geomean, holm, steps_to_reach


def test_a_killed_suite_resumes_without_rerunning(toy_case, toy_profile, tmp_path, monkeypatch):
    first = run.run_case(toy_case, toy_profile, tmp_path, progress=False)
    stored = sorted(p.name for p in (tmp_path / "runs").rglob("*.json"))
    victim = next((tmp_path / "runs" / toy_case.name / "score").glob("l3rs*seed1.json"))
    victim.unlink()  # the run that was in flight when the suite was killed
    calls = []
    real = run.run_one
    monkeypatch.setattr(run, "run_one", lambda *a, **k: calls.append(a[1].key) or real(*a, **k))
    again = run.run_case(toy_case, toy_profile, tmp_path, progress=False)
    assert calls == ["l3rs"]
    assert sorted(p.name for p in (tmp_path / "runs").rglob("*.json")) == stored
    assert len(again) == len(first)


def test_changed_weights_rerun_l3rs_instead_of_reusing_its_runs(toy_case, toy_profile, tmp_path, monkeypatch):
    """A stored L3RS run belongs to the weights version it ran with: after the weights' config
    (or tensors) change, the suite runs L3RS again and reuses every peer's runs."""
    import shutil

    from hf_l3rs.optim.hub import resolve

    weights = tmp_path / "w"
    shutil.copytree(resolve("l3rs-general"), weights)
    run.run_case(toy_case, toy_profile, tmp_path, weights=str(weights), progress=False)
    config = json.loads((weights / "config.json").read_text())
    config["l3rs"]["hypergradient_rate"] = 0.3  # a new version of the same-named weights
    (weights / "config.json").write_text(json.dumps(config))
    calls = []
    real = run.run_one
    monkeypatch.setattr(run, "run_one", lambda *a, **k: calls.append(a[1].key) or real(*a, **k))
    again = run.run_case(toy_case, toy_profile, tmp_path, weights=str(weights), progress=False)
    assert calls and all(c.startswith("l3rs-") for c in calls)
    assert len(calls) == len(toy_profile.score_seeds)
    assert {r["weights_version"] for r in again if r["config"]["peer"] == "l3rs"} == {run.weights_version(str(weights))}


def test_costs_are_measured_again_for_a_new_weights_version(toy_case, toy_profile, tmp_path, monkeypatch):
    """The step-time and memory ratios kept beside the runs belong to one weights version: a
    report of a new version (new weights, config or rule) never shows the old version's step time."""
    path = tmp_path / "costs" / f"{toy_case.name}.json"
    measured = []
    monkeypatch.setattr(main.report, "measure_costs", lambda case, configs: measured.append(1) or {"l3rs": {"x": 1.0}})
    monkeypatch.setattr(main.plan, "scoring", lambda *a: [])
    monkeypatch.setattr(main.plan, "tune_results", lambda runs: {})
    assert main._costs(path, "v1", toy_case, toy_profile, [], "w") == {"l3rs": {"x": 1.0}}
    main._costs(path, "v1", toy_case, toy_profile, [], "w")
    assert len(measured) == 1  # kept for the same version
    main._costs(path, "v2", toy_case, toy_profile, [], "w")
    assert len(measured) == 2
    assert json.loads(path.read_text())["weights_version"] == "v2"


def test_l3rs_runs_with_no_learning_rate_and_no_horizon(toy_case):
    record = run.run_one(toy_case, PeerConfig("l3rs"), 0, "score")
    assert record["declared"] == {"weights": "l3rs-general", "lr": 1.0}
    assert all(g["lr"] == 1.0 for g in record["settings"])
    from hf_l3rs.benchmark.peers import build
    from hf_l3rs.benchmark.problems import build as problem

    opt, _ = build(PeerConfig("l3rs"), problem(toy_case, 0, "score").model, toy_case.steps)
    assert opt.total_steps is None  # nobody told it the horizon


def test_runs_are_paired_and_deterministic(toy_case):
    a = run.run_one(toy_case, PeerConfig("adamw", 1e-2, "cosine", 0.01), 1, "score")
    b = run.run_one(toy_case, PeerConfig("adamw", 1e-2, "cosine", 0.01), 1, "score")
    assert a["loss"] == b["loss"] and a["held_curve"] == b["held_curve"]
    c = run.run_one(toy_case, PeerConfig("adamw", 1e-2, "cosine", 0.01), 2, "score")
    assert c["loss"] != a["loss"]


def test_tune_and_score_evaluate_on_disjoint_data(toy_case):
    from hf_l3rs.benchmark.problems import build as problem

    model = problem(toy_case, 0, "tune").model
    assert problem(toy_case, 0, "tune").evaluate(model) != problem(toy_case, 0, "score").evaluate(model)


def test_held_out_evaluation_keeps_no_graph(toy_case):
    """Scoring builds no autograd graph (memory, and torch's warning when a loss is read)."""
    from hf_l3rs.benchmark.problems import build as problem

    prob = problem(toy_case, 0, "score")
    seen = []
    real = prob.evaluate
    prob.evaluate = lambda model: seen.append(torch.is_grad_enabled()) or real(model)
    run.held_out(prob, torch.optim.SGD(prob.model.parameters(), lr=0.1))
    assert seen == [False]


def test_suite_report_end_to_end(toy_case, toy_profile, tmp_path, monkeypatch):
    monkeypatch.setattr(main, "cases", lambda split, names=None: [toy_case])
    monkeypatch.setitem(main.plan.PROFILES, "toy", toy_profile)
    result = main.run_suite("dev", "toy", tmp_path, progress=False, command="hf-l3rs benchmark --suite dev")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["summary"].keys() == result["summary"].keys()
    views = {row["view"] for row in result["summary"].values()}
    assert views == {"zero-tuning", "tuned"}
    expected = {
        "l3rs",
        "schedulefree-adamw",
        "prodigy",
        "dadapt-adam",
        "muon",
        "adamw-1e-3",
        "adamw",
        "nesterov",
        "two-rate-adamw",
    }
    assert set(result["summary"]) == expected
    case = result["cases"][0]
    for entry in case["peers"].values():
        assert len(entry["loss"]) == 3 and entry["settings"]
        assert entry["cost"]["step_time_ratio"] > 0
    l3 = case["peers"]["l3rs"]["loss"]
    sf = case["peers"]["schedulefree-adamw"]["loss"]
    assert case["l3rs_vs"]["schedulefree-adamw"]["loss_diff"] == pytest.approx(sum(l3) / 3 - sum(sf) / 3)
    assert (tmp_path / f"{toy_case.name}.png").is_file()
    md = (tmp_path / "report.md").read_text()
    assert "schedule-free AdamW" in md and "hf-l3rs benchmark --suite dev" in md
    # the pairing is checked, not assumed: one start per seed, recorded with the machine
    assert len(case["initial_weights"]) == 3 and len(set(case["initial_weights"])) == 3
    assert saved["machines"] == [run.machine()] and "torch" in saved["machines"][0] and run.machine() in md


def test_a_report_refuses_runs_that_started_from_other_weights(toy_case, toy_profile, tmp_path):
    """A run copied in from another machine (its checkpoint built there differs) would be paired
    with this machine's runs of the same seed: the report stops and says why instead."""
    runs = run.run_case(toy_case, toy_profile, tmp_path, progress=False)
    report.analyse_case(toy_case, toy_profile, runs)  # as run: one start per seed
    foreign = next(r for r in runs if r["role"] == "score" and r["key"] == "prodigy" and r["seed"] == 1)
    foreign["initial_weights"] = "f" * 12
    with pytest.raises(ValueError, match="started from different weights"):
        report.analyse_case(toy_case, toy_profile, runs)


def test_the_test_split_is_scored_once_per_weights_version(tmp_path, monkeypatch):
    version = main.weights_version("l3rs-general")
    folder = main.results_folder(tmp_path, "l3rs-general", version)
    folder.mkdir(parents=True)
    (folder / "report.json").write_text("{}")
    with pytest.raises(main.AlreadyScored, match="scored"):
        main.run_suite("test", "quick", tmp_path / "out", results_root=tmp_path, progress=False)


def test_stats_helpers():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, math.nan]) == [0.5, math.nan] or math.isnan(holm([0.5, math.nan])[1])
    assert geomean([1.0, 4.0]) == pytest.approx(2.0)
    assert geomean([1.0, math.inf]) == math.inf
    assert steps_to_reach(0.5, [(1, 1.0), (10, 0.4)]) == pytest.approx(10 ** (0.5 / 0.6))
    assert steps_to_reach(0.1, [(1, 1.0), (10, 0.4)]) is None


def test_cost_ratios_are_against_fused_adamw(toy_case):
    costs = report.measure_costs(toy_case, [PeerConfig("adamw", 1e-3, "constant", 0.01), PeerConfig("l3rs")], repeats=3)
    assert costs["adamw-lr0.001-constant-wd0.01"]["state_memory_ratio"] == pytest.approx(1.0)
    assert costs["l3rs"]["state_memory_ratio"] > 0
    torch.set_num_threads(2)


def test_lora_init_does_not_depend_on_what_the_process_built_before(monkeypatch):
    """A cached pretrained template that consumes the RNG on first use must not shift the
    seeded LoRA initialisation: seed 0 is the same problem in every worker process."""
    import functools

    from hf_l3rs.benchmark import problems
    from hf_l3rs.tasks.text import build_decoder

    @functools.lru_cache(maxsize=1)
    def template(name):
        return build_decoder(
            hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1
        )

    monkeypatch.setattr(problems, "_decoder_template", template)
    first = problems.decoder_text(0, "score", 10, corpus="docstrings", decoder="tiny", lora=True)  # builds the cache
    again = problems.decoder_text(0, "score", 10, corpus="docstrings", decoder="tiny", lora=True)  # reuses it
    a = {n: p for n, p in first.model.named_parameters() if "lora_A" in n}
    b = {n: p for n, p in again.model.named_parameters() if "lora_A" in n}
    assert a and all(torch.equal(a[n], b[n]) for n in a)


def test_the_noisy_dev_case_differs_from_its_sibling_only_in_batch():
    """Suite v3's fashion-mlp-batch8 is fashion-mlp-scratch at batch 8: same model at the same
    seed, same held-out data, batches of 8 drawn from the same training images."""
    from hf_l3rs.benchmark.problems import build as problem
    from hf_l3rs.benchmark.suite import cases

    by_name = {c.name: c for c in cases("dev")}
    wide, noisy = (problem(by_name[n], 0, "score") for n in ("fashion-mlp-scratch", "fashion-mlp-batch8"))
    assert wide.train_batch(0)[0].shape[0] == 128 and noisy.train_batch(0)[0].shape[0] == 8
    for a, b in zip(wide.model.parameters(), noisy.model.parameters()):
        assert torch.equal(a, b)
    assert wide.evaluate(wide.model) == noisy.evaluate(noisy.model)


def test_the_text_classification_dev_case_keeps_the_pretrained_body_under_a_new_head(monkeypatch):
    """Suite v6's docstring-decoder-classify-trainer: the decoder's pretrained body under a new
    ``score`` head; 4 classes of 60 training paragraphs drawn per seed; validation and test
    held-out sets differ."""
    import functools

    from hf_l3rs.benchmark import problems
    from hf_l3rs.tasks.text import build_decoder

    @functools.lru_cache(maxsize=1)
    def template(name):
        torch.manual_seed(123)
        return build_decoder(
            hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1
        )

    monkeypatch.setattr(problems, "_decoder_template", template)
    tune, score, other = (
        problems.docstring_classify(seed, role, 10, decoder="tiny")
        for seed, role in ((0, "tune"), (0, "score"), (1, "score"))
    )
    body = template("tiny").model.state_dict()
    assert all(torch.equal(v, score.model.model.state_dict()[k]) for k, v in body.items())
    assert score.head == ("score.",) and score.model.score.out_features == 4
    labels = torch.stack([e["labels"] for e in score.train_examples])
    assert torch.equal(torch.bincount(labels), torch.full((4,), 60))
    batch = score.train_batch(0)
    assert batch["input_ids"].shape == (8, 128) and set(batch) == {"input_ids", "attention_mask", "labels"}
    paragraphs = [{tuple(e["input_ids"].tolist()) for e in p.train_examples} for p in (score, other)]
    assert paragraphs[0] != paragraphs[1]  # drawn per seed
    assert tune.evaluate(tune.model) != score.evaluate(score.model)  # same model, other held-out texts


def test_a_cpu_without_bfloat16_is_told_why_muon_is_slow(monkeypatch, caplog):
    """torch.optim.Muon orthogonalises in bfloat16; on an AVX2-only CPU that is emulated and its
    runs dominate the suite's hours: the benchmark says so before it starts."""
    avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
    assert run.native_bfloat16(avx2) is False
    assert run.native_bfloat16(avx2.replace("avx2", "avx2 avx512f avx512_bf16")) is True
    assert run.native_bfloat16("processor\t: 0\n") is None  # no flags line: unknown, no warning
    monkeypatch.setattr(main.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(main, "native_bfloat16", lambda: False)
    with caplog.at_level("WARNING", logger="hf_l3rs"):
        assert main.warn_if_muon_is_emulated()
    assert "Muon" in caplog.text and "bfloat16" in caplog.text
    monkeypatch.setattr(main, "native_bfloat16", lambda: None)
    assert not main.warn_if_muon_is_emulated()
