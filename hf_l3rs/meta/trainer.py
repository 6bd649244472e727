"""The NES meta-training driver: evaluates candidates × tasks across Accelerate processes,
gathers fitnesses, applies the identical update everywhere, checkpoints, logs and exports.

The strategy (``strategy.py``) knows nothing of this file; this file knows nothing of how
a task computes its loss (``hf_l3rs.tasks``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hf_l3rs import jsonio
from hf_l3rs.meta.config import MetaTrainConfig
from hf_l3rs.meta.shaping import centered_rank
from hf_l3rs.meta.strategy import NES, NESState
from hf_l3rs.optim import L3RS, L3RSNet
from hf_l3rs.optim.config import ConfigError
from hf_l3rs.parallel import barrier, shard_map
from hf_l3rs.registry import learned_factory
from hf_l3rs.seeding import hash_seed
from hf_l3rs.tasks import TaskFamily, run_task
from hf_l3rs.tasks.base import template_task
from hf_l3rs.verbosity import get_logger

logger = get_logger(__name__)
CHECKPOINT_DIR = "checkpoint"


class RunFolderError(ValueError):
    """The output folder holds another run (or no run to resume)."""


class ProcessCountError(RuntimeError):
    """The run was launched with more processes than this process can see."""


def make_accelerator(config: MetaTrainConfig, output_dir: Path):
    """An Accelerator that really spans the launched processes (CPU: gloo)."""
    from accelerate import Accelerator

    use_cpu = not torch.cuda.is_available()
    log_with = available_trackers(config.trackers) or None
    acc = Accelerator(cpu=use_cpu, log_with=log_with, project_dir=str(output_dir))
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != acc.num_processes:
        raise ProcessCountError(
            f"launched as {launched} processes but this one sees a world of {acc.num_processes}: "
            "each would meta-train alone. On CPUs launch with `ACCELERATE_USE_CPU=true accelerate "
            "launch --multi_gpu --num_processes N --num_machines 1 ...` (not `--cpu`)."
        )
    if config.expect_processes is not None and acc.num_processes != config.expect_processes:
        raise ProcessCountError(
            f"expect_processes={config.expect_processes} but the run has {acc.num_processes} process(es); "
            "note that `accelerate launch --cpu --num_processes N` starts ONE process: use "
            "`ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N --num_machines 1`."
        )
    return acc


BACKUP_DIR = "checkpoint.bak"
#: what a meta-training run writes into its folder (the artifacts another run would overwrite)
RUN_ARTIFACTS = (CHECKPOINT_DIR, BACKUP_DIR, "history.json", "best", "final", "meta_training_curve.png")


def has_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` holds a checkpoint a run can resume from."""
    return any((Path(folder) / d).is_dir() for d in (CHECKPOINT_DIR, BACKUP_DIR))


def run_artifacts(folder: Path) -> list[str]:
    """The artifacts of a run found in ``folder``."""
    return [name for name in RUN_ARTIFACTS if (Path(folder) / name).exists()]


class CheckpointCorrupt(ValueError):
    """A meta-training checkpoint is missing, truncated or inconsistent."""


def cost_line(history: list[dict[str, Any]]) -> str:
    """The run's recorded cost in CPU-hours (process-seconds summed over the history), naming the
    generations that carry no record (runs started before the trainer kept one)."""
    recorded = [h["process_seconds"] for h in history if "process_seconds" in h]
    missing = len(history) - len(recorded)
    text = f"{sum(recorded) / 3600:.2f} CPU-hours recorded over {len(recorded)} generations"
    return text + (f" ({missing} earlier generations without a record)" if missing else "")


def _read_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON and tensors of one checkpoint folder, checked to belong together."""
    from safetensors import SafetensorError, safe_open

    state, trainer = folder / "state.safetensors", folder / "trainer.json"
    if not (state.is_file() and trainer.is_file()):
        raise CheckpointCorrupt(f"{folder} is incomplete (needs state.safetensors and trainer.json)")
    try:
        meta = json.loads(trainer.read_text())
        tensors = load_file(str(state))
        with safe_open(str(state), framework="pt") as f:
            saved_generation = (f.metadata() or {}).get("generation")
    except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError, OSError, ValueError) as exc:
        raise CheckpointCorrupt(f"{folder} is unreadable ({type(exc).__name__}: {exc})") from exc
    missing = {"theta", "adam_m", "adam_v", "best_theta", "theta0"} - set(tensors)
    if missing or not isinstance(meta, dict) or "generation" not in meta:
        raise CheckpointCorrupt(f"{folder} is incomplete (missing {sorted(missing) or 'trainer fields'})")
    if saved_generation is not None and int(saved_generation) != int(meta["generation"]):
        raise CheckpointCorrupt(
            f"{folder}: state.safetensors is from generation {saved_generation}, trainer.json from {meta['generation']}"
        )
    return meta, tensors


class _TermSignal:
    """Inside the ``with``: SIGTERM (pre-emption) sets ``received`` instead of killing the
    process, so the loop can checkpoint at the next generation boundary."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def __enter__(self) -> _TermSignal:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True

    def __exit__(self, *exc: Any) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def available_trackers(names: list[str]) -> list[str]:
    """The configured trackers whose package is installed; the others are named once (a
    missing tracker must not stop a long run, nor vanish without a word)."""
    import importlib.util

    from hf_l3rs.meta.config import TRACKERS

    missing = [n for n in names if importlib.util.find_spec(TRACKERS[n]) is None]
    if missing:
        logger.warning(
            "meta-training: tracker(s) %s not installed, not logging to them (pip install 'hf-l3rs[tracking]' "
            "for TensorBoard, or the tracker's own package)",
            missing,
        )
    return [n for n in names if n not in missing]


def build_family(config: MetaTrainConfig) -> TaskFamily:
    from hf_l3rs.tasks.registry import get_family

    return get_family(config.family, **config.family_kwargs)


def search_scales(net: L3RSNet, scales: dict[str, float]) -> torch.Tensor | None:
    """Per-coordinate NES scales over θ from {parameter name: scale}; None when empty."""
    if not scales:
        return None
    out = torch.ones(net.num_meta_parameters, dtype=torch.float64)
    for name, scale in scales.items():
        try:
            out[net.flat_mask(name)] = float(scale)
        except KeyError as exc:
            raise ConfigError(f"MetaTrainConfig.search_scales: {exc.args[0]}") from None
    return out


@dataclass
class MetaTrainer:
    """Owns the strategy state, the meta-network and the run's history."""

    config: MetaTrainConfig
    output_dir: Path
    accelerator: Any = None
    family: TaskFamily | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        cfg = self.config
        if self.family is None:
            self.family = build_family(cfg)
        if self.accelerator is None:
            self.accelerator = make_accelerator(cfg, self.output_dir)
        acc = self.accelerator
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // max(1, acc.num_processes))
        torch.set_num_threads(threads)
        template = template_task(self.family).init_model()
        if cfg.learned_optimizer != "l3rs":
            import hf_l3rs.optim.learned as learned

            fresh = cfg.make_learned_net()
            probe = learned.by_name(cfg.learned_optimizer).optimizer(template, fresh, total_steps=1)
        elif cfg.init_from is not None:
            from hf_l3rs.optim.hub import load_net

            start = load_net(cfg.init_from, **cfg.l3rs)
            probe = L3RS(template, start, total_steps=1, map_embeddings=False)
        else:
            probe = L3RS(template, cfg.l3rs_config(), total_steps=1, seed=cfg.seed)
        self.net: L3RSNet | Any = probe.net
        self.components = probe.components
        self.strategy = NES(cfg.nes_params(), scales=search_scales(self.net, cfg.search_scales))
        self.state: NESState = self.strategy.init(self.net.get_flat())
        self.theta0 = self.state.theta.clone()
        self.best_theta = self.state.theta.clone()
        self.best_val = -math.inf
        self.best_val_diverged = 0
        self.diverged_total = 0
        self.timing = {
            "evaluate": 0.0,
            "communicate": 0.0,
            "imbalance": 0.0,
            "strategy": 0.0,
            "loop": 0.0,
            "evaluations": 0,
            "items_here": 0,
        }

    # ------------------------------------------------------------ evaluation
    def _factory(self, theta: torch.Tensor):
        self.net.set_flat(theta)
        return learned_factory(self.net)

    def _distributed(
        self, items: list[tuple[torch.Tensor, Any]], tag: str, blowup: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Evaluate (θ, task) items across processes; everyone gets every result:
        fitness (-inf if diverged), eval accuracy (NaN if none) and a diverged flag.
        With ``blowup``, runs past ``config.blowup_factor`` count as diverged too."""
        factor = self.config.blowup_factor if blowup else None

        def one(item: tuple[torch.Tensor, Any]) -> torch.Tensor:
            theta, task = item
            res = run_task(task, self._factory(theta))
            acc = res.eval_accuracy if res.eval_accuracy is not None else math.nan
            return torch.tensor([res.fitness(self.config.objective, factor), acc], dtype=torch.float64)

        self.timing["evaluations"] += len(items)
        costs = [getattr(task, "num_steps", 1) for _, task in items]
        table = shard_map(one, items, 2, self.accelerator, costs=costs, timing=self.timing, tag=tag)
        fitness = table[:, 0]
        return fitness, table[:, 1], ~torch.isfinite(fitness)

    def task_seeds(self, generation: int) -> list[int]:
        m = self.config.tasks_per_generation
        return [hash_seed(self.config.seed, generation, j) % (2**31) for j in range(m)]

    def validate(self, theta: torch.Tensor) -> dict[str, float]:
        """Score θ on the fixed validation tasks (meta-train distribution, 'val' split)."""
        tasks = [self.family.sample(i, "val") for i in range(self.config.val_tasks)]
        fit, accs, div = self._distributed([(theta, t) for t in tasks], f"validation {self.state.generation}")
        finite = fit[torch.isfinite(fit)]
        return {
            "val_fitness": float(finite.mean()) if len(finite) else -math.inf,
            "val_accuracy": float(accs[~torch.isnan(accs)].mean()) if (~torch.isnan(accs)).any() else math.nan,
            "val_diverged": int(div.sum()),
        }

    # ---------------------------------------------------------- generation
    def generation(self) -> dict[str, Any]:
        state = self.state
        population = self.strategy.ask(state)
        tasks = [self.family.sample(s, "train") for s in self.task_seeds(state.generation)]
        items = [(population[i], tasks[j]) for i in range(len(population)) for j in range(len(tasks))]
        fit, accs, div = self._distributed(items, f"generation {state.generation}", blowup=True)
        t0 = time.perf_counter()
        p, m = len(population), len(tasks)
        grid = fit.reshape(p, m)
        # Common random numbers: rank candidates within each task, then average over tasks
        # (raw losses differ by orders of magnitude between tasks).
        per_task = torch.stack([centered_rank(grid[:, j]) for j in range(m)], dim=1)
        candidate = per_task.mean(dim=1)
        diverged = div.reshape(p, m).any(dim=1)
        candidate[diverged] = -math.inf
        lr, sigma = self.strategy.schedule(state.generation)
        self.state = self.strategy.tell(state, candidate)
        self.timing["strategy"] += time.perf_counter() - t0
        self.diverged_total += int(div.sum())
        finite = grid[torch.isfinite(grid)]
        record = {
            "generation": self.state.generation,
            "fitness_mean": float(finite.mean()) if len(finite) else -math.inf,
            "fitness_best": float(finite.max()) if len(finite) else -math.inf,
            "accuracy_mean": float(accs[~torch.isnan(accs)].mean()) if (~torch.isnan(accs)).any() else math.nan,
            "diverged": int(div.sum()),
            "sigma": sigma,
            "meta_lr": lr,
        }
        return record

    # ------------------------------------------------------------- running
    def run(self, resume: bool = False, stop_after: int | None = None, overwrite: bool = False) -> dict[str, Any]:
        """Meta-train to ``config.generations`` (or stop after ``stop_after`` generations
        of this call, for tests that simulate a crash). A folder that holds another run is
        never written over unless ``resume`` (continue it) or ``overwrite`` (replace it)."""
        from tqdm.auto import tqdm

        acc, cfg = self.accelerator, self.config
        found = run_artifacts(self.output_dir)
        if resume and not has_checkpoint(self.output_dir):
            raise RunFolderError(
                f"--resume: {self.output_dir} holds no checkpoint to resume"
                + (f" (only {', '.join(found)})" if found else "")
                + "; start without --resume"
            )
        if not resume and found and not overwrite:
            raise RunFolderError(
                f"{self.output_dir} holds another run ({', '.join(found)}): --resume continues it, --overwrite "
                "replaces it, or choose another --output"
            )
        if overwrite and found and acc.is_main_process:
            for name in found:
                target = self.output_dir / name
                shutil.rmtree(target) if target.is_dir() else target.unlink()
        barrier(acc)
        if resume:
            self.load_checkpoint()
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.tracking = bool(cfg.trackers) and bool(getattr(acc, "log_with", None))
        if self.tracking:
            acc.init_trackers(cfg.name, config=_flat_config(cfg))
        # The bar shows from the start: the first validation can take minutes at paper scale.
        bar = tqdm(
            total=cfg.generations,
            initial=self.state.generation,
            disable=not acc.is_main_process,
            desc=f"NES {cfg.name}",
            dynamic_ncols=True,
        )
        if not self.history:
            bar.set_postfix_str("scoring the initial θ on the validation tasks")
            t0 = time.perf_counter()
            base = {"generation": 0, **self.validate(self.state.theta)}
            base["process_seconds"] = self._process_seconds(t0)
            self.best_val, self.best_val_diverged = base["val_fitness"], base["val_diverged"]
            self.history.append(base)
            self._log(base)
            bar.set_postfix(val=f"{self.best_val:.3g}")
        done = 0
        # timing.json covers the generation loop only (start-up and the first validation excluded)
        self.timing = dict.fromkeys(self.timing, 0)
        loop_start = time.perf_counter()
        self.stopped = False
        with _TermSignal() as term:
            while self.state.generation < cfg.generations:
                if stop_after is not None and done >= stop_after:
                    break
                if barrier(self.accelerator, term.received):  # any process pre-empted: all stop together
                    # pre-empted (SIGTERM to any process): the last generation is saved, all stop together
                    self.save_checkpoint()
                    self.stopped = True
                    logger.warning(
                        "meta-training: SIGTERM received; checkpoint written at generation %d, stopping "
                        "(continue with --resume)",
                        self.state.generation,
                    )
                    break
                self._one_generation(bar)
                done += 1
        bar.close()
        self.timing["loop"] += time.perf_counter() - loop_start
        if self.state.generation >= cfg.generations or self.stopped:
            self.finish()  # a pre-empted run exports its best and final weights so far too
        if self.tracking:
            acc.end_training()
        return {
            "generation": self.state.generation,
            "best_val": self.best_val,
            "history": self.history,
            "stopped": self.stopped,
        }

    def _one_generation(self, bar: Any) -> None:
        """One generation, its validation when due, the log, the bar and the checkpoint."""
        cfg = self.config
        t0 = time.perf_counter()
        record = self.generation()
        g = self.state.generation
        if g % cfg.val_every == 0 or g == cfg.generations:
            record.update(self.validate(self.state.theta))
            # fewer diverged validation runs first (val_fitness averages the finite ones only)
            if (-record["val_diverged"], record["val_fitness"]) > (-self.best_val_diverged, self.best_val):
                self.best_val, self.best_val_diverged = record["val_fitness"], record["val_diverged"]
                self.best_theta = self.state.theta.clone()
        record["process_seconds"] = self._process_seconds(t0)
        self.history.append(record)
        self._log(record)
        bar.update(1)
        bar.set_postfix(
            fit=f"{record['fitness_mean']:.3g}",
            val=f"{self.best_val:.3g}",
            acc=f"{record.get('val_accuracy', record['accuracy_mean']):.3f}",
            sigma=f"{record['sigma']:.2g}",
            div=self.diverged_total,
        )
        if g % cfg.checkpoint_every == 0 or g == cfg.generations:
            self.save_checkpoint()

    def _process_seconds(self, since: float) -> float:
        """Wall seconds since ``since`` times the number of processes: the generation's cost in
        process-seconds (one thread each), summed into the card's CPU-hours."""
        return round((time.perf_counter() - since) * self.accelerator.num_processes, 3)

    def _log(self, record: dict[str, Any]) -> None:
        if getattr(self, "tracking", False):
            values = {
                k: v
                for k, v in record.items()
                if k != "generation" and isinstance(v, (int, float)) and math.isfinite(v)
            }
            self.accelerator.log(values, step=record["generation"])

    # ---------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        """θ, Adam moments, best θ (safetensors) and the rest (JSON), written to a fresh
        folder that then replaces ``checkpoint/``; the previous one is kept as
        ``checkpoint.bak/``. A crash at any point leaves at least one complete checkpoint."""
        acc = self.accelerator
        barrier(acc)
        if acc.is_main_process:
            out = self.output_dir
            tmp, current, backup = out / f"{CHECKPOINT_DIR}.tmp", out / CHECKPOINT_DIR, out / BACKUP_DIR
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            tensors = {**self.state.tensors(), "best_theta": self.best_theta, "theta0": self.theta0}
            generation = str(self.state.generation)
            save_file(
                {k: v.contiguous() for k, v in tensors.items()},
                str(tmp / "state.safetensors"),
                metadata={"generation": generation},
            )
            meta = {
                "generation": self.state.generation,
                "best_val": self.best_val,
                "best_val_diverged": self.best_val_diverged,
                "diverged_total": self.diverged_total,
                "history": self.history,
                "config": self.config.to_dict(),
            }
            jsonio.write(tmp / "trainer.json", meta)  # -inf (no fitness yet) → null
            if current.exists():
                if backup.exists():
                    shutil.rmtree(backup)
                os.replace(current, backup)
            os.replace(tmp, current)
        barrier(acc)

    def load_checkpoint(self) -> None:
        """Resume from ``checkpoint/``, or from ``checkpoint.bak/`` (with a warning) when the
        newest one is missing, truncated or corrupt; both unreadable is a clear error."""
        errors = []
        for name in (CHECKPOINT_DIR, BACKUP_DIR):
            folder = self.output_dir / name
            try:
                meta, tensors = _read_checkpoint(folder)
            except CheckpointCorrupt as exc:
                errors.append(str(exc))
                continue
            if name == BACKUP_DIR:
                logger.warning("--resume: %s; resuming from the previous checkpoint %s", errors[0], folder)
            self._restore(folder, meta, tensors)
            return
        raise CheckpointCorrupt("--resume: no readable checkpoint: " + "; ".join(errors))

    def _restore(self, folder: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        saved = MetaTrainConfig.from_dict(meta["config"])
        mismatched = {
            k
            for k, v in saved.to_dict().items()
            if k not in ("generations", "trackers", "expect_processes") and v != self.config.to_dict()[k]
        }
        if mismatched:
            raise ValueError(
                f"--resume: the checkpoint in {folder} was made with a different config "
                f"(fields {sorted(mismatched)}); use another output folder"
            )
        self.state = NESState(tensors["theta"], tensors["adam_m"], tensors["adam_v"], int(meta["generation"]))
        self.best_theta, self.theta0 = tensors["best_theta"], tensors["theta0"]
        self.best_val = -math.inf if meta["best_val"] is None else float(meta["best_val"])
        self.best_val_diverged = int(meta.get("best_val_diverged", 0))
        self.diverged_total = int(meta["diverged_total"])
        self.history = list(meta["history"])
        logger.info("resumed from generation %d", self.state.generation)

    # -------------------------------------------------------------- export
    def finish(self) -> None:
        """Export best and final meta-weights with cards, history and the curve plot."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return
        from hf_l3rs.meta.curves import plot_meta_curve
        from hf_l3rs.optim.hub import save_net

        out = self.output_dir
        jsonio.write(out / "history.json", self.history)
        jsonio.write(out / "timing.json", {**self.timing, "processes": acc.num_processes})
        plot_meta_curve(self.history, out / "meta_training_curve.png", title=self.config.name)
        first = self.history[0]
        for tag, theta in (("final", self.state.theta), ("best", self.best_theta)):
            self.net.set_flat(theta)
            save_net(self.net, out / tag, components=self.components, card=self._card(tag, first))
        self.net.set_flat(self.state.theta)

    def _card(self, tag: str, first: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        last_val = [h for h in self.history if "val_fitness" in h][-1]
        start = f"start (`{cfg.init_from}`)" if cfg.init_from else "untrained"
        training = "\n".join(
            [
                f"- run `{cfg.name}`: NES, {self.state.generation} generations, population "
                f"{self.strategy.params.popsize}, {cfg.tasks_per_generation} tasks per generation, "
                f"σ {self.strategy.params.sigma:g}, meta-lr {self.strategy.params.learning_rate:g}, "
                f"decay ×0.5 every {self.strategy.params.decay_every:g} generations"
                + (f", search scales {cfg.search_scales}" if cfg.search_scales else ""),
                f"- tasks: `{cfg.family}` {cfg.family_kwargs or ''}, objective `{cfg.objective}`",
                f"- processes: {self.accelerator.num_processes}; diverged candidate-task runs: {self.diverged_total}",
                f"- cost: {cost_line(self.history)}",
                f"- validation fitness: {start} {first['val_fitness']:.4g} → final {last_val['val_fitness']:.4g}, "
                f"best {self.best_val:.4g} (this folder: {tag})",
            ]
        )
        return {
            "title": f"{'L3RS' if cfg.learned_optimizer == 'l3rs' else cfg.learned_optimizer} meta-trained on "
            f"{cfg.family} ({tag})",
            "training": training,
            "tags": [cfg.family.replace("+", "-")],
        }


def _flat_config(cfg: MetaTrainConfig) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in cfg.to_dict().items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                flat[f"{k}.{kk}"] = vv if isinstance(vv, (int, float, str, bool)) else str(vv)
        elif isinstance(v, (int, float, str, bool)):
            flat[k] = v
        else:
            flat[k] = str(v)
    return flat
