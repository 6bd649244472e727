"""`hf-l3rs analyze` (docs/design.md §6): the analyses recover what is known of Adam and SGD
with momentum (their own correctness checks), and the command writes plots and a report."""

from __future__ import annotations

import json

import pytest

from experiments.analysis import probes
from experiments.analysis.subjects import get_subject


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


#: a lineage rule (experiments/weights), given by path from the repository root as the CLI takes it
COSINE = "experiments/weights/l3rs-kanji-cosine"


def test_clipping_and_adaptation_tell_adam_from_sgd() -> None:
    adam, sgd = get_subject("adam"), get_subject("sgd-momentum")
    a, s = probes.clipping(adam), probes.clipping(sgd)
    assert (a.slope_large.abs() < 0.1).all() and (a.slope_small.abs() < 0.1).all()  # scale-invariant
    assert ((s.slope_large - 1).abs() < 0.05).all()  # the update is proportional to the gradient
    ra, rs = probes.adaptation(adam).response, probes.adaptation(sgd).response
    assert (rs > 5).all() and (ra < rs).all()  # SGD passes the ×10 through; Adam absorbs part of it


def test_analyze_command_writes_five_plots_and_a_report(tmp_path) -> None:
    from hf_l3rs.cli import main

    main(["analyze", COSINE, "adam", "--output", str(tmp_path), "--no-classic"])
    for plot in ("momentum", "clipping", "schedule", "adaptation", "mixing"):
        assert (tmp_path / f"{plot}.png").stat().st_size > 10_000, plot

    def refuse(constant):
        raise ValueError(constant)

    data = json.loads((tmp_path / "analysis.json").read_text(), parse_constant=refuse)
    l3rs = data[COSINE]
    assert l3rs["mixing"]["directions"] == ["sgd", "adam"] and data["adam"]["mixing"] is None
    # one schedule verdict per tensor, from the network alone (the cosine prior it was trained
    # on was removed in 0.2, docs/adr/0004)
    assert len(l3rs["schedule"]["kind"]) == len(l3rs["schedule"]["late_over_early"]) > 0
    report = (tmp_path / "analysis.md").read_text()
    assert f"| {COSINE} | head.weight |" in report and f"Mixing of {COSINE}" in report


def test_a_learned_schedule_is_divided_out_of_the_momentum(tmp_path) -> None:
    """Untrained VeLO-lite is Adam on a cosine prior: its impulse response, divided by its own
    learned rate step by step, gives Adam's β again (without the division it reads ≈ 0.83)."""
    from experiments.velo import VeLOLiteNet
    from hf_l3rs.optim.hub import save_net

    save_net(VeLOLiteNet(), tmp_path / "velo")
    result = probes.momentum(get_subject(str(tmp_path / "velo")))
    assert all(abs(b - 0.9) <= 0.02 for b in result.beta.tolist()), result.beta


# --------------------------------------------------------------- rate sensitivity (§6)


def _untrained(tmp_path, base_lr: float = 0.05):
    """Untrained meta-weights shaped for the two-moons MLP, saved like shipped ones."""
    from hf_l3rs.optim.config import L3RSConfig
    from hf_l3rs.optim.l3rs import L3RS
    from hf_l3rs.tasks.registry import get_family

    folder = tmp_path / "untrained"
    model = get_family("two_moons_mlp").sample(0, "train").init_model()
    L3RS(model, L3RSConfig(base_lr=base_lr)).save_pretrained(folder)
    return str(folder)


def test_parse_factors_puts_the_shipped_rule_first_and_refuses_bad_input() -> None:
    from experiments.analysis.sensitivity import parse_factors
    from hf_l3rs.optim.config import ConfigError

    assert parse_factors("2, 3/0.5,1/1,2") == [(1.0, 1.0), (2.0, 1.0), (3.0, 0.5)]
    for bad in ("0", "a", "1/2/3", "-1/1", "", "inf"):
        with pytest.raises(ConfigError):
            parse_factors(bad)


def test_split_groups_put_the_deepest_tensors_in_the_head_group(model) -> None:
    from experiments.analysis.sensitivity import split_groups

    names = [n for n, _ in model.named_parameters()]
    body, head = split_groups(model, 3.0, 0.5, head_fraction=0.25)
    assert (body["lr"], head["lr"]) == (3.0, 0.5)
    got = [n for n, _ in body["params"]] + [n for n, _ in head["params"]]
    assert got == names  # the model's order: depths are those of a plain L3RS
    n = len(names)
    assert [n_ for n_, _ in head["params"]] == [names[i] for i in range(n) if i / (n - 1) > 0.75]


def test_split_groups_with_roles_scale_only_those_backbone_tensors(model) -> None:
    from experiments.analysis.sensitivity import split_groups
    from hf_l3rs.optim.components import describe
    from hf_l3rs.optim.config import ConfigError

    named = list(model.named_parameters())
    comps = {c.name: c for c in describe(named, model)}
    groups = split_groups(model, 3.0, 0.5, head_fraction=0.25, roles=["conv"])
    rates = {n: g["lr"] for g in groups for n, _ in g["params"]}
    assert sorted(rates) == sorted(n for n, _ in named)
    for name, c in comps.items():
        want = 0.5 if c.depth > 0.75 else (3.0 if c.role == "conv" else 1.0)
        assert rates[name] == want, name
    assert 3.0 in rates.values() and 1.0 in rates.values()
    with pytest.raises(ConfigError, match="unknown role"):
        split_groups(model, 3.0, 1.0, head_fraction=0.25, roles=["convolution"])


def test_rate_sensitivity_is_paired_and_the_unscaled_cell_is_the_plain_optimizer(tmp_path) -> None:
    """x1/x1 equals L3RS.from_pretrained on the same tasks; x2/x2 equals lr=2 (the group rate is
    the multiplier); scaling only the backbone changes the result."""
    from experiments.analysis.sensitivity import rate_sensitivity
    from hf_l3rs.optim.l3rs import L3RS
    from hf_l3rs.tasks.inner_loop import run_task
    from hf_l3rs.tasks.registry import get_family

    source = _untrained(tmp_path)
    family = get_family("two_moons_mlp")
    cells = rate_sensitivity(
        source, family, factors=[(2.0, 1.0), (2.0, 2.0)], horizons=[6], num_tasks=3, progress=False
    )
    assert [(c.backbone, c.head) for c in cells] == [(1.0, 1.0), (2.0, 1.0), (2.0, 2.0)]
    tasks = [family.sample(s, "val") for s in range(3)]

    def mean_loss(lr: float) -> float:
        runs = [
            run_task(t, lambda m, total: L3RS.from_pretrained(source, m, total_steps=total, lr=lr), num_steps=6)
            for t in tasks
        ]
        return sum(r.eval_loss for r in runs) / 3

    assert cells[0].loss == pytest.approx(mean_loss(1.0), rel=1e-6)
    assert cells[2].loss == pytest.approx(mean_loss(2.0), rel=1e-6)
    assert cells[1].loss != pytest.approx(cells[0].loss, rel=1e-6)
    assert cells[0].loss_se == 0.0 and cells[1].loss_se > 0.0


def test_sensitivity_command_writes_a_table_json_and_plot(tmp_path) -> None:
    from hf_l3rs.cli import main

    config = tmp_path / "cfg.yaml"
    config.write_text("name: t\nfamily: two_moons_mlp\nfamily_kwargs: {}\n")
    out = tmp_path / "out"
    main(["sensitivity", _untrained(tmp_path), "--config", str(config), "--factors", "3",
          "--horizons", "4", "8", "--tasks", "2", "--roles", "linear", "--output", str(out)])  # fmt: skip
    report = json.loads((out / "sensitivity.json").read_text())
    assert [(c["backbone"], c["horizon"]) for c in report["cells"]] == [(1.0, 4), (3.0, 4), (1.0, 8), (3.0, 8)]
    md = (out / "sensitivity.md").read_text()
    assert "backbone ×3, head ×1" in md and "| 8 |" in md and "linear tensors" in md
    assert report["roles"] == ["linear"]
    assert (out / "sensitivity.png").stat().st_size > 0


def _cell(member: str, horizon: int, backbone: float, acc: float, se: float = 0.01, loss: float = 1.0):
    from experiments.analysis.sensitivity import SensitivityCell

    return SensitivityCell(member, horizon, backbone, 1.0, acc, loss, se, 0.01, 8)


def test_select_factor_stops_at_the_first_factor_that_harms_a_member() -> None:
    """The prior's rule on a hand case: ×2 and ×3 harm nobody, ×5 costs member b 5 points at
    T = 10 (s.e. 1 point), so ×10 is not reached even though it harms nobody."""
    from experiments.analysis.sensitivity import select_factor

    cells = []
    for member, base in (("a", 0.80), ("b", 0.50)):
        for horizon in (10, 25):
            cells.append(_cell(member, horizon, 1.0, base, se=0.0))
            cells.append(_cell(member, horizon, 2.0, base + 0.02))
            cells.append(_cell(member, horizon, 3.0, base - 0.015))  # within 2 s.e.
            cells.append(_cell(member, horizon, 5.0, base - (0.05 if (member, horizon) == ("b", 10) else 0.0)))
            cells.append(_cell(member, horizon, 10.0, base + 0.05))
    assert select_factor(cells) == 3.0
    first_harms = [c for c in cells if c.backbone in (1.0, 5.0)]
    assert select_factor(first_harms) == 1.0
    # Without accuracy (regression tasks) the held-out loss decides: +0.05 with s.e. 0.01 harms.
    nan = float("nan")
    no_acc = [
        _cell("r", 10, 1.0, nan, loss=1.0),
        _cell("r", 10, 2.0, nan, loss=0.98),
        _cell("r", 10, 4.0, nan, loss=1.05),
    ]
    assert select_factor(no_acc) == 2.0
    diverged = [*no_acc[:2], _cell("r", 10, 4.0, nan, loss=float("inf"))]
    assert select_factor(diverged) == 2.0


def test_variant_check_is_paired_against_the_plain_optimizer(tmp_path) -> None:
    """The rule as shipped is L3RS.from_pretrained on the same tasks; the variant is the same
    with the config field changed (here the base rate ×4, so a clear difference); setting a
    field to the value it has gives zero differences and is accepted."""
    from experiments.analysis.variant import variant_check
    from hf_l3rs.optim.l3rs import L3RS
    from hf_l3rs.tasks.inner_loop import run_task
    from hf_l3rs.tasks.registry import get_family

    source = _untrained(tmp_path)
    family = get_family("two_moons_mlp")
    (cell,) = variant_check(source, family, {"base_lr": 0.2}, horizons=[6], num_tasks=3, progress=False)
    tasks = [family.sample(s, "val") for s in range(3)]

    def mean_loss(**kw) -> float:
        runs = [
            run_task(t, lambda m, total: L3RS.from_pretrained(source, m, total_steps=total, **kw), num_steps=6)
            for t in tasks
        ]
        return sum(r.eval_loss for r in runs) / 3

    assert cell.loss == pytest.approx(mean_loss(), rel=1e-6)
    assert cell.variant_loss == pytest.approx(mean_loss(base_lr=0.2), rel=1e-6)
    assert cell.variant_loss != pytest.approx(cell.loss, rel=1e-6) and cell.loss_se > 0
    (same,) = variant_check(source, family, {"base_lr": 0.05}, horizons=[6], num_tasks=3, progress=False)
    assert same.variant_loss == same.loss and same.accuracy_se == 0.0 and not same.harmed()


def test_variant_verdict_follows_the_role_prior_rule() -> None:
    """Significantly worse in accuracy anywhere refuses the change; within 2 s.e. does not."""
    from experiments.analysis.variant import VariantCell, to_markdown

    fine = VariantCell("a", 10, 8, 0.80, 0.79, 0.01, 1.0, 1.01, 0.01)  # −1 point, s.e. 1
    worse = VariantCell("b", 25, 8, 0.50, 0.45, 0.01, 1.0, 1.10, 0.01)  # −5 points, s.e. 1
    assert not fine.harmed() and worse.harmed()
    assert "Accepted" in to_markdown([fine], "w", {"x": 1})
    md = to_markdown([fine, worse], "w", {"x": 1})
    assert "Refused: significantly worse for b at T = 25." in md and "(worse)" in md


def test_sensitivity_set_writes_the_variant_report(tmp_path) -> None:
    from hf_l3rs.cli import main

    config = tmp_path / "cfg.yaml"
    config.write_text("name: t\nfamily: two_moons_mlp\nfamily_kwargs: {}\n")
    source, out = _untrained(tmp_path), tmp_path / "out"
    main(["sensitivity", source, "--config", str(config), "--set", "base_lr=0.1", "adaptation_target=0.2",
          "--horizons", "4", "--tasks", "2", "--output", str(out)])  # fmt: skip
    report = json.loads((out / "variant.json").read_text())
    assert report["overrides"] == {"base_lr": 0.1, "adaptation_target": 0.2}
    assert [c["horizon"] for c in report["cells"]] == [4] and isinstance(report["refused"], bool)
    assert "`adaptation_target=0.2`" in (out / "variant.md").read_text()
    with pytest.raises(SystemExit, match="is not JSON"):
        main(["sensitivity", source, "--config", str(config), "--set", "variant=global", "--output", str(out)])
    with pytest.raises(SystemExit, match="base_lr"):
        main(["sensitivity", source, "--config", str(config), "--set", "base_lr=-1", "--output", str(out)])


def test_research_verbs_outside_a_checkout_say_where_the_code_is(tmp_path) -> None:
    """`experiments/` is not installed: from any other folder the verb says so instead of an ImportError."""
    import subprocess
    import sys

    code = "from hf_l3rs.cli import main; main(['analyze', 'l3rs-general', 'adam', '--no-classic'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode != 0
    assert "experiments.analysis.report" in out.stderr and "source checkout" in out.stderr
