"""``MetaTrainConfig``: one YAML file describes a meta-training run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hf_l3rs.meta.strategy import NESParams
from hf_l3rs.optim.config import ConfigError, L3RSConfig, reject_unknown_fields
from hf_l3rs.tasks.inner_loop import OBJECTIVES

#: Accelerate's experiment trackers (``Accelerator(log_with=...)``) -> the module each needs.
TRACKERS = {
    "tensorboard": "tensorboard",
    "trackio": "trackio",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "comet_ml": "comet_ml",
    "aim": "aim",
    "clearml": "clearml",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
}


@dataclass
class MetaTrainConfig:
    name: str = "l3rs"
    family: str = "two_moons_mlp"
    family_kwargs: dict[str, Any] = field(default_factory=dict)
    l3rs: dict[str, Any] = field(default_factory=dict)
    nes: dict[str, Any] = field(default_factory=dict)
    generations: int = 100
    tasks_per_generation: int = 2
    objective: str = "final_loss"
    #: During meta-training, a run whose final evaluation loss exceeds this many times its
    #: first training loss counts as diverged (worst fitness), like a NaN. Off by default;
    #: for families where an unstable optimizer ends finite but huge (ill-conditioned regression).
    blowup_factor: float | None = None
    #: Meta-network parameter name -> multiple of σ and of the meta-step at which NES searches
    #: it (names as in ``L3RSNet.named_parameters()``: ``hyper_raw`` holds the base directions'
    #: β/ε/λ, ``biases.2`` the output bias of the default 2-hidden-layer MLP). Empty = the paper's
    #: uniform search. For the few coordinates with a global effect; see docs/adr/0006
    #: ("Search scales").
    search_scales: dict[str, float] = field(default_factory=dict)
    val_every: int = 10
    val_tasks: int = 8
    checkpoint_every: int = 10
    threads: int | None = None
    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])
    expect_processes: int | None = None
    seed: int = 0
    #: Meta-weights (folder, Hub id or bundled name) whose θ and config start the search
    #: instead of a fresh network; an ``l3rs`` block then overrides only fields that do not
    #: change the network's shape (e.g. switching rate adaptation on for the new run).
    #: For continuing a shipped rule on a new task mixture.
    init_from: str | None = None
    #: Which learned optimizer NES trains: ``l3rs`` (the product) or one registered by a module
    #: in ``plugins`` (``hf_l3rs.optim.learned``; e.g. ``velo-lite`` from ``experiments.velo``),
    #: configured by the ``learned`` block.
    learned_optimizer: str = "l3rs"
    learned: dict[str, Any] = field(default_factory=dict)
    #: Modules imported before the config is checked (they register learned optimizers).
    plugins: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.generations < 1:
            raise ConfigError("MetaTrainConfig.generations must be >= 1")
        if self.tasks_per_generation < 1:
            raise ConfigError("MetaTrainConfig.tasks_per_generation must be >= 1")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"MetaTrainConfig.objective must be one of {OBJECTIVES}, got {self.objective!r}")
        for name in ("val_every", "checkpoint_every", "val_tasks"):
            if getattr(self, name) < 1:
                raise ConfigError(f"MetaTrainConfig.{name} must be >= 1")
        if self.blowup_factor is not None and not self.blowup_factor > 1:
            raise ConfigError(f"MetaTrainConfig.blowup_factor must be > 1 (or null), got {self.blowup_factor!r}")
        if not isinstance(self.search_scales, dict):
            raise ConfigError("MetaTrainConfig.search_scales must be a mapping {parameter name: scale}")
        for name, scale in self.search_scales.items():
            if not (isinstance(scale, (int, float)) and 0 < scale < float("inf")):
                raise ConfigError(f"MetaTrainConfig.search_scales[{name!r}] must be a finite number > 0, got {scale!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("MetaTrainConfig.threads must be >= 1")
        unknown = set(self.trackers) - set(TRACKERS)
        if unknown:
            raise ConfigError(
                f"MetaTrainConfig.trackers: unsupported {sorted(unknown)} (supported: {sorted(TRACKERS)})"
            )
        if self.init_from is not None:
            from hf_l3rs.optim.hub import SHAPE_FIELDS

            shaped = sorted(set(self.l3rs) & SHAPE_FIELDS - {"directions"})  # load_net checks those
            if shaped:
                raise ConfigError(
                    f"MetaTrainConfig.l3rs: with init_from only fields that keep the network's shape may "
                    f"change; {shaped} would not fit the starting meta-weights"
                )
        if self.learned_optimizer != "l3rs":
            if self.l3rs or self.init_from or self.search_scales:
                raise ConfigError(
                    f"MetaTrainConfig: {self.learned_optimizer} takes a learned block, not l3rs/init_from/search_scales"
                )
            self.make_learned_net()
        elif self.learned:
            raise ConfigError("MetaTrainConfig: a learned block needs a learned_optimizer other than l3rs")
        self.l3rs_config()  # validates the nested blocks, naming their fields
        self.nes_params()

    def l3rs_config(self) -> L3RSConfig:
        try:
            return L3RSConfig.from_dict(dict(self.l3rs))
        except ConfigError as exc:
            raise ConfigError(f"MetaTrainConfig.l3rs: {exc}") from exc

    def make_learned_net(self) -> Any:
        """A fresh network of the registered ``learned_optimizer`` from the ``learned`` block."""
        import hf_l3rs.optim.learned as learned

        try:
            learned.import_plugins(list(self.plugins))
        except ImportError as exc:
            raise ConfigError(f"MetaTrainConfig.plugins: cannot import {exc.name!r} ({exc})") from exc
        try:
            spec = learned.by_name(self.learned_optimizer)
        except KeyError as exc:
            raise ConfigError(f"MetaTrainConfig.learned_optimizer: {exc.args[0]}") from None
        try:
            return spec.make_net(dict(self.learned), self.seed)
        except ConfigError as exc:
            raise ConfigError(f"MetaTrainConfig.learned: {exc}") from exc

    def nes_params(self) -> NESParams:
        reject_unknown_fields(NESParams, self.nes, "MetaTrainConfig.nes")
        values = dict(self.nes)
        values.setdefault("seed", self.seed)
        if "adam_betas" in values:
            values["adam_betas"] = tuple(values["adam_betas"])
        try:
            return NESParams(**values)
        except ValueError as exc:
            raise ConfigError(f"MetaTrainConfig.nes: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetaTrainConfig:
        if not isinstance(data, dict):
            raise ConfigError("a meta-training config must be a mapping")
        reject_unknown_fields(cls, data, "meta-training config")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path, settings: list[str] | None = None, **overrides: Any) -> MetaTrainConfig:
        """A YAML config; ``settings`` are command-line overrides ``KEY.PATH=VALUE`` (the value read
        as YAML) merged into it, e.g. ``nes.sigma=0.02`` or ``family_kwargs.k_max=50``."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"meta-training config {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
        for setting in settings or []:
            apply_setting(data, setting)
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc


def apply_setting(data: dict[str, Any], setting: str) -> None:
    """Merge one ``KEY.PATH=VALUE`` into a config's nested mapping (the value read as YAML), so
    that ``nes.sigma=0.02`` changes sigma and keeps the rest of the ``nes`` block."""
    key, sep, raw = setting.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {setting!r}: expected KEY=VALUE or KEY.SUBKEY=VALUE, e.g. nes.sigma=0.02")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {setting!r}: the value is not valid YAML ({exc})") from exc
    if isinstance(value, str):  # YAML 1.1 reads 3e-3 (no dot) as a string: a number was meant
        try:
            value = float(raw)
        except ValueError:
            pass
    *parents, last = key.split(".")
    node = data
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(f"--set {setting!r}: {where} is {type(child).__name__}, not a block of settings")
        node = child
    node[last] = value
