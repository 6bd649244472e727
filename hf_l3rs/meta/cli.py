"""Command line of the meta-trainer (``examples/metatrain.py``, ``hf-l3rs metatrain``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_l3rs.meta.config import MetaTrainConfig


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(description="Meta-train L3RS with NES (Accelerate).")
    p.add_argument("--config", required=True, help="YAML meta-training config")
    p.add_argument("--output", default=None, help="output folder (default: runs/<name>)")
    p.add_argument("--resume", action="store_true", help="continue from the folder's checkpoint")
    p.add_argument("--generations", type=int, default=None, help="override config.generations")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--expect-processes", type=int, default=None, help="fail unless the run has this many")
    p.add_argument("--no-trackers", action="store_true", help="disable TensorBoard logging")
    return p


def run(args: argparse.Namespace) -> None:
    from hf_l3rs.meta.trainer import MetaTrainer

    overrides = {"generations": args.generations, "threads": args.threads, "expect_processes": args.expect_processes}
    if args.no_trackers:
        overrides["trackers"] = []
    config = MetaTrainConfig.from_yaml(args.config, **overrides)
    output = Path(args.output or Path("runs") / config.name)
    trainer = MetaTrainer(config, output)
    result = trainer.run(resume=args.resume)
    if trainer.accelerator.is_main_process:
        print(
            f"done: generation {result['generation']}, best validation fitness {result['best_val']:.4g}; "
            f"meta-weights in {output / 'best'} and {output / 'final'}"
        )


def main(argv: list[str] | None = None) -> None:
    run(build_parser().parse_args(argv))
