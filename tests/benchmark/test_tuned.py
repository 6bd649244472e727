"""The tuned benchmark (hf_l3rs.evaluation.tuned): grid-edge handling, validation/test
disjointness, paired statistics and speedups on hand-computed cases, and a tiny end-to-end run."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import pytest

from hf_l3rs.evaluation.stats import bootstrap_speedup, paired, speedup_at, steps_to_reach
from hf_l3rs.evaluation.tuned import TunedBenchmark, TunedConfig, choose
from hf_l3rs.optim import ConfigError
from hf_l3rs.registry import OptimizerSpec, parse_family, parse_optimizer

#: a small lineage rule (experiments/weights), by path as the config takes it
TINY = str(Path(__file__).resolve().parents[2] / "experiments" / "weights" / "l3rs-kanji-tiny")


def test_registry_names_one_meaning_each() -> None:
    assert parse_optimizer("sgd-const-1e-2") == OptimizerSpec("sgd", "const", 1e-2)
    momentum = parse_optimizer("momentum-const-1e-2").build([__import__("torch").zeros(2, requires_grad=True)], 5)
    assert momentum.defaults["momentum"] == 0.9 and not momentum.defaults["nesterov"]
    plain = parse_optimizer("sgd-const-1e-2").build([__import__("torch").zeros(2, requires_grad=True)], 5)
    assert plain.defaults["momentum"] == 0
    assert parse_optimizer("adam-cos-head-1e-4").head_only and parse_optimizer("adam-cos-head-1e-4").per_horizon
    assert parse_family("nesterov-cos").family == "nesterov-cos"
    with pytest.raises(ValueError, match="expected <kind>-<schedule>"):
        parse_optimizer("sgd-1e-2")


def test_registry_runs_a_base_direction_as_a_baseline() -> None:
    """``shampoo`` (the whitened base direction L3RS can mix) is also a kind a user can tune:
    p -= lr·d with d the direction's own formula, so a learned rule that uses it is compared
    with it (docs/adr/0006, "A whitened head direction")."""
    import torch

    from hf_l3rs.optim.directions import get_direction

    spec = parse_optimizer("shampoo-const-head-0.2")
    assert spec.family == "shampoo-const-head" and spec.label == "one-sided Shampoo (const, head) 0.2"
    w = torch.nn.Parameter(torch.zeros(3, 4, dtype=torch.float64))
    opt = spec.build([w], 10)
    direction = get_direction("shampoo")
    hp = {k: v.default for k, v in direction.hyper_defaults.items()}
    state = direction.init_state(w)
    g = torch.Generator().manual_seed(0)
    for step in range(1, 4):
        grad = torch.randn(3, 4, generator=g, dtype=torch.float64)
        d, state = direction.reference(w, grad, state, hp, step)
        before = w.detach().clone()
        w.grad = grad
        opt.step()
        torch.testing.assert_close(before - w.detach(), 0.2 * d)
    with pytest.raises(ValueError, match="no hyper-parameters"):
        type(opt)([w], lr=0.1, hyper={"beta3": 0.5})


def test_warmup_cosine_schedule_rises_then_decays() -> None:
    import torch

    p = torch.zeros(1, requires_grad=True)
    opt = parse_optimizer("adam-warmcos-1.0").build([p], 20)
    rates = []
    for _ in range(20):
        rates.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(1)
        opt.step()
    assert rates[:2] == pytest.approx([0.5, 1.0])  # warm-up over 10 % = 2 steps
    assert rates[2] == pytest.approx(1.0) and all(a >= b for a, b in itertools.pairwise(rates[2:]))
    assert rates[-1] < 0.01


@pytest.mark.parametrize(
    ("losses", "metric", "expected"),
    [
        ({-8: 3.0, -7: 2.0, -6: 1.0}, "loss", (-6, "high")),
        ({-8: 1.0, -7: 2.0, -6: 3.0}, "loss", (-8, "low")),
        ({-8: 3.0, -7: 1.0, -6: 2.0}, "loss", (-7, None)),
        ({-8: 3.0, -7: math.inf, -6: 2.0}, "loss", (-6, "high")),
    ],
)
def test_choose_detects_grid_edges(losses, metric, expected) -> None:
    scores = {k: {"loss": v, "accuracy": 0.5} for k, v in losses.items()}
    assert choose(scores, metric) == expected


def test_choose_accuracy_breaks_ties_by_loss() -> None:
    scores = {
        -8: {"accuracy": 0.9, "loss": 0.5},
        -7: {"accuracy": 0.9, "loss": 0.3},
        -6: {"accuracy": 0.8, "loss": 0.1},
    }
    assert choose(scores, "accuracy") == (-7, None)
    assert choose(scores, "loss") == (-6, "high")


def _fake_benchmark(optimum_exponent: float, max_extensions: int, seen: list) -> TunedBenchmark:
    """A benchmark whose runs are a synthetic loss (log10 lr - optimum)^2: no tasks built."""
    import torch

    cfg = TunedConfig(
        families=["adam-const"],
        horizons=[5, 10],
        val_tasks=2,
        test_tasks=3,
        max_extensions=max_extensions,
        l3rs={"L3RS": None},
    )
    bench = TunedBenchmark(cfg, progress=False)

    def runs(items, accelerator, desc):
        seen.extend(items)
        rows = []
        for _ev, _split, i, what, _hs in items:
            lr = what.lr if not isinstance(what, str) else 10**optimum_exponent
            loss = (math.log10(lr) - optimum_exponent) ** 2 + 0.01 * i
            rows.append([loss, loss / 2, 1 / (1 + loss), 1 / (1 + loss / 2)])
        return torch.tensor(rows, dtype=torch.float64)

    bench._runs = runs
    return bench


def test_tuning_extends_an_edge_until_the_optimum_is_interior() -> None:
    seen: list = []
    bench = _fake_benchmark(-5.0, max_extensions=4, seen=seen)
    tuning = bench.tune("A")["adam-const"]
    for metric in ("loss", "accuracy"):
        for h in ("5", "10"):
            chosen = tuning["chosen"][metric][h]
            assert chosen["lr"] == pytest.approx(1e-5) and chosen["edge"] is None
    assert min(tuning["rates"]) == pytest.approx(10**-5.5)  # one half-decade beyond the optimum
    assert {item[1] for item in seen} == {"val"}  # tuning only ever sees validation tasks


def test_tuning_reports_an_edge_it_could_not_leave() -> None:
    bench = _fake_benchmark(-7.0, max_extensions=1, seen=[])
    chosen = bench.tune("A")["adam-const"]["chosen"]["loss"]["10"]
    assert chosen["edge"] == "low" and chosen["lr"] == pytest.approx(10**-4.5)


def test_test_runs_use_test_tasks_and_the_chosen_rates() -> None:
    seen: list = []
    bench = _fake_benchmark(-3.0, max_extensions=2, seen=seen)
    tuning = bench.tune("A")
    seen.clear()
    test = bench.test("A", tuning)
    assert {item[1] for item in seen} == {"test"}
    assert [item[3].lr for item in seen if not isinstance(item[3], str)] == pytest.approx([1e-3] * 3)
    assert len(test["adam-const"]["loss"]["10"]["values"]) == 3 and len(test["L3RS"]["accuracy"]["5"]["values"]) == 3


def test_validation_and_test_tasks_draw_disjoint_classes(tiny_kanji) -> None:
    from hf_l3rs.tasks.images import ImageTaskFamily, ImageTaskSpec, load_image_dataset

    spec = ImageTaskSpec(classes_per_task=2, train_per_class=2, eval_per_class=2, batch_size=4, k_min=1, k_max=1)
    fam = ImageTaskFamily(load_image_dataset(str(tiny_kanji)), spec, model_name="l3rs_resnet_tiny", name="k")

    def classes(split: str) -> set[int]:
        out = set()
        for seed in range(6):
            task = fam.sample(seed, split)
            out |= set(_task_classes(fam, task))
        return out

    val, test = classes("val"), classes("test")
    assert val and test and val.isdisjoint(test)
    assert val <= set(fam.class_splits.classes["meta_train"]) and test <= set(fam.class_splits.classes["meta_test"])


def _task_classes(fam, task) -> list[int]:
    """Original class ids of a task's evaluation images (found by pixel identity)."""
    import torch

    out = []
    for x in task.eval_x:
        out += [c for c, members in fam.by_class.items() if any(torch.equal(fam.image(i), x) for i in members)]
    return out


def test_paired_difference_on_a_hand_computed_case() -> None:
    out = paired([0.8, 0.6, 0.9], [0.7, 0.7, 0.7], higher_is_better=True)
    # diffs 0.1, -0.1, 0.2: mean 1/15, sample sd sqrt(0.07/3), se = sd / sqrt(3)
    assert out["mean"] == pytest.approx(1 / 15)
    assert out["se"] == pytest.approx(math.sqrt(0.07 / 3) / math.sqrt(3))
    assert out["wins"] == 2 and out["n"] == 3 and out["significant"] == 0
    loss = paired([1.0, 1.1, 0.9, 1.0], [2.0, 2.0, 2.0, 2.1], higher_is_better=False)
    assert loss["mean"] == pytest.approx(-1.025) and loss["wins"] == 4 and loss["significant"] == 1
    assert paired([1.0, math.inf], [1.0, 1.0], higher_is_better=False)["mean"] is None


def test_steps_to_target_and_speedup_by_hand() -> None:
    assert steps_to_reach(0.5, [10, 100], [0.2, 0.8]) == pytest.approx(10**1.5)
    assert steps_to_reach(1.0, [10, 100], [2.0, 0.5], higher_is_better=False) == pytest.approx(10 ** (1 + 2 / 3))
    assert speedup_at(100, [10, 100], [0.2, 0.8], 0.5, True) == (pytest.approx(100 / 10**1.5), False)
    assert speedup_at(100, [10, 100], [0.6, 0.8], 0.5, True) == (10.0, True)  # only a lower bound
    assert speedup_at(100, [10, 100], [0.2, 0.4], 0.5, True) == (None, False)
    runs = {10: [0.2, 0.2, 0.2], 100: [0.8, 0.8, 0.8]}
    out = bootstrap_speedup(100, [10, 100], runs, [0.5, 0.5, 0.5], True, samples=50)
    assert out["speedup"] == pytest.approx(100 / 10**1.5) and out["low"] == out["high"] == pytest.approx(out["speedup"])


def test_bad_benchmark_configs_name_the_field() -> None:
    with pytest.raises(ConfigError, match="families"):
        TunedConfig(families=["adagrad-const"])
    with pytest.raises(ConfigError, match="horizons"):
        TunedConfig(horizons=[10])
    with pytest.raises(ConfigError, match="grids"):
        TunedConfig(grids={"adam": [-2, -4]})
    with pytest.raises(ConfigError, match="test_tasks"):
        TunedConfig(test_tasks=1)


def test_tiny_end_to_end_run_writes_strict_json_and_tables(tmp_path, tiny_kanji) -> None:
    from hf_l3rs.evaluation.tuned_report import markdown, save

    src = str(tiny_kanji)
    spec = {"classes_per_task": 2, "train_per_class": 2, "eval_per_class": 2, "batch_size": 4, "image_size": 16}
    cfg = TunedConfig(
        domains={"D1": src, "D2": src},
        task_specs={src: spec},
        evaluations=["E"],
        horizons=[1, 2],
        families=["adam-cos", "sgd-const", "adam-const-head"],
        grids={"adam": [-2, -1], "sgd": [-2, -1]},
        max_extensions=1,
        val_tasks=1,
        test_tasks=2,
        l3rs={"L3RS (untrained)": None},
        l3rs_probes={"L3RS probe": "l3rs-general"},
        bootstrap_samples=20,
    )
    results = TunedBenchmark(cfg, progress=False).run()
    data = results["evaluations"]["E"]
    for metric in ("loss", "accuracy"):
        for h in ("1", "2"):
            best = data["best"][metric][h]
            means = [data["summary"][f][metric][h]["mean"] for f in cfg.families]
            assert best["mean"] == (max(means) if metric == "accuracy" else min(means))
            assert data["comparisons"]["L3RS (untrained)"][metric][h]["paired"]["n"] == 2
    paths = save(results, tmp_path)

    def refuse(name):
        raise ValueError(name)

    assert json.loads(paths["json"].read_text(), parse_constant=refuse)["evaluations"]["E"]["best"]
    assert "best tuned baseline" in markdown(results) and (tmp_path / "tuned_E.png").stat().st_size > 0
    again = TunedBenchmark(cfg, progress=False).run(previous=json.loads(paths["json"].read_text()))
    assert again["reused_baselines"] == {"E": cfg.families}
    assert again["reused_l3rs"] == {"E": ["L3RS (untrained)", "L3RS probe"]}
    assert data["comparisons"]["L3RS probe"]["accuracy"]["2"]["paired"]["n"] == 2
    assert again["evaluations"]["E"]["comparisons"] == data["comparisons"]
    # the same label with other meta-weights is run again
    other = dataclasses.replace(cfg, l3rs={"L3RS (untrained)": TINY})
    rerun = TunedBenchmark(other, progress=False).run(previous=json.loads(paths["json"].read_text()))
    assert rerun["reused_l3rs"] == {"E": ["L3RS probe"]}
    assert rerun["evaluations"]["E"]["test"]["L3RS (untrained)"] != data["test"]["L3RS (untrained)"]
    for metric in ("loss", "accuracy"):
        for h in ("1", "2"):
            old, new = data["best"][metric][h], again["evaluations"]["E"]["best"][metric][h]
            assert (new["family"], new["lr"], new["mean"]) == (old["family"], old["lr"], old["mean"])
    # a family added to the list is tuned and tested; the ones already there are reused as they are
    wider = dataclasses.replace(cfg, families=[*cfg.families, "nesterov-const"])
    added = TunedBenchmark(wider, progress=False).run(previous=json.loads(paths["json"].read_text()))
    assert added["reused_baselines"] == {"E": cfg.families}
    fresh = TunedBenchmark(wider, progress=False).run()
    for key in ("tuning", "test"):
        assert added["evaluations"]["E"][key] == fresh["evaluations"]["E"][key]


def test_net_fingerprint_names_the_weights_not_the_source() -> None:
    import torch

    from hf_l3rs.evaluation.tuned import net_fingerprint
    from hf_l3rs.optim.hub import load_net

    a, b = load_net(TINY), load_net(TINY)
    assert net_fingerprint(a) == net_fingerprint(b) != net_fingerprint(load_net("l3rs-kanji-whiten"))
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-6
    assert net_fingerprint(a) != net_fingerprint(b)


def test_l3rs_probe_steps_only_the_head_on_the_frozen_features(tiny_scratch_protocol) -> None:
    """An ``l3rs_probes`` entry is L3RS over the whole model with the body frozen, the head
    trained on the body's inference-mode features (what the head-only families get), from
    the loss it is handed: the same numbers as that loop written out, not the full model's."""
    import math

    import torch
    from torch import nn

    from hf_l3rs import L3RS
    from hf_l3rs.evaluation.optimizers import L3RSEntry
    from hf_l3rs.optim.hub import load_net

    proto = tiny_scratch_protocol
    task = proto.family(None, "D1").sample(0, "val")
    net = load_net("l3rs-general")
    probe = proto.run_optimizer(L3RSEntry("probe", head_only=True, net=net), task, [3])[3]
    whole = proto.run_optimizer(L3RSEntry("whole", net=net), task, [3])[3]

    model = task.init_model().eval()
    with torch.no_grad():
        f_train = model.forward_head(model.forward_features(task.train_x), pre_logits=True)
        f_eval = model.forward_head(model.forward_features(task.eval_x), pre_logits=True)
    head = model.get_classifier()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    opt = L3RS(model, net, total_steps=3)
    assert [c.name for c in opt.components] == ["fc.weight", "fc.bias"]
    for t in range(3):
        idx = task.batch_indices(t)
        loss = nn.functional.cross_entropy(head(f_train[idx]), task.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step(loss=loss.detach())
    with torch.no_grad():
        expected = float(nn.functional.cross_entropy(head(f_eval), task.eval_y))
    assert math.isfinite(probe[0]) and probe[0] == pytest.approx(expected, rel=1e-6)
    assert probe[0] != pytest.approx(whole[0], rel=1e-3)


def test_probe_and_whole_model_entries_need_their_own_labels() -> None:
    with pytest.raises(ConfigError, match="labels must differ"):
        TunedConfig(l3rs={"x": "l3rs-general"}, l3rs_probes={"x": "l3rs-general"})


def test_benchmark_command_line_names_whole_model_and_probe_entries() -> None:
    from hf_l3rs.cli import build_parser, named_entries

    args = build_parser().parse_args(
        ["benchmark", "--l3rs", "mine=runs/x/best", "untrained", "--l3rs-probe", "l3rs-general", "p=untrained"]
    )
    assert named_entries(args.l3rs, "L3RS") == {"mine": "runs/x/best", "L3RS (untrained)": None}
    assert named_entries(args.l3rs_probe, "L3RS probe") == {"L3RS probe (l3rs-general)": "l3rs-general", "p": None}
    assert named_entries(None, "L3RS") is None


def test_speedup_interval_is_paired_over_tasks() -> None:
    """Tasks of very different difficulty, an optimizer that reaches the baseline's value on
    every task exactly at the last horizon: every paired resample gives speed-up 1. Resampling
    the baseline's tasks independently would compare easy tasks with hard ones and spread it."""
    reference = [0.1, 1.0, 5.0, 9.0, 2.0, 0.5]
    horizons = [10, 25, 50, 100]
    runs = {h: [r * (1 + (100 - h) / 100) for r in reference] for h in horizons}
    result = bootstrap_speedup(100, horizons, runs, reference, higher_is_better=False, samples=400)
    assert result["speedup"] == pytest.approx(1.0)
    assert result["low"] == pytest.approx(1.0) and result["high"] == pytest.approx(1.0)


def test_nesterov_looks_ahead_and_momentum_does_not() -> None:
    """Two steps on f(x) = x (gradient 1): heavy-ball momentum moves lr·(1 + 1.9), Nesterov
    lr·(1.9 + 2.71): the families named nesterov-* must be the look-ahead rule."""
    import torch

    def moved(name: str) -> float:
        x = torch.zeros(1, requires_grad=True)
        opt = parse_optimizer(name).build([x], 10)
        for _ in range(2):
            opt.zero_grad()
            x.sum().backward()
            opt.step()
        return -float(x.detach())

    assert moved("momentum-const-1e-2") == pytest.approx(1e-2 * (1 + 1.9))
    assert moved("nesterov-const-1e-2") == pytest.approx(1e-2 * (1.9 + 2.71))
