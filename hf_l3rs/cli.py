"""``hf-l3rs``: prepare the embedded domains, pretrain checkpoints, evaluate, meta-train."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_CHECKPOINTS = Path("outputs") / "checkpoints"


def _prepare(args: argparse.Namespace) -> None:
    from hf_l3rs.tasks.domains import prepare_domain

    for name in args.domains:
        start = time.perf_counter()
        folder = prepare_domain(name, root=args.root)
        print(f"{name}: {folder} ({time.perf_counter() - start:.1f} s)")


def _pretrain(args: argparse.Namespace) -> None:
    from hf_l3rs.tasks.pretrain import pretrain, pretrain_config_for

    for name in args.domains:
        if name == TEXT_CORPUS:
            from hf_l3rs.tasks.text_pretrain import DecoderPretrainConfig, pretrain_decoder

            out = Path(args.output) / name
            steps = {"steps": args.steps} if args.steps else {}
            report = pretrain_decoder(DecoderPretrainConfig(**steps), out)
            print(
                f"{name}: {out / 'model.safetensors'}: decoder of {report['parameters']:,} parameters, held-out "
                f"{report['heldout_bits_per_byte']:.2f} bits per byte ({report['seconds']} s)"
            )
            continue
        cfg = pretrain_config_for(name, steps=args.steps, model=args.model)
        out = Path(args.output) / name
        report = pretrain(cfg, out)
        print(
            f"{name}: {out / 'model.safetensors'}: held-out accuracy on {report['num_classes']} pretrain classes "
            f"{100 * report['heldout_accuracy']:.1f}% ({report['seconds']} s)"
        )


def _relaunch(processes: int) -> None:
    """Re-launch this very command on ``processes`` CPU processes (the correct launch,
    checked) unless it already runs under a launcher."""
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        import subprocess

        from hf_l3rs.launch import launch_command

        cmd, env = launch_command(str(Path(__file__).resolve()), processes, list(sys.argv[1:]), checked=False)
        raise SystemExit(subprocess.run(cmd, env=env).returncode)


def _accelerator(processes: int):
    """The launched processes' Accelerator (None for one process), one torch thread each."""
    if processes <= 1:
        return None
    import torch
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    if accelerator.num_processes != processes:
        raise SystemExit(f"expected {processes} processes, this one sees {accelerator.num_processes}")
    torch.set_num_threads(1)
    return accelerator


def _default_checkpoints(folder: str) -> dict[str, str]:
    ckpt = Path(folder)
    return {"D1": str(ckpt / "kanji" / "model.safetensors"), "D2": str(ckpt / "clipart" / "model.safetensors")}


def _config(cls: type, args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
    """An evaluation config (``EvalConfig``/``TunedConfig``) from ``--config`` or the embedded
    defaults, with the command line's overrides, its checkpoints checked."""
    if args.config:
        cfg = cls.from_yaml(args.config, **overrides)
    else:
        given = {k: v for k, v in overrides.items() if v is not None}
        cfg = cls(checkpoints=_default_checkpoints(args.checkpoints), **given)
    _check_checkpoints(cfg.checkpoints, cfg.evaluations)
    return cfg


def _check_checkpoints(checkpoints: dict[str, str], wanted: list[str]) -> None:
    from hf_l3rs.evaluation.protocol import EVALUATIONS

    needed = {EVALUATIONS[e][0] for e in wanted} - {None}
    for key in sorted(needed):
        path = checkpoints.get(key)
        if path is None or not Path(path).is_file():
            raise SystemExit(f"checkpoint for {key} not found: {path} (run `hf-l3rs pretrain` first)")


def named_entries(given: list[str] | None, kind: str) -> dict[str, str | None] | None:
    """``--l3rs`` / ``--l3rs-probe`` values, ``[LABEL=]SOURCE`` each, as label → source
    (``untrained`` → None; no label: ``KIND (folder name)``); None when none were given."""
    if not given:
        return None
    out: dict[str, str | None] = {}
    for entry in given:
        label, _, source = entry.rpartition("=")
        out[label or f"{kind} ({Path(source).name})"] = None if source == "untrained" else source
    return out


def _benchmark(args: argparse.Namespace) -> None:
    if args.suite:
        from hf_l3rs.benchmark.main import run_suite

        result = run_suite(
            args.suite,
            args.profile,
            Path(args.output if args.output != "outputs/benchmark" else f"outputs/suite-{args.suite}-{args.profile}"),
            processes=args.processes,
            weights=args.weights,
            names=args.cases,
        )
        from hf_l3rs.benchmark.report import render_markdown

        print(render_markdown(result))
        return
    from hf_l3rs.evaluation.tuned import TunedBenchmark, TunedConfig
    from hf_l3rs.evaluation.tuned_report import markdown, save

    _relaunch(args.processes)
    overrides = {
        "l3rs": named_entries(args.l3rs, "L3RS"),
        "l3rs_probes": named_entries(args.l3rs_probe, "L3RS probe"),
        "val_tasks": args.val_tasks,
        "test_tasks": args.test_tasks,
        "horizons": args.horizons,
        "evaluations": args.evaluations,
        "families": args.families,
    }
    cfg = _config(TunedConfig, args, overrides)
    if args.eval_batchnorm:
        cfg = cfg.with_task_option("eval_batchnorm", args.eval_batchnorm)
    previous = None
    saved = Path(args.output) / "tuned.json"
    if args.reuse_baselines and saved.is_file():
        import json

        previous = json.loads(saved.read_text())
    accelerator = _accelerator(args.processes)
    results = TunedBenchmark(cfg).run(accelerator, previous=previous)
    if accelerator is None or accelerator.is_main_process:
        paths = save(results, args.output)
        print(markdown(results))
        print(f"wrote {', '.join(str(p) for p in paths.values())} ({results['wall_seconds']} s)")
    from hf_l3rs.parallel import shutdown

    shutdown(accelerator)


def _evaluate(args: argparse.Namespace) -> None:
    if args.command == "evaluate":  # the name of HF's `evaluate` library: renamed, alias kept for one release
        import warnings

        warnings.warn("`hf-l3rs evaluate` is deprecated: use `hf-l3rs paper-protocol`", FutureWarning, stacklevel=1)
    from hf_l3rs.evaluation.protocol import EvalConfig, Protocol
    from hf_l3rs.evaluation.report import markdown, save

    _relaunch(args.processes)
    overrides = {
        "l3rs": args.l3rs,
        "num_tasks": args.num_tasks,
        "horizons": args.horizons,
        "evaluations": args.evaluations,
        "l3rs_base_lr": args.l3rs_base_lr,
    }
    cfg = _config(EvalConfig, args, overrides)
    accelerator = _accelerator(args.processes)
    results = Protocol(cfg).run(accelerator)
    if accelerator is None or accelerator.is_main_process:
        paths = save(results, args.output)
        print(markdown(results))
        print(
            f"wrote {', '.join(str(p) for p in paths.values())} and plots in {args.output} "
            f"({results['wall_seconds']} s on {results['processes']} process(es))"
        )
    from hf_l3rs.parallel import shutdown

    shutdown(accelerator)


def _push(args: argparse.Namespace) -> None:
    from hf_l3rs.optim.hub import load_net, push_to_hub

    if Path(args.repo_id).is_dir() and not Path(args.folder).is_dir():  # the order before 0.2: FOLDER REPO_ID
        import warnings

        warnings.warn(
            "hf-l3rs push FOLDER REPO_ID is deprecated: write `hf-l3rs push REPO_ID FOLDER` (as `hf upload`)",
            FutureWarning,
            stacklevel=1,
        )
        args.folder, args.repo_id = args.repo_id, args.folder
    load_net(args.folder)  # refuse to upload a folder that would not load
    url = push_to_hub(
        args.folder,
        args.repo_id,
        private=args.private or None,
        commit_message=args.commit_message,
        create_pr=args.create_pr,
        branch=args.branch,
    )
    print(url)


def _download(args: argparse.Namespace) -> None:
    import shutil

    from hf_l3rs.optim.hub import load_net, resolve

    folder = resolve(args.repo_id, revision=args.revision, cache_dir=args.cache_dir)
    net = load_net(folder)  # validates config and tensors
    if args.local_dir:
        target = Path(args.local_dir)
        target.mkdir(parents=True, exist_ok=True)
        for f in folder.iterdir():
            if f.is_file():
                shutil.copy(f, target / f.name)
        folder = target
    print(f"{folder} ({net.num_meta_parameters:,} meta-parameters, directions {', '.join(net.config.directions)})")


#: The embedded domains of hf_l3rs.tasks.datasets (spelled out so ``--help`` does not import
#: torch; tests/test_domains.py checks they agree).
EMBEDDED = ("kanji", "clipart", "fashion")
#: The domains with a pretrained checkpoint (fashion is for evaluation only).
PRETRAINED = ("kanji", "clipart")
#: The text corpus the decoder of the ``text`` task family is pretrained on (not a default:
#: ``hf-l3rs pretrain --domains pydoc``; tasks/text_pretrain.py).
TEXT_CORPUS = "pydoc"


def build_parser() -> argparse.ArgumentParser:
    from hf_l3rs import __version__

    ap = argparse.ArgumentParser(prog="hf-l3rs", description=__doc__)
    ap.add_argument("--version", action="version", version=f"hf-l3rs {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare-data", help="render the embedded domains into HF datasets (cached)")
    p.add_argument("--domains", nargs="+", default=list(EMBEDDED), choices=EMBEDDED, help="domains to render")
    p.add_argument("--root", default=None, help="cache folder (default ~/.cache/hf_l3rs/domains)")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("pretrain", help="pretrain a timm model on each domain's pretrain classes")
    p.add_argument(
        "--domains",
        nargs="+",
        default=list(PRETRAINED),
        help=f"domains to pretrain on ({TEXT_CORPUS!r}: the decoder of the text tasks)",
    )
    p.add_argument("--model", default=None, help="timm model name (default l3rs_resnet_tiny)")
    p.add_argument("--steps", type=int, default=None, help="override the calibrated step count")
    p.add_argument("--output", default=str(DEFAULT_CHECKPOINTS), help="folder for <domain>/model.safetensors")
    p.set_defaults(func=_pretrain)

    p = sub.add_parser(
        "paper-protocol",
        aliases=["evaluate"],
        help="the paper's evaluations A-F against the Adam baselines ('evaluate' is a deprecated alias)",
    )
    p.add_argument("--config", default=None, help="YAML EvalConfig (default: embedded domains)")
    p.add_argument("--checkpoints", default=str(DEFAULT_CHECKPOINTS), help="folder of pretrained domain checkpoints")
    p.add_argument("--l3rs", default=None, help="meta-weights folder or Hub id (default: untrained L3RS)")
    p.add_argument("--l3rs-base-lr", type=float, default=None, help="override the meta-weights' base rate η₀")
    p.add_argument("--num-tasks", type=int, default=None, help="test tasks per cell")
    p.add_argument("--horizons", type=int, nargs="+", default=None, help="training steps T")
    p.add_argument("--evaluations", nargs="+", default=None, help="any of A B C D E")
    p.add_argument("--processes", type=int, default=1, help="CPU processes (relaunched through accelerate)")
    p.add_argument("--output", default="outputs/evaluation", help="folder for tables, JSON, CSV and plots")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "benchmark",
        help="L3RS against hand-designed baselines tuned per horizon on validation tasks (paired statistics)",
    )
    p.add_argument("--config", default=None, help="YAML TunedConfig (default: embedded domains, evaluation A)")
    p.add_argument("--checkpoints", default=str(DEFAULT_CHECKPOINTS), help="folder of pretrained domain checkpoints")
    p.add_argument(
        "--l3rs",
        nargs="+",
        default=None,
        help="L3RS entries as [LABEL=]SOURCE (meta-weights folder, Hub id or 'untrained'); the first gets the speedups",
    )
    p.add_argument(
        "--l3rs-probe",
        nargs="+",
        default=None,
        help="L3RS entries run as linear probes (only the head trains, on the frozen body's features), [LABEL=]SOURCE",
    )
    p.add_argument("--val-tasks", type=int, default=None, help="validation tasks per tuning run")
    p.add_argument("--test-tasks", type=int, default=None, help="test tasks per cell (>= 20 for reporting)")
    p.add_argument("--horizons", type=int, nargs="+", default=None, help="training steps T")
    p.add_argument("--evaluations", nargs="+", default=None, help="A B C D E (default A)")
    p.add_argument("--families", nargs="+", default=None, help="baseline families, e.g. adam-cos nesterov-const")
    p.add_argument("--processes", type=int, default=1, help="CPU processes (relaunched through accelerate)")
    p.add_argument("--output", default="outputs/benchmark", help="folder for tuned.md, tuned.json and plots")
    p.add_argument(
        "--reuse-baselines",
        action="store_true",
        help="reuse the tuned baselines of OUTPUT/tuned.json when its configuration matches: only the "
        "families it does not have and the L3RS entries whose label or meta-weights are new run",
    )
    p.add_argument(
        "--suite",
        choices=("dev", "test"),
        default=None,
        help="run the frozen suite's split against the LR-free and tuned peers (test: once per weights version)",
    )
    p.add_argument("--profile", choices=("quick", "standard", "full"), default="quick", help="how hard peers are tuned")
    p.add_argument("--cases", nargs="+", default=None, help="only these cases of the split")
    p.add_argument("--weights", default=None, help="L3RS meta-weights to score (default: the bundled default)")
    _eval_batchnorm_argument(p)
    p.set_defaults(func=_benchmark)

    p = sub.add_parser("push", help="upload a meta-weights folder to the Hub (safetensors, JSON and card only)")
    p.add_argument("repo_id", help="Hub repository, e.g. org/l3rs-resnet34 (first, as in `hf upload`)")
    p.add_argument("folder", help="folder written by save_pretrained or a meta-training run (best/, final/)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--branch", default=None, help="push to this branch (created if needed)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.add_argument("--commit-message", default=None, help="commit message")
    p.set_defaults(func=_push)

    p = sub.add_parser("download", help="fetch meta-weights from the Hub into the cache (or a folder) and check them")
    p.add_argument("repo_id", help="Hub repository or bundled name, e.g. org/l3rs-resnet34 or l3rs-general")
    p.add_argument("--revision", default=None, help="branch, tag or commit")
    p.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    p.add_argument("--local-dir", default=None, help="also copy the files into this folder")
    p.set_defaults(func=_download)

    p = sub.add_parser(
        "analyze",
        help="what meta-weights learned: momentum, clipping, schedule, adaptation, mixing (plots + report)",
    )
    p.add_argument("subjects", nargs="+", help="meta-weights (bundled name, folder, Hub id), adam or sgd-momentum")
    p.add_argument("--output", default="outputs/analysis", help="folder for the plots, analysis.md and .json")
    p.add_argument(
        "--task-config",
        default=None,
        help="a meta-training YAML whose task family (e.g. kanji images) is also recorded",
    )
    p.add_argument("--no-classic", action="store_true", help="skip the linear-regression/Rosenbrock/two-moons runs")
    p.set_defaults(func=_analyze)

    p = sub.add_parser(
        "sensitivity",
        help="validation accuracy/loss of meta-weights with the backbone's or head's learned rates scaled",
    )
    p.add_argument("meta_weights", help="meta-weights (bundled name, folder or Hub id)")
    p.add_argument("--config", required=True, help="a meta-training YAML whose members' validation tasks are used")
    p.add_argument("--factors", default="0.5,2,3,5", help="BACKBONE[/HEAD] rate factors, e.g. 2,3,3/0.5 (x1/x1 added)")
    p.add_argument("--horizons", type=int, nargs="+", default=[10, 25, 50], help="training steps T")
    p.add_argument("--tasks", type=int, default=8, help="validation tasks per member")
    p.add_argument("--head-fraction", type=float, default=0.05, help="deepest share of tensors counted as the head")
    p.add_argument("--roles", nargs="+", default=None, help="scale only backbone tensors of these roles (e.g. conv)")
    p.add_argument("--output", default="outputs/sensitivity", help="folder for sensitivity.md, .json and .png")
    p.add_argument(
        "--set",
        nargs="+",
        default=None,
        metavar="FIELD=JSON",
        help="instead of rate factors: compare the meta-weights with these config fields changed (paired, "
        "each member's verdict by the role prior's rule), e.g. --set 'hypergradient_rate=0.2'",
    )
    _eval_batchnorm_argument(p)
    p.set_defaults(func=_sensitivity)

    p = sub.add_parser("env", help="versions and settings to paste into a bug report (as `transformers env`)")
    p.set_defaults(func=lambda a: print(environment_report()))

    p = sub.add_parser("metatrain", help="meta-train L3RS with NES (same as examples/metatrain.py)")
    from hf_l3rs.meta.cli import build_parser as meta_parser

    meta_parser(p)
    p.set_defaults(func=lambda a: __import__("hf_l3rs.meta.cli", fromlist=["run"]).run(a))
    return ap


#: hf_l3rs.tasks.batchnorm.EVAL_BATCHNORM, spelled out so the parser does not import torch
EVAL_BATCHNORM_CHOICES = ("running", "recalibrated")


def _eval_batchnorm_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--eval-batchnorm",
        choices=EVAL_BATCHNORM_CHOICES,
        default=None,
        help="BatchNorm statistics when image tasks are evaluated: the model's running ones (default) or "
        "re-estimated on each task's training images (for every optimizer alike)",
    )


def _research(module: str) -> Any:
    """A module of ``experiments/`` (research, not installed): found from a source checkout."""
    from hf_l3rs.optim.learned import import_plugins

    try:
        import_plugins([module])
    except ModuleNotFoundError:
        raise SystemExit(
            f"hf-l3rs: this verb runs research code ({module}) that is not installed with the package; "
            "run it from a source checkout of hf_l3rs (git clone ...; cd hf_l3rs)."
        ) from None
    return sys.modules[module]


def _analyze(args: argparse.Namespace) -> None:
    report = _research("experiments.analysis.report")
    CLASSIC_TASKS, analyze = report.CLASSIC_TASKS, report.analyze

    image_task = None
    if args.task_config:
        from hf_l3rs.meta.config import MetaTrainConfig

        cfg = MetaTrainConfig.from_yaml(args.task_config)
        image_task = {"family": cfg.family, "family_kwargs": cfg.family_kwargs}
    analyze(args.subjects, args.output, tasks=() if args.no_classic else CLASSIC_TASKS, image_task=image_task)
    print(f"wrote {args.output}/analysis.md and momentum/clipping/schedule/adaptation/mixing.png")


def _sensitivity(args: argparse.Namespace) -> None:
    sensitivity = _research("experiments.analysis.sensitivity")
    parse_factors, rate_sensitivity = sensitivity.parse_factors, sensitivity.rate_sensitivity
    write_report = sensitivity.write_report
    from hf_l3rs.meta.config import MetaTrainConfig
    from hf_l3rs.meta.trainer import build_family
    from hf_l3rs.tasks.registry import with_image_option

    if args.set and args.roles:
        raise ValueError("hf-l3rs sensitivity: --set compares one change; it takes no --roles")
    config = MetaTrainConfig.from_yaml(args.config)
    if args.eval_batchnorm:
        kwargs = with_image_option(config.family, config.family_kwargs, "eval_batchnorm", args.eval_batchnorm)
        config.family_kwargs = kwargs
    family = build_family(config)
    if args.set:
        variant = _research("experiments.analysis.variant")
        overrides = variant.parse_overrides(args.set)
        cells = variant.variant_check(
            args.meta_weights, family, overrides, horizons=args.horizons, num_tasks=args.tasks
        )
        out = variant.write_report(cells, args.meta_weights, overrides, args.output)
        print((out / "variant.md").read_text())
        return
    cells = rate_sensitivity(
        args.meta_weights,
        family,
        factors=parse_factors(args.factors),
        horizons=args.horizons,
        num_tasks=args.tasks,
        head_fraction=args.head_fraction,
        roles=args.roles,
    )
    out = write_report(cells, args.meta_weights, args.output, args.roles)
    print((out / "sensitivity.md").read_text())


def environment_report() -> str:
    """What a bug report needs: library versions, platform, threads, the fused kernels' state
    and the hf_l3rs environment variables."""
    import importlib.metadata
    import platform

    from hf_l3rs import __version__

    lines = [
        f"- hf_l3rs version: {__version__}",
        f"- Platform: {platform.platform()}",
        f"- Python version: {platform.python_version()}",
        f"- CPU count: {os.cpu_count()}",
    ]
    for dist in (
        "torch",
        "transformers",
        "accelerate",
        "timm",
        "datasets",
        "huggingface_hub",
        "peft",
        "safetensors",
        "schedulefree",
        "prodigyopt",
        "dadaptation",
    ):
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        lines.append(f"- {dist} version: {version}")
    try:
        import torch

        from hf_l3rs.optim.fused import fused_unavailable_reason

        lines.append(f"- torch threads: {torch.get_num_threads()}; CUDA available: {torch.cuda.is_available()}")
        reason = fused_unavailable_reason()
        lines.append(
            f"- fused CPU kernels: {'unavailable: ' + reason if reason else 'built on first use, then cached'}"
        )
    except ImportError:
        lines.append("- torch: not importable")
    for var in ("HF_L3RS_VERBOSITY", "HF_L3RS_CACHE", "HF_L3RS_DISABLE_FUSED", "HF_HUB_OFFLINE"):
        lines.append(f"- {var}: {os.environ.get(var, '(unset)')}")
    return "\n".join(["Copy-and-paste the text below in your GitHub issue.", "", *lines])


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # bad input, missing files, Hub failures (HubError): one line, no traceback
        # (HF_L3RS_DEBUG=1 shows it); other RuntimeErrors are bugs and keep theirs
        if os.environ.get("HF_L3RS_DEBUG") or (
            isinstance(exc, RuntimeError) and type(exc).__name__ not in ("HubError", "ProcessCountError")
        ):
            raise
        raise SystemExit(f"hf-l3rs {args.command}: error: {exc}") from None


if __name__ == "__main__":
    main()
