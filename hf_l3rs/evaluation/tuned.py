"""The tuned benchmark: L3RS against the best hand-designed optimizer a user could tune.

Protocol (docs/design.md, "Tuned benchmark"):

1. Every baseline *family* (``adam-cos``, ``nesterov-const``, ...; ``hf_l3rs.registry``) is
   swept over a half-decade learning-rate grid on **validation** tasks (meta-train classes,
   their own seeds). The rate is chosen per family, per horizon and per metric (lowest mean
   loss; highest mean accuracy, ties to the lower loss). A choice on the edge of the grid
   extends the grid by one half-decade on that side and is re-run, until it is interior or
   ``max_extensions`` is used up; the report flags every choice still on an edge.
2. On **test** tasks (meta-test classes, disjoint from the validation classes), each family
   runs at its chosen rates, and every L3RS entry runs at every horizon (``l3rs_probes``
   entries train only the head, on the frozen body's features, as the head-only families do).
3. Per horizon and metric, the best tuned baseline is the family with the best test mean
   (the most demanding choice for L3RS). L3RS is compared to it task by task (paired
   difference, standard error, wins) and by the steps-to-target speedup F (log-interpolated
   over L3RS's horizons) with a 68 % paired bootstrap interval over test tasks.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from hf_l3rs.evaluation.optimizers import L3RSEntry
from hf_l3rs.evaluation.protocol import EVALUATIONS, EvalConfig, Protocol
from hf_l3rs.evaluation.stats import HIGHER_IS_BETTER, bootstrap_speedup, mean_se, mean_with_divergence, paired
from hf_l3rs.optim.config import ConfigError, reject_unknown_fields
from hf_l3rs.registry import TUNED_FAMILIES, parse_family

METRICS = ("loss", "accuracy")

#: kind -> (lowest, highest) exponent of the initial grid, 10^low … 10^high
DEFAULT_GRIDS: dict[str, tuple[float, float]] = {
    "adam": (-4.0, -2.0),
    "adamw": (-4.0, -2.0),
    "rmsprop": (-4.0, -2.0),
    "sgd": (-3.0, -1.0),
    "momentum": (-3.0, -1.0),
    "nesterov": (-3.0, -1.0),
    "shampoo": (-2.0, 0.0),  # whitened directions: ~unit size per whitened input (measured: best 0.2 on A)
    "foof": (-0.5, 1.0),  # 1 = a full input-whitened step on a linear model (measured: best 2-3 on A's probe)
}


@dataclass
class TunedConfig:
    """What the tuned benchmark runs. ``l3rs``: label → meta-weights folder/repo (``None``:
    the untrained L3RS); the first entry is the one the speedups are reported for.
    ``l3rs_probes``: the same, run as linear probes (the body frozen in inference mode, its
    features computed once, the head stepped by L3RS over the whole model so that depth and
    roles are the model's): the no-learning-rate answer to the head-only families."""

    domains: dict[str, str] = field(default_factory=lambda: {"D1": "kanji", "D2": "clipart"})
    checkpoints: dict[str, str] = field(default_factory=dict)
    task_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    model: str = "l3rs_resnet_tiny"
    evaluations: list[str] = field(default_factory=lambda: ["A"])
    horizons: list[int] = field(default_factory=lambda: [10, 25, 50, 100, 200])
    families: list[str] = field(default_factory=lambda: list(TUNED_FAMILIES))
    #: family or kind -> [lowest, highest] exponent of its initial grid (default DEFAULT_GRIDS)
    grids: dict[str, list[float]] = field(default_factory=dict)
    per_decade: int = 2
    max_extensions: int = 4
    val_tasks: int = 8
    test_tasks: int = 20
    l3rs: dict[str, str | None] = field(default_factory=lambda: {"L3RS": "l3rs-general"})
    l3rs_probes: dict[str, str | None] = field(default_factory=dict)
    bootstrap_samples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        for e in self.evaluations:
            if e not in EVALUATIONS:
                raise ConfigError(f"TunedConfig.evaluations: unknown {e!r}; known: {sorted(EVALUATIONS)}")
        if len(self.horizons) < 2 or any(int(h) < 1 for h in self.horizons):
            raise ConfigError("TunedConfig.horizons needs at least two positive step counts (speedups interpolate)")
        self.horizons = sorted({int(h) for h in self.horizons})
        for name in self.families:
            try:
                parse_family(name)
            except ValueError as exc:
                raise ConfigError(f"TunedConfig.families: {exc}") from exc
        if not self.families:
            raise ConfigError("TunedConfig.families must name at least one baseline family")
        for key, span in self.grids.items():
            if not (isinstance(span, (list, tuple)) and len(span) == 2 and span[0] < span[1]):
                raise ConfigError(f"TunedConfig.grids[{key!r}] must be [low_exponent, high_exponent], low < high")
        if self.per_decade < 1 or self.max_extensions < 0:
            raise ConfigError("TunedConfig.per_decade must be >= 1 and max_extensions >= 0")
        if self.val_tasks < 1 or self.test_tasks < 2:
            raise ConfigError("TunedConfig needs val_tasks >= 1 and test_tasks >= 2 (paired standard errors)")
        if not self.l3rs:
            raise ConfigError("TunedConfig.l3rs must name at least one L3RS entry")
        clash = sorted(set(self.l3rs) & set(self.l3rs_probes))
        if clash:
            raise ConfigError(f"TunedConfig: {clash} label both an l3rs and an l3rs_probes entry; labels must differ")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TunedConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"benchmark config {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        data.update({k: v for k, v in overrides.items() if v is not None})
        reject_unknown_fields(cls, data, str(path))
        return cls(**data)

    def with_task_option(self, key: str, value: Any) -> TunedConfig:
        """The same benchmark with ``key: value`` in the task spec of every dataset it uses
        (e.g. ``eval_batchnorm``); a changed spec never reuses older baselines."""
        datasets = dict.fromkeys([*self.domains.values(), *self.task_specs])
        specs = {d: {**self.task_specs.get(d, {}), key: value} for d in datasets}
        return dataclasses.replace(self, task_specs=specs)

    def exponent_grid(self, family: str) -> list[int]:
        """The initial grid as integer exponents k (rate 10^(k / per_decade))."""
        kind = parse_family(family).kind
        low, high = self.grids.get(family, self.grids.get(kind, DEFAULT_GRIDS[kind]))
        return list(range(round(low * self.per_decade), round(high * self.per_decade) + 1))

    def rate(self, k: int) -> float:
        return 10 ** (k / self.per_decade)


def choose(scores: dict[int, dict[str, float]], metric: str) -> tuple[int, str | None]:
    """The best exponent of a grid for ``metric`` from ``{k: {"loss": mean, "accuracy":
    mean}}``, and ``"low"``/``"high"`` when it is the grid's smallest/largest rate (else None).
    Loss: lowest mean. Accuracy: highest mean, ties broken by the lower mean loss. Diverged
    rates (non-finite loss) are never chosen while another rate is finite."""
    ks = sorted(scores)

    def key(k: int) -> tuple:
        s = scores[k]
        loss = s["loss"] if math.isfinite(s["loss"]) else math.inf
        if metric == "loss":
            return (loss, k)
        acc = s["accuracy"] if math.isfinite(s["accuracy"]) else -math.inf
        return (-acc if math.isfinite(loss) else math.inf, loss, k)

    best = min(ks, key=key)
    edge = "low" if best == ks[0] else "high" if best == ks[-1] else None
    return best, edge


class TunedBenchmark:
    """Runs the protocol above over an evaluation's tasks; the heavy lifting (tasks, runs,
    head-only probes, sharding over processes) is ``Protocol``'s."""

    def __init__(self, config: TunedConfig, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.families = {name: parse_family(name) for name in config.families}
        base = EvalConfig(
            domains=config.domains,
            checkpoints=config.checkpoints,
            task_specs=config.task_specs,
            model=config.model,
            horizons=config.horizons,
            optimizers=[],
            evaluations=config.evaluations,
            seed=config.seed,
        )
        self.protocol = Protocol(base, progress=False)
        self.entries: dict[str, L3RSEntry] = {}
        #: label -> what the entry's runs depend on (--reuse-baselines keeps an entry's test runs
        #: when it is unchanged; a path's files can change between runs, so not the source)
        self.fingerprints: dict[str, str] = {}
        from hf_l3rs.optim.hub import load_net

        for probe, sources in ((False, config.l3rs), (True, config.l3rs_probes)):
            for label, source in sources.items():
                net = None if source is None else load_net(source)
                self.entries[label] = L3RSEntry(label, untrained=net is None, head_only=probe, net=net)
                fingerprint = "untrained" if net is None else net_fingerprint(net)
                self.fingerprints[label] = f"probe:{fingerprint}" if probe else fingerprint

    # ------------------------------------------------------------- running
    def _runs(self, items: list[tuple], accelerator: Any, desc: str) -> torch.Tensor:
        """Rows [loss at each horizon..., accuracy at each horizon...] for items
        (evaluation, split, task index, spec or L3RS label, horizons)."""
        from tqdm.auto import tqdm

        from hf_l3rs.parallel import shard_map

        horizons = self.config.horizons
        main = accelerator is None or accelerator.is_main_process
        bar = tqdm(total=len(items), desc=desc, disable=not (self.progress and main), dynamic_ncols=True)
        tasks: dict[tuple, Any] = {}

        def one(item: tuple) -> torch.Tensor:
            ev, split, i, what, hs = item
            if (ev, split, i) not in tasks:
                init, domain = EVALUATIONS[ev]
                seed = self.config.seed + i
                tasks[(ev, split, i)] = self.protocol.family(init, domain).sample(seed, split)
            task = tasks[(ev, split, i)]
            res = self.protocol.run_optimizer(self._spec(what), task, list(hs))
            # A diverged run: infinite loss, zero accuracy. A horizon not run: NaN.
            row = [(_loss(res[h][0]) if h in res else math.nan) for h in horizons]
            row += [(_accuracy(res[h][1]) if h in res else math.nan) for h in horizons]
            return torch.tensor(row, dtype=torch.float64)

        costs = [self._cost(item) for item in items]
        table = shard_map(
            one,
            items,
            2 * len(horizons),
            accelerator,
            costs=costs,
            on_done=lambda finished: bar.update(finished - bar.n),
        )
        bar.close()
        return table

    def _spec(self, what: Any) -> Any:
        """An item's optimizer: a registry spec, or an L3RS entry (items carry its label)."""
        return self.entries[what] if isinstance(what, str) else what

    def _cost(self, item: tuple) -> float:
        return self.protocol.cost(self._spec(item[3]), list(item[4]))

    def tune(self, ev: str, accelerator: Any = None, families: list[str] | None = None) -> dict[str, Any]:
        """Validation sweeps with edge extension → per family (all, or ``families``): every
        rate's validation means, and the chosen rate per metric and horizon (with its edge flag)."""
        cfg, horizons, nh = self.config, self.config.horizons, len(self.config.horizons)
        names = list(self.families) if families is None else families
        grids = {f: cfg.exponent_grid(f) for f in names}
        # family -> k -> per-horizon mean loss / accuracy over validation tasks
        means: dict[str, dict[int, dict[str, list[float]]]] = {f: {} for f in names}
        extensions = 0
        while True:
            todo = [(f, k) for f in names for k in grids[f] if k not in means[f]]
            items = [
                (ev, "val", i, self.families[f].with_lr(cfg.rate(k)), tuple(horizons))
                for f, k in todo
                for i in range(cfg.val_tasks)
            ]
            table = self._runs(items, accelerator, f"{ev}: tuning {len(todo)} rates")
            for j, (f, k) in enumerate(todo):
                rows = table[j * cfg.val_tasks : (j + 1) * cfg.val_tasks]
                means[f][k] = {
                    "loss": [mean_with_divergence(rows[:, h].tolist()) for h in range(nh)],
                    "accuracy": [mean_with_divergence(rows[:, nh + h].tolist()) for h in range(nh)],
                }
            grew = False
            for f in names:
                add = set()
                for metric in METRICS:
                    for hi in range(nh):
                        _, edge = choose(_at_horizon(means[f], grids[f], hi), metric)
                        if edge is not None and extensions < cfg.max_extensions:
                            add.add(min(grids[f]) - 1 if edge == "low" else max(grids[f]) + 1)
                if add:
                    grids[f] = sorted({*grids[f], *add})
                    grew = True
            if not grew:
                break
            extensions += 1
        out: dict[str, Any] = {}
        for f in names:
            chosen: dict[str, dict[str, Any]] = {m: {} for m in METRICS}
            for metric in METRICS:
                for hi, h in enumerate(horizons):
                    best, edge = choose(_at_horizon(means[f], grids[f], hi), metric)
                    chosen[metric][str(h)] = {"lr": cfg.rate(best), "exponent": best, "edge": edge}
            out[f] = {
                "rates": [cfg.rate(k) for k in grids[f]],
                "validation": {f"{cfg.rate(k):.3g}": means[f][k] for k in grids[f]},
                "chosen": chosen,
            }
        return out

    def test(
        self, ev: str, tuning: dict[str, Any], accelerator: Any = None, baselines: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Test-task runs of every family at its chosen rates and of every L3RS entry;
        ``baselines`` (part of an earlier ``test``: families, and L3RS entries by label) skips
        their runs."""
        cfg, horizons, nh = self.config, self.config.horizons, len(self.config.horizons)
        # (family, exponent) -> the horizons at which that rate was chosen for some metric
        wanted: dict[tuple[str, int], set[int]] = {}
        for f, t in tuning.items():
            for metric in METRICS:
                for h, c in t["chosen"][metric].items():
                    wanted.setdefault((f, c["exponent"]), set()).add(int(h))
        reused = baselines or {}
        keys = sorted(key for key in wanted if key[0] not in reused)
        items: list[tuple] = []
        for f, k in keys:
            spec = self.families[f].with_lr(cfg.rate(k))
            hs = tuple(sorted(wanted[(f, k)])) if spec.per_horizon else tuple(horizons)
            items += [(ev, "test", i, spec, hs) for i in range(cfg.test_tasks)]
        entries = [label for label in self.entries if label not in reused]
        for label in entries:
            items += [(ev, "test", i, label, tuple(horizons)) for i in range(cfg.test_tasks)]
        table = self._runs(items, accelerator, f"{ev}: testing")
        n = cfg.test_tasks
        by_run = {key: table[j * n : (j + 1) * n] for j, key in enumerate(keys)}
        out: dict[str, Any] = dict(reused)
        for f, t in ((f, t) for f, t in tuning.items() if f not in reused):
            out[f] = {m: {} for m in METRICS}
            for metric in METRICS:
                col0 = 0 if metric == "loss" else nh
                for hi, h in enumerate(horizons):
                    c = t["chosen"][metric][str(h)]
                    values = by_run[(f, c["exponent"])][:, col0 + hi].tolist()
                    out[f][metric][str(h)] = {"lr": c["lr"], "edge": c["edge"], "values": values}
        offset = len(keys) * n
        for j, label in enumerate(entries):
            rows = table[offset + j * n : offset + (j + 1) * n]
            out[label] = {
                metric: {
                    str(h): {"values": rows[:, (0 if metric == "loss" else nh) + hi].tolist()}
                    for hi, h in enumerate(horizons)
                }
                for metric in METRICS
            }
        return out

    def run(self, accelerator: Any = None, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """Tune, test and analyse every evaluation. ``previous``: the results of an earlier
        run (``tuned.json``); where its configuration matches but for the L3RS entries and the
        list of families, the families it has (tuning and test runs) are reused, and so are the
        test runs of L3RS entries with the same label and the same meta-weights (fingerprint);
        only new families and new or changed entries run."""
        start = time.perf_counter()
        results: dict[str, Any] = {"config": dataclasses.asdict(self.config), "evaluations": {}}
        results["l3rs_fingerprints"] = dict(self.fingerprints)
        reusable = previous is not None and _baseline_config(previous["config"]) == _baseline_config(results["config"])
        old_prints = (previous or {}).get("l3rs_fingerprints", {})
        same_entries = [label for label, fp in self.fingerprints.items() if reusable and old_prints.get(label) == fp]
        for ev in self.config.evaluations:
            if reusable and ev in previous["evaluations"]:
                old = previous["evaluations"][ev]
                kept = [f for f in self.families if f in old["tuning"]]
                new = [f for f in self.families if f not in old["tuning"]]
                fresh = self.tune(ev, accelerator, families=new) if new else {}
                tuning = {f: old["tuning"][f] if f in old["tuning"] else fresh[f] for f in self.families}
                entries = [label for label in same_entries if label in old["test"]]
                baselines = {f: _restore_infinities(old["test"][f]) for f in kept + entries}
                test = self.test(ev, tuning, accelerator, baselines=baselines)
                results.setdefault("reused_baselines", {})[ev] = kept
                results.setdefault("reused_l3rs", {})[ev] = entries
            else:
                tuning = self.tune(ev, accelerator)
                test = self.test(ev, tuning, accelerator)
            results["evaluations"][ev] = analyse(tuning, test, self.config, list(self.entries))
        results["wall_seconds"] = round(time.perf_counter() - start, 1)
        results["processes"] = accelerator.num_processes if accelerator is not None else 1
        return results


def analyse(tuning: dict[str, Any], test: dict[str, Any], config: TunedConfig, l3rs: list[str]) -> dict[str, Any]:
    """Summaries, the best tuned baseline per metric and horizon, paired differences and
    speedups of every L3RS entry against it."""
    horizons = config.horizons
    summary: dict[str, Any] = {}
    for label, metrics in test.items():
        summary[label] = {}
        for metric, per_h in metrics.items():
            summary[label][metric] = {}
            for h, cell in per_h.items():
                mean, se = mean_with_divergence(cell["values"]), mean_se(cell["values"])[1]
                summary[label][metric][h] = {
                    "mean": mean,
                    "se": se,
                    **{k: cell[k] for k in ("lr", "edge") if k in cell},
                }
    best: dict[str, dict[str, Any]] = {m: {} for m in METRICS}
    for metric in METRICS:
        sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
        for h in map(str, horizons):
            family = max(
                tuning,
                key=lambda f: sign * _finite_or(summary[f][metric][h]["mean"], -sign * math.inf),
            )
            best[metric][h] = {"family": family, **summary[family][metric][h]}
    comparisons: dict[str, Any] = {}
    for label in l3rs:
        comparisons[label] = {m: {} for m in METRICS}
        for metric in METRICS:
            hib = HIGHER_IS_BETTER[metric]
            runs = {h: test[label][metric][str(h)]["values"] for h in horizons}
            for h in horizons:
                ref = test[best[metric][str(h)]["family"]][metric][str(h)]["values"]
                comparisons[label][metric][str(h)] = {
                    "paired": paired(runs[h], ref, hib),
                    **bootstrap_speedup(h, horizons, runs, ref, hib, config.bootstrap_samples, config.seed),
                }
    return {"tuning": tuning, "test": test, "summary": summary, "best": best, "comparisons": comparisons}


def _at_horizon(means: dict[int, dict[str, list[float]]], grid: list[int], hi: int) -> dict[int, dict[str, float]]:
    """``choose``'s input: every rate of ``grid`` with its validation means at horizon ``hi``."""
    return {k: {m: means[k][m][hi] for m in METRICS} for k in grid}


def net_fingerprint(net: torch.nn.Module) -> str:
    """SHA-256 of a meta-network's configuration and weights: equal fingerprints run the same
    L3RS (the evaluation's tasks and seeds being equal)."""
    import hashlib
    import json

    digest = hashlib.sha256()
    config = getattr(net, "config", None)
    digest.update(type(net).__name__.encode())
    if config is not None:
        fields = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else vars(config)
        digest.update(json.dumps(fields, sort_keys=True, default=repr).encode())
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _baseline_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a configuration that determines the baselines' results. A task option
    written out at its default (``--eval-batchnorm running``) is the configuration that leaves
    it out, so it reuses that configuration's baselines."""
    out = {k: v for k, v in config.items() if k not in ("l3rs", "l3rs_probes", "bootstrap_samples", "families")}
    out["task_specs"] = _without_defaults(config.get("task_specs") or {})
    return out


def _without_defaults(task_specs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each dataset's task options less those equal to what the dataset's task spec has
    without them (its calibrated fields, else ``ImageTaskSpec``'s defaults)."""
    from hf_l3rs.tasks.datasets import task_spec_kwargs
    from hf_l3rs.tasks.images import ImageTaskSpec

    out = {}
    for dataset, spec in task_specs.items():
        plain = dataclasses.asdict(ImageTaskSpec(**task_spec_kwargs(dataset)))
        kept = {k: v for k, v in spec.items() if k not in plain or v != plain[k]}
        if kept:
            out[dataset] = kept
    return out


def _restore_infinities(runs: dict[str, Any]) -> dict[str, Any]:
    """Loss values saved as null (a diverged run, strict JSON) back to infinity."""
    out = {}
    for metric, per_h in runs.items():
        out[metric] = {}
        for h, cell in per_h.items():
            fill = math.inf if metric == "loss" else 0.0
            out[metric][h] = {**cell, "values": [fill if v is None else v for v in cell["values"]]}
    return out


def _loss(x: float) -> float:
    return x if math.isfinite(x) else math.inf


def _accuracy(x: float | None) -> float:
    return x if x is not None and math.isfinite(x) else 0.0


def _finite_or(x: float, default: float) -> float:
    return x if math.isfinite(x) else default
