"""NES strategy and the meta-training driver."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from hf_l3rs.meta import NES, MetaTrainConfig, NESParams, centered_rank
from hf_l3rs.optim import ConfigError
from hf_l3rs.optim.hub import load_net

ROOT = Path(__file__).resolve().parents[2]


def test_centered_rank() -> None:
    r = centered_rank(torch.tensor([3.0, -float("inf"), 1.0, 2.0]))
    assert r.tolist() == pytest.approx([0.5, -0.5, -1 / 6, 1 / 6])


def test_centered_rank_of_one_two_and_many_tied() -> None:
    one = centered_rank(torch.tensor([3.0]))
    assert one.dtype == torch.float64 and one.tolist() == [0.0]
    assert centered_rank(torch.tensor([2.0, 1.0])).tolist() == [0.5, -0.5]
    # ties (every candidate of a population diverged) rank by index: deterministic
    tied = centered_rank(torch.full((300,), -float("inf")))
    assert bool((tied[1:] > tied[:-1]).all()) and (float(tied[0]), float(tied[-1])) == (-0.5, 0.5)


def test_noise_differs_by_pair_generation_and_seed() -> None:
    a, b = NES(NESParams(popsize=4, sigma=0.1, seed=0)), NES(NESParams(popsize=4, sigma=0.1, seed=1))
    draws = [a.noise(0, 0, 8), a.noise(0, 1, 8), a.noise(1, 0, 8), b.noise(0, 0, 8)]
    assert all(not torch.equal(x, y) for i, x in enumerate(draws) for y in draws[i + 1 :])


def test_tell_advances_one_generation_and_names_a_wrong_population() -> None:
    nes = NES(NESParams(popsize=4, sigma=0.1, learning_rate=0.05, seed=0))
    state = nes.init(torch.zeros(3))
    after = nes.tell(state, torch.tensor([1.0, 0.0, 0.5, 0.2]))
    assert after.generation == state.generation + 1 and not torch.equal(after.theta, state.theta)
    with pytest.raises(ValueError, match=r"expected 4 fitnesses, got shape \(3,\)"):
        nes.tell(state, torch.tensor([1.0, 0.0, 0.5]))
    with pytest.raises(ValueError, match="NES scales have 2 entries, θ has 3"):
        NES(NESParams(popsize=4, sigma=0.1), scales=torch.ones(2)).ask(state)


def test_ask_is_antithetic_and_reproducible() -> None:
    nes = NES(NESParams(popsize=6, sigma=0.1, seed=3))
    state = nes.init(torch.zeros(5))
    pop = nes.ask(state)
    assert pop.shape == (6, 5)
    assert torch.equal(pop[0], -pop[1])
    assert torch.equal(pop, NES(NESParams(popsize=6, sigma=0.1, seed=3)).ask(state))


def test_ask_tell_converges_on_a_quadratic() -> None:
    target = torch.linspace(-1, 1, 10, dtype=torch.float64)
    nes = NES(NESParams(popsize=16, sigma=0.05, learning_rate=0.05, decay_every=100))
    state = nes.init(torch.zeros(10))
    start = float(((state.theta - target) ** 2).sum())
    for _ in range(300):
        pop = nes.ask(state)
        state = nes.tell(state, -((pop - target) ** 2).sum(dim=1))
    end = float(((state.theta - target) ** 2).sum())
    assert end < 0.01 * start, (start, end)


def test_unit_scales_change_nothing() -> None:
    params = NESParams(popsize=4, sigma=0.1, learning_rate=0.05, seed=1)
    plain, scaled = NES(params), NES(params, scales=torch.ones(6))
    a = b = plain.init(torch.linspace(-1, 1, 6))
    for _ in range(3):
        pop = plain.ask(a)
        assert torch.equal(pop, scaled.ask(b))
        fitness = -(pop**2).sum(dim=1)
        a, b = plain.tell(a, fitness), scaled.tell(b, fitness)
    assert torch.equal(a.theta, b.theta)


def test_scales_multiply_noise_and_step_per_coordinate() -> None:
    params = NESParams(popsize=4, sigma=0.1, learning_rate=0.05, seed=1)
    scales = torch.tensor([1.0, 30.0, 1.0])
    plain, scaled = NES(params), NES(params, scales=scales)
    state = plain.init(torch.zeros(3))
    torch.testing.assert_close(scaled.ask(state), plain.ask(state) * scales)
    fitness = torch.tensor([1.0, 0.0, 3.0, 2.0])
    step_plain = plain.tell(state, fitness).theta - state.theta
    step_scaled = scaled.tell(state, fitness).theta - state.theta
    torch.testing.assert_close(step_scaled, step_plain * scales)


def test_a_scaled_coordinate_reaches_a_far_optimum() -> None:
    """One coordinate's optimum lies 3 away, the others' at 0.1: at a uniform small σ
    and meta-step it is still far after 100 generations; searched at scale 30 it gets there."""
    target = torch.tensor([3.0] + [0.1] * 9, dtype=torch.float64)
    scales = torch.ones(10, dtype=torch.float64)
    scales[0] = 30.0

    def distance(nes: NES) -> float:
        state = nes.init(torch.zeros(10))
        for _ in range(100):
            pop = nes.ask(state)
            state = nes.tell(state, -((pop - target) ** 2).sum(dim=1))
        return abs(float(state.theta[0]) - 3.0)

    params = NESParams(popsize=8, sigma=0.01, learning_rate=0.005)
    assert distance(NES(params)) > 2.0
    assert distance(NES(params, scales=scales)) < 0.3


def test_scales_must_be_positive() -> None:
    with pytest.raises(ValueError, match="scales"):
        NES(NESParams(popsize=2), scales=torch.tensor([1.0, 0.0]))
    with pytest.raises(ConfigError, match="search_scales"):
        MetaTrainConfig(search_scales={"hyper_raw": -1.0})


def test_schedule_halves_every_decay_period() -> None:
    nes = NES(NESParams(popsize=2, sigma=0.02, learning_rate=0.01, decay_every=500))
    lr, sigma = nes.schedule(500)
    assert lr == pytest.approx(0.005) and sigma == pytest.approx(0.01)
    assert nes.schedule(250)[1] == pytest.approx(0.02 * 0.5**0.5)


def test_bad_configs_name_the_field() -> None:
    with pytest.raises(ConfigError, match="popsize"):
        MetaTrainConfig(nes={"popsize": 3}).nes_params()
    with pytest.raises(ConfigError, match="objective"):
        MetaTrainConfig(objective="max_reward")
    with pytest.raises(ConfigError, match=r"l3rs.*unknown base direction"):
        MetaTrainConfig(l3rs={"directions": ["sgd", "nope"]})
    with pytest.raises(ConfigError, match="unknown field"):
        MetaTrainConfig.from_dict({"generation": 3})


def _tiny(**kw) -> MetaTrainConfig:
    base = dict(
        name="tiny",
        family="two_moons_mlp",
        family_kwargs={"k_min": 5, "k_max": 8},
        l3rs={"base_lr": 0.01},
        nes={"popsize": 4, "sigma": 0.05, "learning_rate": 0.05},
        generations=4,
        tasks_per_generation=2,
        val_every=2,
        val_tasks=2,
        checkpoint_every=1,
        trackers=[],
        threads=1,
    )
    base.update(kw)
    return MetaTrainConfig(**base)


def _trainer(config, out):
    from hf_l3rs.meta.trainer import MetaTrainer

    return MetaTrainer(config, out)


def test_resume_after_a_crash_is_bitwise(tmp_path) -> None:
    straight = _trainer(_tiny(), tmp_path / "a")
    straight.run()
    crashed = _trainer(_tiny(), tmp_path / "b")
    crashed.run(stop_after=2)  # "killed" after generation 2, checkpoint on disk
    assert crashed.state.generation == 2
    resumed = _trainer(_tiny(), tmp_path / "b")
    resumed.run(resume=True)
    assert resumed.state.generation == 4
    assert torch.equal(straight.state.theta, resumed.state.theta)
    assert torch.equal(straight.state.adam_v, resumed.state.adam_v)
    assert [h.get("fitness_mean") for h in straight.history] == [h.get("fitness_mean") for h in resumed.history]
    for sub in ("best", "final"):
        assert (tmp_path / "b" / sub / "model.safetensors").is_file()
    assert (tmp_path / "b" / "meta_training_curve.png").stat().st_size > 1000


def test_resume_refuses_a_different_config(tmp_path) -> None:
    _trainer(_tiny(), tmp_path).run(stop_after=1)
    with pytest.raises(ValueError, match="different config"):
        _trainer(_tiny(seed=5), tmp_path).run(resume=True)


class _NaNAboveThreshold:
    """A task whose loss turns NaN once the weights leave a box: big steps "diverge"."""

    name = "nan_box"
    num_steps = 6

    def sample(self, seed, split="train"):
        return self

    def init_model(self):
        torch.manual_seed(0)
        return torch.nn.Linear(4, 1)

    def train_batch(self, step):
        return None

    def loss(self, model, batch):
        value = ((model.weight - 1.0) ** 2).sum()
        return value * float("nan") if model.weight.abs().max() > 0.6 else value

    def evaluate(self, model):
        return float(self.loss(model, None)), None


def test_divergent_candidates_get_worst_fitness_and_are_counted(tmp_path) -> None:
    from hf_l3rs.meta.trainer import MetaTrainer

    config = _tiny(
        l3rs={"base_lr": 0.05},
        nes={"popsize": 8, "sigma": 2.0, "learning_rate": 0.05},
        generations=3,
    )
    trainer = MetaTrainer(config, tmp_path, family=_NaNAboveThreshold())
    trainer.run()
    assert trainer.state.generation == 3
    assert 0 < trainer.diverged_total < 3 * 8 * 2, trainer.diverged_total
    assert torch.isfinite(trainer.state.theta).all()


class _BlowUpAboveThreshold(_NaNAboveThreshold):
    """Like _NaNAboveThreshold, but the loss stays finite: it jumps ×1e6 (ill-conditioned
    regression run by an unstable optimizer ends finite and huge)."""

    def loss(self, model, batch):
        value = ((model.weight - 1.0) ** 2).sum()
        return value * 1e6 if model.weight.abs().max() > 0.6 else value


@pytest.mark.parametrize("factor", [None, 10.0])
def test_blowup_factor_counts_finite_explosions_as_divergence(tmp_path, factor) -> None:
    from hf_l3rs.meta.trainer import MetaTrainer

    config = _tiny(
        l3rs={"base_lr": 0.05},
        nes={"popsize": 8, "sigma": 2.0, "learning_rate": 0.05},
        generations=3,
        blowup_factor=factor,
    )
    trainer = MetaTrainer(config, tmp_path, family=_BlowUpAboveThreshold())
    trainer.run()
    if factor is None:
        assert trainer.diverged_total == 0
    else:
        assert 0 < trainer.diverged_total < 3 * 8 * 2, trainer.diverged_total
    # validation reports the raw losses either way (no NaN: nothing is non-finite)
    assert all(h["val_diverged"] == 0 for h in trainer.history if "val_diverged" in h)


def test_blowup_factor_must_exceed_one() -> None:
    with pytest.raises(ConfigError, match="blowup_factor"):
        _tiny(blowup_factor=1.0)


def test_search_scales_name_meta_network_parameters(tmp_path) -> None:
    from hf_l3rs.meta.trainer import MetaTrainer

    with pytest.raises(ConfigError, match=r"search_scales.*no parameter 'hyper'.*hyper_raw"):
        MetaTrainer(_tiny(search_scales={"hyper": 30.0}), tmp_path)
    trainer = MetaTrainer(_tiny(search_scales={"hyper_raw": 30.0}), tmp_path)
    scales = trainer.strategy.scales
    mask = trainer.net.flat_mask("hyper_raw")
    assert int(mask.sum()) == len(trainer.net.hyper_names) == 3  # adam β1, β2, ε
    assert bool((scales[mask] == 30.0).all()) and bool((scales[~mask] == 1.0).all())


def test_search_scales_select_part_of_a_parameter_by_index(tmp_path) -> None:
    """``name[i, :, j]`` scales only those coordinates (the rate logit's row of the output
    layer, not the mixing rows); a later entry overrides an earlier one."""
    from hf_l3rs.meta.trainer import MetaTrainer

    trainer = MetaTrainer(_tiny(search_scales={"weights.2": 3.0, "weights.2[:, 0, 0]": 30.0}), tmp_path)
    net, scales = trainer.net, trainer.strategy.scales
    mask = net.flat_mask("weights.2[:, 0, 0]")
    assert int(mask.sum()) == net.weights[2].shape[0]
    with torch.no_grad():  # the mask's positions are those of weights.2[:, 0, 0] in θ
        theta = net.get_flat()
        theta[mask] = 123.0
        net.set_flat(theta)
        assert bool((net.weights[2][:, 0, 0] == 123.0).all())
        assert int((net.weights[2] == 123.0).sum()) == int(mask.sum())
    whole = net.flat_mask("weights.2")
    assert bool((scales[mask] == 30.0).all()) and bool((scales[whole & ~mask] == 3.0).all())
    assert bool((scales[~whole] == 1.0).all())
    for bad in ("weights.2[0, 0, 0, 0, 0]", "weights.2[x]", "weights.2[0", "weights.2[:, 99]"):
        with pytest.raises(ConfigError, match="search_scales"):
            MetaTrainer(_tiny(search_scales={bad: 2.0}), tmp_path)


def test_exported_weights_load(tmp_path) -> None:
    from hf_l3rs import L3RS
    from hf_l3rs.tasks import classic_family

    trainer = _trainer(_tiny(generations=2), tmp_path)
    trainer.run()
    model = classic_family("two_moons_mlp").sample(0, "test").init_model()
    opt = L3RS.from_pretrained(str(tmp_path / "final"), model, total_steps=5)
    assert torch.equal(opt.net.get_flat(), trainer.state.theta.to(torch.float32).to(torch.float64))
    card = (tmp_path / "final" / "README.md").read_text()
    assert "NES, 2 generations" in card
    # every record (the first validation and each generation) carries its cost; the card sums them
    assert all(h["process_seconds"] > 0 for h in trainer.history) and len(trainer.history) == 3
    assert "CPU-hours recorded over 3 generations" in card


def test_cost_line_sums_process_seconds_and_names_generations_without_a_record() -> None:
    from hf_l3rs.meta.trainer import cost_line

    history = [{"generation": 0}, {"generation": 1, "process_seconds": 5400.0}, {"process_seconds": 1800.0}]
    assert cost_line(history) == "2.00 CPU-hours recorded over 2 generations (1 earlier generations without a record)"
    assert cost_line(history[1:]) == "2.00 CPU-hours recorded over 2 generations"


def _launch(nproc: int, config: Path, out: Path, resume: bool = False) -> None:
    from hf_l3rs.launch import launch_command

    args = ["--config", str(config), "--output", str(out), "--no-trackers"] + (["--resume"] if resume else [])
    cmd, env = launch_command(str(ROOT / "examples" / "metatrain.py"), nproc, args)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_processes_match_one_process(tmp_path) -> None:
    import yaml

    cfg = _tiny(generations=3, checkpoint_every=3).to_dict()
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    _launch(1, path, tmp_path / "one")
    _launch(2, path, tmp_path / "two")
    from safetensors.torch import load_file

    one = load_file(str(tmp_path / "one" / "checkpoint" / "state.safetensors"))
    two = load_file(str(tmp_path / "two" / "checkpoint" / "state.safetensors"))
    assert torch.equal(one["theta"], two["theta"])
    assert not torch.equal(one["theta"], one["theta0"])
    meta = json.loads((tmp_path / "two" / "checkpoint" / "trainer.json").read_text())
    assert meta["generation"] == 3


def test_expect_processes_guard(tmp_path) -> None:
    from hf_l3rs.meta.trainer import ProcessCountError

    with pytest.raises(ProcessCountError, match="starts ONE process"):
        _trainer(_tiny(expect_processes=2), tmp_path)


def two_machine_commands(config: Path, out: Path, port: str) -> list[list[str]]:
    """The launches of machine 1 and machine 0 (in that order) of the shipped two-machine
    Accelerate config, both on this host, one meta-training process each."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    launcher += [str(ROOT / "examples" / "accelerate" / "two-machines.yaml"), "--num_processes", "2"]
    script = [str(ROOT / "examples" / "metatrain.py"), "--config", str(config), "--output", str(out)]
    script += ["--no-trackers", "--threads", "1"]
    network = ["--main_process_ip", "127.0.0.1", "--main_process_port", port]
    return [[*launcher, "--machine_rank", str(rank), *network, *script] for rank in (1, 0)]


def test_two_machines_on_one_host_match_one_machine(tmp_path) -> None:
    """The shipped two-machine Accelerate config, both "machines" on this host (one process
    each): the same θ as a single process, bit for bit."""
    import socket

    import yaml

    from hf_l3rs.launch import launch_command

    cfg = _tiny(generations=3, checkpoint_every=3).to_dict()
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    _launch(1, path, tmp_path / "one")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    _, env = launch_command(str(ROOT / "examples" / "metatrain.py"), 2, [])
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for cmd in two_machine_commands(path, tmp_path / "two", port)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
    from safetensors.torch import load_file

    one = load_file(str(tmp_path / "one" / "checkpoint" / "state.safetensors"))
    two = load_file(str(tmp_path / "two" / "checkpoint" / "state.safetensors"))
    assert torch.equal(one["theta"], two["theta"]) and not torch.equal(one["theta"], one["theta0"])


def test_a_task_mixture_draws_members_by_weight_reproducibly() -> None:
    from hf_l3rs.tasks.registry import get_family

    members = [{"family": "two_moons_mlp", "weight": 3}, {"family": "linear_regression", "weight": 1}]
    mix = get_family("mixture", members=members)
    picks = [mix.member_index(s, "train") for s in range(400)]
    assert picks == [get_family("mixture", members=members).member_index(s, "train") for s in range(400)]
    assert 0.65 < picks.count(0) / 400 < 0.85  # weight 3 of 4
    task = mix.sample(5, "val")
    expected = mix.members[mix.member_index(5, "val")][0].sample(5, "val")
    assert type(task) is type(expected) and task.num_steps == expected.num_steps
    # The network's shape comes from the first member's model, whichever member seed 0 draws.
    skewed = get_family(
        "mixture",
        members=[
            {"family": "two_moons_mlp", "weight": 1, "rate_jitter": 2},
            {"family": "linear_regression", "weight": 1e6},
        ],
    )
    assert skewed.member_index(0, "train") == 1
    first = skewed.members[0][0].family.sample(0, "train")

    def shapes(t):
        return [tuple(p.shape) for p in t.init_model().parameters()]

    assert shapes(skewed.template_task()) == shapes(first) != shapes(skewed.sample(0, "train"))
    with pytest.raises(ValueError, match="distinct names"):
        get_family("mixture", members=[{"family": "two_moons_mlp"}, {"family": "two_moons_mlp"}])
    with pytest.raises(ValueError, match="weight"):
        get_family("mixture", members=[{"family": "two_moons_mlp", "weight": 0}])
    with pytest.raises(ValueError, match="members"):
        get_family("mixture", tasks=[])


def test_init_from_starts_the_search_at_given_meta_weights(tmp_path) -> None:
    first = _trainer(_tiny(generations=2), tmp_path / "a")
    first.run()
    config = _tiny(generations=1, l3rs={}, init_from=str(tmp_path / "a" / "final"))
    second = _trainer(config, tmp_path / "b")
    assert torch.equal(second.theta0, first.state.theta.to(torch.float32).to(torch.float64))
    assert second.net.config == first.net.config
    second.run()
    # the card says where the search started, not "untrained"
    assert "validation fitness: start (`" in (tmp_path / "b" / "best" / "README.md").read_text()
    assert "validation fitness: untrained" in (tmp_path / "a" / "best" / "README.md").read_text()
    # an l3rs block beside init_from overrides what keeps the network's shape, nothing else
    switched = _trainer(
        _tiny(
            generations=1,
            l3rs={"hypergradient_rate": 0.3},
            init_from=str(tmp_path / "a" / "final"),
        ),
        tmp_path / "c",
    )
    assert torch.equal(switched.theta0, second.theta0)
    assert switched.net.config == first.net.config.replace(hypergradient_rate=0.3)
    with pytest.raises(ConfigError, match="hidden_sizes"):
        _tiny(l3rs={"hidden_sizes": [4]}, init_from=str(tmp_path / "a" / "final"))
    # a direction may be replaced by one that extends it (adam -> shampoo): same θ, new rule
    whitened = _trainer(
        _tiny(generations=1, l3rs={"directions": ["sgd", "shampoo"]}, init_from=str(tmp_path / "a" / "final")),
        tmp_path / "d",
    )
    assert whitened.net.config.directions == ("sgd", "shampoo")
    start = load_net(str(tmp_path / "a" / "final"))
    same = {k: v for k, v in start.state_dict().items() if k != "hyper_raw"}
    assert all(torch.equal(v, whitened.net.state_dict()[k]) for k, v in same.items())  # all but the hypers
    assert len(whitened.theta0) == len(second.theta0) + 1  # shampoo's damping
    whitened.run()
    with pytest.raises(ConfigError, match="cannot replace"):
        _trainer(
            _tiny(generations=1, l3rs={"directions": ["shampoo", "adam"]}, init_from=str(tmp_path / "a" / "final")),
            tmp_path / "e",
        )


def test_augmentations_hide_a_seeded_rate_multiplier_and_horizon() -> None:
    """tasks/augment.py: the same task seed gives the same multiplier (every process and
    candidate agree), multipliers cover [1/f, f] log-uniformly, and run_task hands the
    multiplier to the optimizer as its groups' lr; the horizon-free share gets no steps."""
    from hf_l3rs.tasks.inner_loop import run_task
    from hf_l3rs.tasks.registry import get_family

    jittered = get_family("two_moons_mlp", k_min=5, k_max=8, rate_jitter=10, horizon_free=0.25)
    scales = [jittered.sample(s, "train").lr_scale for s in range(300)]
    assert scales[:20] == [jittered.sample(s, "train").lr_scale for s in range(20)]
    logs = torch.tensor(scales).log10()
    assert logs.min() >= -1 and logs.max() <= 1
    assert (logs < -0.5).float().mean() > 0.15 and (logs > 0.5).float().mean() > 0.15
    assert abs(float(logs.mean())) < 0.1
    hidden = [jittered.sample(s, "train").hide_horizon for s in range(300)]
    assert 0.15 < sum(hidden) / 300 < 0.35
    seen = []

    def make(model, steps):
        opt = torch.optim.SGD(model.parameters(), lr=2.0)
        seen.append((opt, steps))
        return opt

    for seed in (hidden.index(True), hidden.index(False)):
        task = jittered.sample(seed, "train")
        run_task(task, make, num_steps=1)
        opt, steps = seen[-1]
        assert opt.param_groups[0]["lr"] == pytest.approx(2.0 * task.lr_scale)
        assert steps == (None if task.hide_horizon else 1)
    with pytest.raises(ValueError, match="rate_jitter"):
        get_family("two_moons_mlp", rate_jitter=0.5)
    with pytest.raises(ValueError, match="horizon_free"):
        get_family("two_moons_mlp", horizon_free=1.5)


def test_meta_curve_keeps_a_blown_up_generation_off_the_axis(tmp_path) -> None:
    """One generation whose population mean is −280,000 (a candidate blew up on one task)
    must not flatten the curve: the axis spans the validation curve and the other means."""
    from hf_l3rs.meta.curves import fitness_limits, plot_meta_curve

    population = [-2.0 + 0.01 * g for g in range(40)]
    population[30] = -2.8e5
    validation = [-1.98, -1.83, -1.77]
    low, high = fitness_limits(population, validation)
    assert -3.0 < low < -2.0 and -1.0 > high > -1.77
    assert fitness_limits([-2.0, -1.9, -1.8], validation) is None  # nothing to cut off
    history = [{"generation": g, "fitness_mean": f} for g, f in enumerate(population)]
    history += [{"generation": 20 * i, "val_fitness": v} for i, v in enumerate(validation)]
    assert plot_meta_curve(history, tmp_path / "curve.png").stat().st_size > 0


def test_a_folder_holding_another_run_is_never_overwritten(tmp_path) -> None:
    from hf_l3rs.meta.trainer import RunFolderError

    _trainer(_tiny(), tmp_path).run(stop_after=1)
    theta = load_file_theta(tmp_path)
    with pytest.raises(RunFolderError, match=r"holds another run.*--resume continues it, --overwrite replaces it"):
        _trainer(_tiny(), tmp_path).run()
    assert torch.equal(load_file_theta(tmp_path), theta)  # untouched
    fresh = _trainer(_tiny(), tmp_path)
    fresh.run(overwrite=True)  # asked for: replaced
    assert fresh.state.generation == _tiny().generations


def test_resume_with_nothing_to_resume_says_so(tmp_path) -> None:
    from hf_l3rs.meta.trainer import RunFolderError

    with pytest.raises(RunFolderError, match="no checkpoint to resume"):
        _trainer(_tiny(), tmp_path / "empty").run(resume=True)


def load_file_theta(folder):
    from safetensors.torch import load_file

    return next(iter(load_file(str(folder / "checkpoint" / "state.safetensors")).values()))


# ---- the meta-trainer's bookkeeping, with each run scored by a formula instead of training
@dataclass
class _Scored:
    """A task that is only its identity (seed, split); ``init_model`` gives the component layout."""

    seed: int
    split: str
    num_steps: int = 1

    def init_model(self):
        torch.manual_seed(0)
        return torch.nn.Linear(4, 1)


class _Recorded:
    """A family that records how the meta-trainer draws its tasks."""

    name = "recorded"

    def __init__(self) -> None:
        self.drawn: list[tuple[int, str]] = []

    def sample(self, seed, split="train"):
        self.drawn.append((seed, split))
        return _Scored(seed, split)


def _scored_by(monkeypatch, trainer, score) -> None:
    """Replace each inner run by ``score(θ, task)`` (higher is better): what the meta-trainer
    does with the scores is then all that is tested."""
    from hf_l3rs.meta import trainer as module
    from hf_l3rs.tasks.inner_loop import TaskResult

    def run(task, factory):
        value = score(trainer.net.get_flat().detach().clone(), task)
        return TaskResult(train_losses=[-value], eval_loss=-value, eval_accuracy=None, diverged=False)

    monkeypatch.setattr(module, "run_task", run)


def test_each_candidate_is_scored_on_its_own_runs(tmp_path, monkeypatch) -> None:
    """Fitness rises with θ[0]; tasks differ by offsets far larger than any two candidates'
    difference. Ranked within each task, the search climbs θ[0] every generation; a grid
    that mixed up candidates and tasks would rank the offsets instead and wander."""
    from hf_l3rs.meta.trainer import MetaTrainer

    config = _tiny(nes={"popsize": 8, "sigma": 0.05, "learning_rate": 0.05}, tasks_per_generation=3, val_every=100)
    trainer = MetaTrainer(config, tmp_path, family=_Recorded())
    start = trainer.state.theta.clone()
    _scored_by(monkeypatch, trainer, lambda theta, task: float(theta[0]) + 1000.0 * (task.seed % 3))
    trainer.run()
    moved = trainer.state.theta - start
    assert float(moved[0]) > 0.6 * config.generations * 0.05, float(moved[0])


def test_validation_draws_fixed_val_tasks_and_training_new_tasks_each_generation(tmp_path, monkeypatch) -> None:
    from hf_l3rs.meta.trainer import MetaTrainer

    family = _Recorded()
    trainer = MetaTrainer(_tiny(generations=3, val_every=1), tmp_path, family=family)
    before = len(family.drawn)  # the template task that lays out the components
    _scored_by(monkeypatch, trainer, lambda theta, task: -float(theta.norm()))
    trainer.run()
    drawn = family.drawn[before:]
    train = [seed for seed, split in drawn if split == "train"]
    val = [(seed, split) for seed, split in drawn if split != "train"]
    assert val and {split for _, split in val} == {"val"}
    assert len({seed for seed, _ in val}) == trainer.config.val_tasks  # the same tasks at every validation
    m = trainer.config.tasks_per_generation
    generations = [tuple(train[i : i + m]) for i in range(0, len(train), m)]
    assert len(generations) == 3 and len(set(generations)) == 3  # new training tasks every generation


def test_resume_keeps_the_best_validation_score_and_weights(tmp_path, monkeypatch) -> None:
    """Validation gets worse the further θ moves: the best θ is the start. A resumed run
    must still know that, and keep the start in ``best/``, as the run that never stopped does."""
    from hf_l3rs.meta.trainer import MetaTrainer

    def run(folder, **kw):
        trainer = MetaTrainer(_tiny(val_every=2), folder, family=_Recorded())
        start = MetaTrainer(_tiny(val_every=2), tmp_path / "probe", family=_Recorded()).state.theta.clone()
        _scored_by(
            monkeypatch,
            trainer,
            lambda theta, task: -float((theta - start).norm()) if task.split == "val" else float(theta[0]),
        )
        trainer.run(**kw)
        return trainer

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop_after=2)
    resumed = run(tmp_path / "b", resume=True)
    assert resumed.state.generation == straight.state.generation == 4
    assert resumed.best_val == straight.best_val
    from safetensors.torch import load_file

    best = [load_file(tmp_path / f / "best" / "model.safetensors") for f in ("a", "b")]
    assert best[0].keys() == best[1].keys() and all(torch.equal(best[0][k], best[1][k]) for k in best[0])
