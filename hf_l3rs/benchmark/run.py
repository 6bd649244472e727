"""Running the suite: one training run per (case, setting, seed, role), each stored as its own
JSON file the moment it ends, so a killed suite resumes where it stopped; a progress bar per
round; up to ``processes`` worker processes, one thread each."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from hf_l3rs.benchmark import plan
from hf_l3rs.benchmark.peers import PeerConfig, SettingsMismatch, build, check_settings, schedule_factor
from hf_l3rs.benchmark.problems import Problem
from hf_l3rs.benchmark.problems import build as build_problem
from hf_l3rs.benchmark.suite import Case, fingerprint


def curve_steps(steps: int, points: int) -> list[int]:
    """About ``points`` log-spaced steps in [1, steps], ``steps`` included."""
    out = {steps}
    for i in range(points):
        out.add(max(1, round(steps ** (i / max(1, points - 1)))))
    return sorted(out)


def held_out(problem: Problem, opt: Any) -> tuple[float, float]:
    """Held-out (loss, accuracy), in inference mode (no graph is kept) and, for schedule-free
    optimizers, at the averaged weights they are meant to be evaluated at."""
    model = problem.model
    swap = callable(getattr(opt, "eval", None)) and callable(getattr(opt, "train", None))
    was_training = model.training
    model.eval()
    if swap:
        opt.eval()
    try:
        with torch.no_grad():
            loss, acc = problem.evaluate(model)
    finally:
        if swap:
            opt.train()
        model.train(was_training)
    return loss, acc


def _train_plain(problem: Problem, opt: Any, factor: Any, steps: int, points: list[int], l3rs: bool) -> dict:
    model = problem.model
    model.train()
    if callable(getattr(opt, "train", None)):
        opt.train()
    base = [g["lr"] for g in opt.param_groups]
    train_curve, held_curve, lr_curve, window = [], [], [], []
    stride = max(1, steps // 100)
    diverged_at = None
    for t in range(steps):
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * factor(t)
        loss = problem.loss(model, problem.train_batch(t))
        if not torch.isfinite(loss):
            diverged_at = t + 1
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step(loss=loss) if l3rs else opt.step()
        window.append(float(loss.detach()))
        if (t + 1) % stride == 0:
            train_curve.append([t + 1, sum(window) / len(window)])
            window = []
        if t + 1 in points:
            held_curve.append([t + 1, *held_out(problem, opt)])
            lr_curve.append([t + 1, opt.param_groups[0]["lr"]])
    return {"train_curve": train_curve, "held_curve": held_curve, "lr_curve": lr_curve, "diverged_at": diverged_at}


def _train_with_trainer(
    problem: Problem, opt: Any, factor: Any, steps: int, points: list[int], l3rs: bool, seed: int
) -> dict:
    """The same run through ``transformers.Trainer`` (its data loader draws the batches,
    seeded; L3RS through :class:`~hf_l3rs.trainer_plugins.L3RSTrainer`, the documented path)."""
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    from hf_l3rs.trainer_plugins import L3RSTrainer

    held_curve, train_curve, lr_curve = [], [], []
    stride = max(1, steps // 100)

    class Record(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step + 1 in points:
                lr_curve.append([state.global_step + 1, opt.param_groups[0]["lr"]])

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                train_curve.append([state.global_step, float(logs["loss"])])

        def on_step_end(self, args, state, control, **kw):
            if state.global_step in points:
                held_curve.append([state.global_step, *held_out(problem, opt)])

    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=problem.batch_size,
            max_steps=steps,
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            logging_strategy="steps",
            logging_steps=stride,
            seed=seed,
            data_seed=seed,
            disable_tqdm=True,
            learning_rate=opt.param_groups[0]["lr"],
            lr_scheduler_type="constant",
            dataloader_num_workers=0,
        )
        kwargs = {
            "model": problem.model,
            "args": args,
            "train_dataset": problem.train_examples,
            "callbacks": [Record()],
        }
        if l3rs:
            trainer = L3RSTrainer(optimizers=(opt, None), **kwargs)
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
            trainer = Trainer(optimizers=(opt, sched), **kwargs)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    final = held_curve[-1][1] if held_curve else math.nan
    return {
        "train_curve": train_curve,
        "held_curve": held_curve,
        "lr_curve": lr_curve,
        "diverged_at": None if math.isfinite(final) else steps,
    }


def initial_weights(model: torch.nn.Module) -> str:
    """First 12 hex digits of the SHA-256 of a model's state (parameters and buffers, in order):
    what the report checks to say every optimizer of a case and seed started from the same
    weights. The checkpoints are built on first use and differ between CPUs (design §4.0)."""
    digest = hashlib.sha256()
    for name, t in model.state_dict().items():
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


@functools.cache
def _cpuinfo() -> str:
    """Linux's /proc/cpuinfo, read once per process ("" elsewhere)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpuinfo_field(cpuinfo: str, key: str) -> str | None:
    """The value of the first ``key`` line of a /proc/cpuinfo text."""
    return next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith(key)), None)


def machine() -> str:
    """The CPU and torch a run was computed with (figures of the same seed differ between CPUs)."""
    import platform

    cpu = _cpuinfo_field(_cpuinfo(), "model name") or platform.processor() or platform.machine()
    return f"{cpu}, torch {torch.__version__}"


def native_bfloat16(cpuinfo: str | None = None) -> bool | None:
    """Whether the CPU computes bfloat16 natively (avx512_bf16 or amx_bf16 among Linux's flags);
    None where the flags cannot be read. ``torch.optim.Muon`` orthogonalises in bfloat16, which an
    AVX2-only CPU emulates: 0.5 s a step on the 784-256 MLP of the dev split (AMD EPYC, 2026-12-07)."""
    flags = _cpuinfo_field(_cpuinfo() if cpuinfo is None else cpuinfo, "flags")
    if flags is None:
        return None
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def run_one(case: Case, config: PeerConfig, seed: int, role: str, curve_points: int = 12) -> dict[str, Any]:
    """One training run; the record the report reads."""
    start = time.perf_counter()
    problem = build_problem(case, seed, role)
    start_weights = initial_weights(problem.model)
    torch.manual_seed(seed)
    opt, factor = build(config, problem.model, case.steps, head=problem.head, trainer=case.trainer)
    settings = check_settings(config, opt)
    points = curve_steps(case.steps, curve_points)
    l3rs = config.peer == "l3rs"
    if case.trainer:
        out = _train_with_trainer(problem, opt, factor, case.steps, points, l3rs, seed)
    else:
        out = _train_plain(problem, opt, factor, case.steps, points, l3rs)
    check_schedule(config, out["lr_curve"], settings, factor_of(config, case.steps))
    if out["diverged_at"] is not None or not out["held_curve"]:
        loss, acc = math.inf, problem.chance_accuracy
    else:
        _, loss, acc = out["held_curve"][-1]
        if not math.isfinite(loss):
            loss, acc = math.inf, problem.chance_accuracy
    return {
        "case": case.name,
        "role": role,
        "seed": seed,
        "steps": case.steps,
        "config": config.to_dict(),
        "key": config.key,
        "declared": config.declared(),
        "settings": settings,
        "loss": loss,
        "accuracy": acc,
        "diverged": out["diverged_at"] is not None or not math.isfinite(loss),
        **out,
        "seconds": round(time.perf_counter() - start, 2),
        "suite": fingerprint([case]),
        "weights_version": weights_version(config.weights) if config.weights else None,
        "initial_weights": start_weights,
        "machine": machine(),
    }


def factor_of(config: PeerConfig, steps: int):
    """The schedule the report prints for ``config`` (independent of what :func:`build` returned)."""
    return schedule_factor(config.declared().get("schedule", "constant"), steps)


def check_schedule(config: PeerConfig, lr_curve: list, settings: list[dict[str, Any]], factor) -> None:
    """The first group's rate at each recorded step must be its initial rate times the printed
    schedule at that step (the rate used by the step just taken)."""
    if config.peer == "l3rs" or not lr_curve:
        return
    base = settings[0]["lr"]
    for step, lr in lr_curve:
        if not math.isclose(lr, base * factor(step - 1), rel_tol=1e-6, abs_tol=1e-12):
            raise SettingsMismatch(
                f"{config.key}: at step {step} the rate was {lr:g}, but the report's schedule "
                f"{config.declared().get('schedule')} gives {base * factor(step - 1):g}"
            )


# ------------------------------------------------------------------ storage
def run_path(output: Path, case: Case, config: PeerConfig, seed: int, role: str) -> Path:
    return output / "runs" / case.name / role / f"{config.key}-seed{seed}.json"


def weights_version(weights: str) -> str:
    """First 10 hex digits of the SHA-256 of the weights' safetensors and config files and of
    the update rule's version (``optim.rule.RULE_VERSION``): any change of meta-weights, config
    or of the numbers a step computes is a new version, scored anew."""
    from hf_l3rs.optim.hub import resolve
    from hf_l3rs.optim.rule import RULE_VERSION

    folder = Path(resolve(weights))
    digest = hashlib.sha256()
    for name in ("model.safetensors", "config.json"):
        digest.update((folder / name).read_bytes())
    if RULE_VERSION > 1:  # rule 1 versions keep the identifiers they were scored under
        digest.update(f"rule {RULE_VERSION}".encode())
    return digest.hexdigest()[:10]


def is_current(record: dict[str, Any], case: Case) -> bool:
    """A stored run counts only for the current case definition and, for L3RS, the current
    version of its weights (a run of ``l3rs-general`` before its config changed is not one of
    ``l3rs-general`` now). Records without the digest of their initial weights are older than
    the check that pairs them and do not count."""
    if record.get("suite") != fingerprint([case]) or "initial_weights" not in record:
        return False
    weights = record.get("config", {}).get("weights")
    return not weights or record.get("weights_version") == weights_version(weights)


def load_runs(output: Path, case: Case) -> list[dict[str, Any]]:
    """Every stored run of ``case`` that :func:`is_current`."""
    folder = output / "runs" / case.name
    runs = []
    for path in sorted(folder.glob("*/*.json")) if folder.is_dir() else []:
        record = json.loads(path.read_text())
        if is_current(record, case):
            runs.append(_restore(record))
    return runs


def _restore(record: dict[str, Any]) -> dict[str, Any]:
    record["loss"] = math.inf if record["loss"] is None else record["loss"]
    return record


def _write(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {**record, "loss": None if not math.isfinite(record["loss"]) else record["loss"]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(clean, indent=1, default=_jsonable))
    os.replace(tmp, path)  # atomic: a kill never leaves half a record


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, torch.Tensor):
        return x.item() if x.numel() == 1 else x.tolist()
    return str(x)


def _job(args: tuple) -> tuple[str, dict[str, Any]]:
    case, config, seed, role, points, path = args
    torch.set_num_threads(1)
    record = run_one(case, config, seed, role, points)
    _write(Path(path), record)
    return path, record


def execute(jobs: list[tuple], processes: int, desc: str, progress: bool = True) -> None:
    from tqdm.auto import tqdm

    if not jobs:
        return
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, dynamic_ncols=True)
    if processes <= 1:
        torch_threads = torch.get_num_threads()
        try:
            for j in jobs:
                _job(j)
                bar.update()
        finally:
            torch.set_num_threads(torch_threads)
    else:
        import multiprocessing

        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            for _ in pool.map(_job, jobs):
                bar.update()
    bar.close()


def pending_jobs(
    output: Path, case: Case, configs: list[PeerConfig], seeds, role: str, curve_points: int
) -> list[tuple]:
    """The runs of ``configs`` × ``seeds`` not stored yet for the current case and weights
    version (:func:`is_current`), as :func:`execute`'s jobs."""
    out = []
    for c in configs:
        for s in seeds:
            path = run_path(output, case, c, s, role)
            if not (path.is_file() and is_current(json.loads(path.read_text()), case)):
                out.append((case, c, s, role, curve_points, str(path)))
    return out


def run_case(
    case: Case,
    profile: plan.Profile,
    output: Path,
    processes: int = 1,
    weights: str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Tune (rounds until every winner is interior or out of extensions), then score."""
    round_ = 0
    while True:
        todo = plan.next_tuning(case, profile, plan.tune_results(load_runs(output, case)))
        jobs = pending_jobs(output, case, todo, profile.tune_seeds, "tune", profile.curve_points)
        if not todo:
            break
        round_ += 1
        execute(jobs, processes, f"{case.name}: tuning round {round_}", progress)
        if not jobs:  # every run stored already but the plan still asks: nothing more can change
            break
    chosen = plan.scoring(case, profile, plan.tune_results(load_runs(output, case)), weights)
    jobs = pending_jobs(output, case, chosen, profile.score_seeds, "score", profile.curve_points)
    execute(jobs, processes, f"{case.name}: scoring", progress)
    return load_runs(output, case)
