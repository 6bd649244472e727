"""The paper's evaluation protocol (docs/design.md §4.1, paper Fig. 3).

A: init D1, tasks D1 · B: init D1, tasks D2 · C: init D2, tasks D1 · D: init D2, tasks D2 ·
E: random init, tasks D1 · F: steps L3RS needs to reach each baseline's accuracy at that
baseline's horizon (from A). Tasks come from the meta-test classes; the same task seed gives
every optimizer the same data and head initialisation.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from hf_l3rs.evaluation.optimizers import PAPER_BASELINES, L3RSEntry, parse_entry
from hf_l3rs.evaluation.stats import steps_to_reach
from hf_l3rs.optim import ConfigError, L3RSConfig
from hf_l3rs.optim.config import reject_unknown_fields
from hf_l3rs.probe import freeze_body
from hf_l3rs.registry import OptimizerSpec, l3rs_factory, learned_factory
from hf_l3rs.tasks.images import ImageTask, ImageTaskFamily, ImageTaskSpec, dataset_name, load_image_dataset
from hf_l3rs.tasks.inner_loop import run_task

EVALUATIONS = {
    "A": ("D1", "D1"),
    "B": ("D1", "D2"),
    "C": ("D2", "D1"),
    "D": ("D2", "D2"),
    "E": (None, "D1"),
}


@dataclass
class EvalConfig:
    """What to evaluate. ``domains``: D1/D2 → dataset (embedded name, folder or Hub id);
    ``checkpoints``: D1/D2 → pretrained safetensors; ``task_specs``: dataset → ImageTaskSpec
    fields; ``l3rs``: meta-weights folder/repo (``None``: untrained L3RS)."""

    domains: dict[str, str] = field(default_factory=lambda: {"D1": "kanji", "D2": "clipart"})
    checkpoints: dict[str, str] = field(default_factory=dict)
    task_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    model: str = "l3rs_resnet_tiny"
    horizons: list[int] = field(default_factory=lambda: [10, 25, 50, 100])
    num_tasks: int = 10
    optimizers: list[str] = field(default_factory=lambda: ["l3rs", *PAPER_BASELINES])
    l3rs: str | None = None
    l3rs_label: str = "L3RS"
    l3rs_base_lr: float | None = None
    evaluations: list[str] = field(default_factory=lambda: list(EVALUATIONS))
    split: str = "test"
    seed: int = 0

    def __post_init__(self) -> None:
        for e in self.evaluations:
            if e not in EVALUATIONS:
                raise ConfigError(f"EvalConfig.evaluations: unknown {e!r}; known: {sorted(EVALUATIONS)}")
        if not self.horizons or any(h < 1 for h in self.horizons):
            raise ConfigError("EvalConfig.horizons must be positive step counts")
        self.horizons = sorted(set(int(h) for h in self.horizons))
        if self.num_tasks < 1:
            raise ConfigError("EvalConfig.num_tasks must be >= 1")
        for key in ("D1", "D2"):
            if key not in self.domains:
                raise ConfigError(f"EvalConfig.domains needs {key}")
        for name in self.optimizers:
            try:
                parse_entry(name)
            except ValueError as exc:
                raise ConfigError(f"EvalConfig.optimizers: {exc}") from exc

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> EvalConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        data.update({k: v for k, v in overrides.items() if v is not None})
        reject_unknown_fields(cls, data, str(path))
        return cls(**data)


class Protocol:
    """Runs evaluations and keeps every per-task number."""

    def __init__(self, config: EvalConfig, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.specs = [parse_entry(n) for n in config.optimizers]
        self.specs = [
            L3RSEntry(config.l3rs_label) if isinstance(s, L3RSEntry) and s == L3RSEntry() else s for s in self.specs
        ]
        self._datasets: dict[str, Any] = {}
        self._families: dict[tuple[str, str | None], ImageTaskFamily] = {}
        self._images: dict[str, dict] = {}
        self._net = None
        if config.l3rs is not None:
            from hf_l3rs.optim.hub import load_net

            overrides = {"base_lr": config.l3rs_base_lr} if config.l3rs_base_lr else {}
            self._net = load_net(config.l3rs, **overrides)

    # ------------------------------------------------------------- building
    def family(self, init: str | None, tasks: str) -> ImageTaskFamily:
        cfg = self.config
        source = cfg.domains[tasks]
        key = (tasks, init)
        if key not in self._families:
            if source not in self._datasets:
                self._datasets[source] = load_image_dataset(source)
            from hf_l3rs.tasks.datasets import task_spec_kwargs

            spec = ImageTaskSpec(**task_spec_kwargs(source, **cfg.task_specs.get(source, {})))
            checkpoint = cfg.checkpoints.get(init) if init else None
            if init and checkpoint is None:
                raise ConfigError(f"EvalConfig.checkpoints has no checkpoint for {init} (needed by the evaluation)")
            # Families over the same dataset share decoded images.
            fam = ImageTaskFamily(
                self._datasets[source],
                spec,
                model_name=cfg.model,
                checkpoint=checkpoint,
                name=dataset_name(source),
                image_cache=self._images.setdefault(source, {}),
            )
            self._families[key] = fam
        return self._families[key]

    def l3rs_factory(self, untrained: bool = False, net: Any = None):
        """L3RS over a model: ``net`` (or the configured meta-weights) unless ``untrained``."""
        base_lr = self.config.l3rs_base_lr
        net = net if net is not None else self._net
        if net is not None and not untrained:
            return learned_factory(net)
        return l3rs_factory(L3RSConfig(base_lr=base_lr) if base_lr else L3RSConfig())

    # --------------------------------------------------------------- running
    def run_optimizer(
        self, spec: OptimizerSpec | L3RSEntry, task: ImageTask, horizons: list[int] | None = None
    ) -> dict[int, tuple[float, float]]:
        """horizon → (eval loss, eval accuracy) for one optimizer on one task, at
        ``horizons`` (default: the configured ones)."""
        horizons = sorted(horizons or self.config.horizons)
        if spec.head_only:
            return self._head_only(spec, task, horizons)
        if isinstance(spec, L3RSEntry):
            factory = self.l3rs_factory(untrained=spec.untrained, net=spec.net)
        else:
            factory = spec.factory()
        out: dict[int, tuple[float, float]] = {}
        if spec.per_horizon:
            for h in horizons:
                res = run_task(task, factory, num_steps=h)
                out[h] = (res.eval_loss, res.eval_accuracy if res.eval_accuracy is not None else math.nan)
        else:
            res = run_task(task, factory, num_steps=max(horizons), eval_steps=horizons)
            for h in horizons:
                loss, acc = res.curve.get(h, (math.inf, 0.0))
                out[h] = (loss, acc if acc is not None else math.nan)
        return out

    def _head_only(
        self, spec: OptimizerSpec | L3RSEntry, task: ImageTask, horizons: list[int]
    ) -> dict[int, tuple[float, float]]:
        """Linear probe: backbone frozen in eval mode, features computed once. L3RS steps the
        head over the whole model with the body frozen (depth and roles are the model's, and
        the head of a frozen body calibrates its step, docs/design.md §1), from the loss it is
        handed."""
        model = task.init_model()
        model.eval()
        with torch.no_grad():
            f_train = model.forward_head(model.forward_features(task.train_x), pre_logits=True)
            f_eval = model.forward_head(model.forward_features(task.eval_x), pre_logits=True)
        head = model.get_classifier()
        state0 = {k: v.clone() for k, v in head.state_dict().items()}
        learned = isinstance(spec, L3RSEntry)
        if learned:  # the user's recipe (README "L3RS as a linear probe"), on cached features
            freeze_body(model, head)
            factory = self.l3rs_factory(untrained=spec.untrained, net=spec.net)
        out: dict[int, tuple[float, float]] = {}
        runs = horizons if spec.per_horizon else [max(horizons)]
        for total in runs:
            head.load_state_dict(state0)
            opt = factory(model, total) if learned else spec.build(head.parameters(), total, model=head)
            for t in range(total):
                idx = task.batch_indices(t)
                loss = nn.functional.cross_entropy(head(f_train[idx]), task.train_y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if learned:
                    opt.step(loss=loss.detach())
                else:
                    opt.step()
                step = t + 1
                if (spec.per_horizon and step == total) or (not spec.per_horizon and step in horizons):
                    with torch.no_grad():
                        logits = head(f_eval)
                        out[step] = (
                            float(nn.functional.cross_entropy(logits, task.eval_y)),
                            float((logits.argmax(1) == task.eval_y).float().mean()),
                        )
        return out

    def cost(self, spec: OptimizerSpec | L3RSEntry, horizons: list[int] | None = None) -> float:
        """Relative cost of one run (for balancing work across processes)."""
        horizons = horizons or self.config.horizons
        steps = sum(horizons) if spec.per_horizon else max(horizons)
        return steps * (0.05 if spec.head_only else 1.0)

    def run(self, accelerator: Any = None) -> dict[str, Any]:
        """Every (evaluation, task, optimizer) run, dealt over ``accelerator``'s processes."""
        from tqdm.auto import tqdm

        from hf_l3rs.parallel import shard_map

        cfg = self.config
        horizons = cfg.horizons
        items = [(ev, i, k) for ev in cfg.evaluations for i in range(cfg.num_tasks) for k in range(len(self.specs))]
        costs = [self.cost(self.specs[k]) for _, _, k in items]
        world = accelerator.num_processes if accelerator is not None else 1
        main = accelerator is None or accelerator.is_main_process
        bar = tqdm(
            total=len(items),
            desc=f"evaluating ({world} process{'es' if world > 1 else ''})",
            disable=not (self.progress and main),
            dynamic_ncols=True,
        )
        tasks: dict[tuple[str, int], ImageTask] = {}
        seconds: dict[str, float] = {}

        def one(item: tuple[str, int, int]) -> torch.Tensor:
            ev, i, k = item
            start = time.perf_counter()
            if (ev, i) not in tasks:
                init, domain = EVALUATIONS[ev]
                tasks[(ev, i)] = self.family(init, domain).sample(cfg.seed + i, cfg.split)
            bar.set_postfix(eval=ev, task=i, opt=self.specs[k].label[:24])
            res = self.run_optimizer(self.specs[k], tasks[(ev, i)])
            seconds[ev] = seconds.get(ev, 0.0) + time.perf_counter() - start
            return torch.tensor([res[h][0] for h in horizons] + [res[h][1] for h in horizons])

        timing: dict[str, float] = {}
        start = time.perf_counter()
        table = shard_map(
            one,
            items,
            2 * len(horizons),
            accelerator,
            costs=costs,
            timing=timing,
            on_done=lambda finished: bar.update(finished - bar.n),
        )
        bar.close()
        results: dict[str, Any] = {
            "config": dataclasses.asdict(cfg),
            "evaluations": {},
            "wall_seconds": round(time.perf_counter() - start, 1),
            "processes": world,
            "compute_seconds_this_process": {k: round(v, 1) for k, v in seconds.items()},
        }
        nh = len(horizons)
        for ev in cfg.evaluations:
            init, domain = EVALUATIONS[ev]
            per_opt: dict[str, dict[str, list[list[float]]]] = {
                s.label: {"loss": [], "accuracy": []} for s in self.specs
            }
            for row, (e, _, k) in zip(table.tolist(), items):
                if e == ev:
                    per_opt[self.specs[k].label]["loss"].append(row[:nh])
                    per_opt[self.specs[k].label]["accuracy"].append(row[nh:])
            results["evaluations"][ev] = {
                "init": init,
                "tasks": domain,
                "per_task": per_opt,
                "summary": summarize(per_opt, horizons),
            }
        if "A" in results["evaluations"]:
            results["speedup"] = speedup(results["evaluations"]["A"]["summary"], horizons, self.l3rs_label())
        return results

    def l3rs_label(self) -> str | None:
        """The L3RS that F measures: the configured one, else the untrained one."""
        entries = [s for s in self.specs if isinstance(s, L3RSEntry)]
        trained = [s.label for s in entries if not s.untrained]
        return (trained or [s.label for s in entries] or [None])[0]


def summarize(per_opt: dict[str, dict[str, list[list[float]]]], horizons: list[int]) -> dict[str, Any]:
    """optimizer → metric → horizon → {mean, std, n}."""
    out: dict[str, Any] = {}
    for label, metrics in per_opt.items():
        out[label] = {}
        for metric, rows in metrics.items():
            out[label][metric] = {}
            for j, h in enumerate(horizons):
                vals = [r[j] for r in rows if math.isfinite(r[j])]
                out[label][metric][str(h)] = {
                    "mean": statistics.fmean(vals) if vals else math.nan,
                    "std": statistics.pstdev(vals) if len(vals) > 1 else 0.0,
                    "n": len(vals),
                }
    return out


def speedup(summary: dict[str, Any], horizons: list[int], l3rs: str | None) -> dict[str, Any]:
    """F: for every baseline and horizon H, H / (steps L3RS needs to reach the baseline's
    mean accuracy at H)."""
    if l3rs is None or l3rs not in summary:
        return {}
    curve = [summary[l3rs]["accuracy"][str(h)]["mean"] for h in horizons]
    out: dict[str, Any] = {}
    for label, metrics in summary.items():
        if label.startswith("L3RS"):
            continue
        out[label] = {}
        for h in horizons:
            target = metrics["accuracy"][str(h)]["mean"]
            steps = steps_to_reach(target, horizons, curve) if math.isfinite(target) else None
            out[label][str(h)] = {
                "target_accuracy": target,
                "l3rs_steps": steps,
                "speedup": (h / steps) if steps else None,
                # reached by the shortest horizon already: the true speedup is at least this
                "at_least": steps is not None and steps == horizons[0],
            }
    return out
