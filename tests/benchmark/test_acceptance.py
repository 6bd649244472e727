"""The claim's bars read off a report: each verdict follows the issue's definition, with the
failing cases named, and a committed test report judged the way its closing notes did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_l3rs.benchmark import acceptance
from hf_l3rs.benchmark.stats import geomean

ROOT = Path(__file__).resolve().parents[2]


def _peer(loss: float, acc: float) -> dict:
    return {"loss": [loss, loss], "accuracy": [acc, acc]}


def _report(cases: dict[str, dict[str, tuple[float, float]]], speedup=None) -> dict:
    peers = sorted({p for c in cases.values() for p in c})
    summary = {p: {"geomean_loss": geomean([c[p][0] for c in cases.values() if p in c])} for p in peers}
    summary["l3rs"].update(geomean_speedup=speedup, speedup_reached=len(cases) if speedup else 0)
    return {
        "summary": summary,
        "cases": [{"name": n, "peers": {p: _peer(*v) for p, v in c.items()}} for n, c in cases.items()],
    }


def test_every_bar_met():
    report = _report(
        {
            "a": {
                "l3rs": (1.0, 0.80),
                "schedulefree-adamw": (1.1, 0.804),
                "prodigy": (1.2, 0.70),
                "adamw": (0.96, 0.81),
            },
            "b": {"l3rs": (2.0, 0.50), "schedulefree-adamw": (2.0, 0.50), "prodigy": (1.9, 0.49), "adamw": (2.0, 0.50)},
        },
        speedup=1.6,
    )
    verdicts = acceptance.bars(report)
    assert [b.met for b in verdicts] == [True, True, True, True]
    assert "| (stretch)" in acceptance.render(report) and "**no**" not in acceptance.render(report)


def test_each_failure_is_named_with_its_figure():
    report = _report(
        {
            # loses the geometric mean to Prodigy (the best LR-free peer by it, not by this case)
            "a": {"l3rs": (1.5, 0.80), "schedulefree-adamw": (1.6, 0.81), "prodigy": (1.0, 0.79), "adamw": (1.0, 0.82)},
            # two-rate AdamW is the tuned AdamW with the lower loss here: judged against it
            "b": {
                "l3rs": (1.0, 0.60),
                "schedulefree-adamw": (1.2, 0.60),
                "prodigy": (1.1, 0.60),
                "adamw": (1.0, 0.60),
                "two-rate-adamw": (0.5, 0.58),
            },
        }
    )
    geo, per_case, tuned, stretch = acceptance.bars(report)
    assert not geo.met and "Prodigy" in geo.evidence
    assert not per_case.met and per_case.evidence == "a -1.0 pts (schedule-free AdamW)"
    assert not tuned.met
    assert tuned.evidence == "loss a 1.50×, b 2.00×; accuracy a -2.0 pts"
    assert not stretch.met and "2 of 2" in stretch.evidence


def test_a_report_without_the_peers_to_judge_by_renders_no_section():
    report = _report({"a": {"l3rs": (1.0, 0.5), "schedulefree-adamw": (1.0, 0.5)}})
    assert not acceptance.applicable(report) and acceptance.render(report) == ""


def test_the_committed_test_report_of_the_default():
    """docs/results/l3rs-general@3ad74217dc-suite-v5: the verdicts its closing note gave by hand."""
    path = ROOT / "docs/results/l3rs-general@3ad74217dc-suite-v5/report.json"
    geo, per_case, tuned, stretch = acceptance.bars(json.loads(path.read_text()))
    assert not geo.met and geo.evidence.startswith("2.627 against schedule-free AdamW's 2.547")
    assert not per_case.met and per_case.evidence == "fortunes-decoder-full -1.4 pts (Prodigy)"
    assert not tuned.met and "fortunes-minilm-trainer -10.2 pts" in tuned.evidence
    assert not stretch.met
    assert pytest.approx(float(geo.evidence.split("(")[1].rstrip("×)")), abs=1e-3) == 1.032
