"""Command line of the meta-trainer (``examples/metatrain.py``, ``hf-l3rs metatrain``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hf_l3rs.meta.config import MetaTrainConfig


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(description="Meta-train L3RS with NES (Accelerate).")
    p.add_argument("--config", required=True, help="YAML meta-training config")
    p.add_argument("--output", default=None, help="output folder (default: runs/<name>)")
    p.add_argument("--resume", action="store_true", help="continue from the folder's checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the run the output folder holds")
    p.add_argument("--generations", type=int, default=None, help="override config.generations")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--expect-processes", type=int, default=None, help="fail unless the run has this many")
    p.add_argument("--no-trackers", action="store_true", help="disable TensorBoard logging")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="build everything and run ONE generation at stand-in sizes (2 candidates, 1 task, 2 steps)",
    )
    p.add_argument("--dataset", default=None, help="override family_kwargs.dataset (e.g. a stand-in folder)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, nested keys with dots, the value as YAML (repeatable): "
        "--set nes.sigma=0.02 --set family_kwargs.k_max=50",
    )
    return p


def run(args: argparse.Namespace) -> None:
    from hf_l3rs.meta.config import MetaTrainConfig
    from hf_l3rs.meta.trainer import MetaTrainer
    from hf_l3rs.parallel import shutdown

    overrides = {"generations": args.generations, "threads": args.threads, "expect_processes": args.expect_processes}
    if args.no_trackers:
        overrides["trackers"] = []
    config = MetaTrainConfig.from_yaml(args.config, args.set, **overrides)
    if args.dataset is not None:
        config.family_kwargs = {**config.family_kwargs, "dataset": args.dataset}
    if args.dry_run:
        config = dry_run_config(config)
    output = Path(args.output or Path("runs") / config.name)
    trainer = MetaTrainer(config, output)
    result = trainer.run(resume=args.resume, overwrite=args.overwrite)
    if trainer.accelerator.is_main_process:
        if result["stopped"]:
            print(f"stopped by SIGTERM at generation {result['generation']}; continue with --resume --output {output}")
        else:
            print(
                f"done: generation {result['generation']}, best validation fitness {result['best_val']:.4g}; "
                f"meta-weights in {output / 'best'} and {output / 'final'}"
            )
    shutdown(trainer.accelerator)


def dry_run_config(config: MetaTrainConfig) -> MetaTrainConfig:
    """The same run, shrunk to one generation that any machine finishes in minutes."""
    from hf_l3rs.meta.config import MetaTrainConfig

    data = config.to_dict()
    data.update(
        generations=1,
        tasks_per_generation=1,
        val_tasks=1,
        val_every=1,
        checkpoint_every=1,
        nes={**config.nes, "popsize": 2},
        name=f"{config.name}-dry-run",
    )
    kw = dict(data["family_kwargs"])
    for key, value in (
        ("k_min", 2),
        ("k_max", 2),
        ("batch_size", 4),
        ("image_size", 64),
        ("train_per_class", 2),
        ("eval_per_class", 2),
    ):
        if key in kw:
            kw[key] = value
    data["family_kwargs"] = kw
    return MetaTrainConfig.from_dict(data)


def main(argv: list[str] | None = None) -> None:
    run(build_parser().parse_args(argv))
