"""The classic-family comparison (hf_l3rs.evaluation.classic): tuned baselines, per-task
losses, win counts and paired differences."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from hf_l3rs.evaluation.classic import compare, paired_difference, save, to_markdown
from hf_l3rs.optim import L3RS, L3RSConfig
from hf_l3rs.tasks.classic import LinearRegression


def _strict_json(text: str):
    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_compare_reports_per_task_losses_wins_and_paired_difference(tmp_path) -> None:
    family = LinearRegression(k_min=5, k_max=5)
    net = L3RS(family.sample(0).init_model(), L3RSConfig(base_lr=0.1), total_steps=5).net
    result = compare(family, {"L3RS": net}, baselines=("adam", "rmsprop"), tune_tasks=2, test_tasks=3, grid=[0.01, 0.1])
    rows = result["rows"]
    assert len(rows) == 3 and all(r["lr"] in (0.01, 0.1) for k, r in rows.items() if k != "L3RS")
    best = rows[result["best_baseline_row"]]
    assert best["loss_mean"] == min(r["loss_mean"] for k, r in rows.items() if k != "L3RS")
    l3rs = rows["L3RS"]
    assert len(l3rs["losses"]) == 3 and statistics.fmean(l3rs["losses"]) == pytest.approx(l3rs["loss_mean"])
    diffs = [a - b for a, b in zip(l3rs["losses"], best["losses"])]
    assert l3rs["wins_vs_best_baseline"] == sum(d < 0 for d in diffs)
    assert l3rs["paired_diff_mean"] == pytest.approx(statistics.fmean(diffs))
    assert l3rs["paired_diff_se"] == pytest.approx(statistics.stdev(diffs) / math.sqrt(3))
    table = to_markdown(result)
    assert f"| {result['best_baseline_row']} |" in table and f"{l3rs['paired_diff_mean']:+.3g}" in table
    save(result, tmp_path)
    assert _strict_json((tmp_path / "classic_linear_regression.json").read_text())["rows"]["L3RS"]["losses"]


def test_paired_difference_is_undefined_for_a_diverged_run() -> None:
    assert paired_difference([1.0, math.inf], [1.0, 2.0]) == {"paired_diff_mean": None, "paired_diff_se": None}
    assert paired_difference([1.0, 3.0], [2.0, 2.0]) == {"paired_diff_mean": 0.0, "paired_diff_se": pytest.approx(1.0)}


def test_a_diverging_baseline_is_reported_not_a_crash(tmp_path) -> None:
    family = LinearRegression(k_min=5, k_max=5)
    net = L3RS(family.sample(0).init_model(), L3RSConfig(base_lr=0.1), total_steps=5).net
    result = compare(family, {"L3RS": net}, baselines=("sgd",), tune_tasks=1, test_tasks=3, grid=[1e12])
    row = result["rows"]["sgd (lr 1e+12)"]
    assert row["diverged"] == 3 and row["loss_mean"] == math.inf and row["losses"] == [None] * 3
    save(result, tmp_path)
    saved = _strict_json((tmp_path / "classic_linear_regression.json").read_text())
    assert saved["rows"]["sgd (lr 1e+12)"]["loss_mean"] is None and "inf" in to_markdown(result)
