"""`hf-l3rs analyze` (docs/design.md §6): the analyses recover what is known of Adam and SGD
with momentum (their own correctness checks), and the command writes plots and a report."""

from __future__ import annotations

import json

import pytest

from hf_l3rs.analysis import probes
from hf_l3rs.analysis.subjects import get_subject


@pytest.mark.parametrize("name", ["adam", "sgd-momentum"])
def test_momentum_recovers_beta(name: str) -> None:
    """β = 0.9 for both (Adam's normalised direction decays like β1/√β2 = 0.9005)."""
    result = probes.momentum(get_subject(name))
    assert len(result.beta) == 7
    assert all(abs(b - 0.9) <= 0.02 for b in result.beta.tolist()), result.beta


@pytest.mark.parametrize("name", ["adam", "sgd-momentum"])
def test_schedule_recovers_a_constant_rate(name: str) -> None:
    result = probes.schedule(get_subject(name))
    assert result.kind == ["constant"] * 7, result.late_over_early


def test_clipping_and_adaptation_tell_adam_from_sgd() -> None:
    adam, sgd = get_subject("adam"), get_subject("sgd-momentum")
    a, s = probes.clipping(adam), probes.clipping(sgd)
    assert (a.slope_large.abs() < 0.1).all() and (a.slope_small.abs() < 0.1).all()  # scale-invariant
    assert ((s.slope_large - 1).abs() < 0.05).all()  # the update is proportional to the gradient
    ra, rs = probes.adaptation(adam).response, probes.adaptation(sgd).response
    assert (rs > 5).all() and (ra < rs).all()  # SGD passes the ×10 through; Adam absorbs part of it


def test_analyze_command_writes_five_plots_and_a_report(tmp_path) -> None:
    from hf_l3rs.cli import main

    main(["analyze", "l3rs-kanji-cosine", "adam", "--output", str(tmp_path), "--no-classic"])
    for plot in ("momentum", "clipping", "schedule", "adaptation", "mixing"):
        assert (tmp_path / f"{plot}.png").stat().st_size > 10_000, plot

    def refuse(constant):
        raise ValueError(constant)

    data = json.loads((tmp_path / "analysis.json").read_text(), parse_constant=refuse)
    l3rs = data["l3rs-kanji-cosine"]
    assert l3rs["mixing"]["directions"] == ["sgd", "adam"] and data["adam"]["mixing"] is None
    # the shipped rule runs on a cosine prior: its step decays over a run at stationary inputs
    assert l3rs["schedule"]["kind"].count("decaying") >= 5
    report = (tmp_path / "analysis.md").read_text()
    assert "| l3rs-kanji-cosine | head.weight |" in report and "Mixing of l3rs-kanji-cosine" in report


def test_a_learned_schedule_is_divided_out_of_the_momentum(tmp_path) -> None:
    """Untrained VeLO-lite is Adam on a cosine prior: its impulse response, divided by its own
    learned rate step by step, gives Adam's β again (without the division it reads ≈ 0.83)."""
    from hf_l3rs.optim.hub import save_net
    from hf_l3rs.optim.velo import VeLOLiteNet

    save_net(VeLOLiteNet(), tmp_path / "velo")
    result = probes.momentum(get_subject(str(tmp_path / "velo")))
    assert all(abs(b - 0.9) <= 0.02 for b in result.beta.tolist()), result.beta
