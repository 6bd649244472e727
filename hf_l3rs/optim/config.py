"""``L3RSConfig``: every choice of docs/design.md §1 that a checkpoint must remember."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VARIANTS = ("shared", "global", "per_layer_mlp")
NORMS = ("rms", "l2")
#: Fields added after the first release, with the value that reproduces older checkpoints
#: (a saved config without them loads with these, any other missing field is an error).
ADDED_FIELDS = {
    "hypergradient_rate": 0.0,
    "adaptation_min": 1 / 30,
    "adaptation_max": 30.0,
    "adaptation_target": 0.0,
}
#: Fields removed by ADR 0004 (hand-set options that earned no place on the dev split), with the
#: value that means "off": a saved config that has one at that value loads as before; at another
#: value it loads with a warning naming the field (the checkpoint's steps will differ).
REMOVED_FIELDS = {
    # ADR 0014: the rate adaptation's on/off switch is its rate (0 = off; "none" saved beside a
    # rate is read as rate 0 by migrate_rate_adaptation), its scope per tensor, the distance
    # scale gone (it lost on the dev split), the features' epsilon a constant, the network's
    # initialisation an argument of a fresh network (a loaded checkpoint never used it).
    "rate_adaptation": "hypergradient",
    "adaptation_scope": "component",
    "step_scale": "base_lr",
    "feature_eps": 1e-12,
    "init_output_scale": 0.01,
    "init_adam_mix": 0.9,
    "rate_schedule": "constant",
    "adaptation_signal": "gradient",
    "role_adaptation_min": {},
    "role_adaptation_min_release": 0.0,
    "loss_feature": "raw",
    "init_head_fraction": 0.0,
    "init_head_rate": 1.0,
    "init_backbone_rate": 1.0,
    "role_rate_scale": {},
    "gradient_share_reference": 0.0,
    "gradient_share_max": 8.0,
    "gradient_share_steps": 5,
    "gradient_share_roles": ("conv", "norm", "bias"),
    "gradient_share_boost": {},
    "gradient_share_boost_from": 2.0,
    "gradient_share_boost_steps": 10,
    "gradient_share_boost_horizon": 0.0,
    "gradient_share_boost_horizon_power": 1.0,
    "gradient_share_head_power": 0.0,
    "adapter_steps": "tensor",
    "head_calibration_growth": 1.0,
    "head_calibration_drop": 0.1,
    "head_calibration_max": 100.0,
    "head_calibration_rise": 0.0,
    "head_calibration_backoff": 2,
    "head_calibration_acceleration": 1.0,
}
#: The removed option groups' on/off switches: a saved value other than its REMOVED_FIELDS value
#: was a group that acted (the other removed fields only tuned a group).
REMOVED_SWITCHES = (
    "rate_schedule",
    "init_head_fraction",
    "adaptation_signal",
    "role_adaptation_min",
    "loss_feature",
    "role_rate_scale",
    "gradient_share_reference",
    "adapter_steps",
    "head_calibration_growth",
    "adaptation_scope",
    "step_scale",
    "feature_eps",
)
ROLES = ("conv", "linear", "norm", "bias", "embedding", "other")


def migrate_rate_adaptation(data: dict[str, Any]) -> dict[str, Any]:
    """Configs saved before ADR 0014 switched rate adaptation with ``rate_adaptation``; now a
    rate of 0 is off. ``"none"`` becomes rate 0 (and its unused scope goes with it)."""
    if data.get("rate_adaptation") != "none":
        return data
    data = {k: v for k, v in data.items() if k not in ("rate_adaptation", "adaptation_scope")}
    return {**data, "hypergradient_rate": 0.0}


def drop_removed_fields(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` without the fields ADR 0004 and 0014 removed; a warning names each removed
    group that was switched on (loading without it changes the checkpoint's steps)."""
    data = migrate_rate_adaptation(data)
    acting = sorted(k for k in REMOVED_SWITCHES if k in data and data[k] != REMOVED_FIELDS[k])
    if acting:
        warnings.warn(
            f"{where}: option(s) {acting} were removed in hf_l3rs 0.2 (docs/adr/0004-prune-hand-set-options.md, "
            "0014-config-to-twenty-fields.md: they earned no place on the benchmark's dev split) and are ignored; "
            "this checkpoint now steps without them",
            UserWarning,
            stacklevel=3,
        )
    return {k: v for k, v in data.items() if k not in REMOVED_FIELDS}


#: bounds checked before any tensor is allocated (a corrupted config.json must not ask for terabytes)
MAX_WIDTH = 4096
MAX_LAYERS = 8
MAX_COMPONENTS = 1_000_000
MAX_BASE_LR = 100.0


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


def reject_unknown_fields(cls: type, data: dict[str, Any], where: str) -> None:
    """Raise :class:`ConfigError` naming any key of ``data`` that is not a field of the
    dataclass ``cls`` (a typo must not pass silently as a default)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(names)}")


@dataclass(frozen=True)
class L3RSConfig:
    """Architecture and defaults of one L3RS meta-network.

    ``directions`` are names from the base-direction registry (``hf_l3rs.optim.directions``).
    ``variant`` is ``"shared"`` (the paper's L3RS: one MLP for all components),
    ``"global"`` (one rate and mixing for the whole model) or ``"per_layer_mlp"``.
    ``num_components`` is the component count of the architecture the embedding table
    (and per-layer MLPs) were meta-trained on; ``None`` binds to the first model seen.
    """

    directions: tuple[str, ...] = ("sgd", "adam")
    norm: str = "rms"
    ema_betas: tuple[float, ...] = (0.5, 0.9, 0.99)
    relative_time_points: int = 11
    relative_time_sharpness: float = 10.0
    absolute_time_scales: tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
    embedding: bool = True
    embedding_dim: int = 16
    descriptor: bool = True
    hidden_sizes: tuple[int, ...] = (32, 32)
    variant: str = "shared"
    base_lr: float = 1e-3
    rate_clamp: float = 8.0
    num_components: int | None = None
    hyper_init: dict[str, float] = field(default_factory=dict)
    #: Online correction of each tensor's step size (docs/design.md §1 "Rate adaptation"): a
    #: multiplier a per tensor on its learned rate, log a += ``hypergradient_rate``·(cos(g_t,
    #: m_{t-1}) − ``adaptation_target``) each step (m the Adam momentum, cos the tensor's own), a
    #: kept in [``adaptation_min``, ``adaptation_max``]: it grows while successive gradients agree
    #: and shrinks when they stop agreeing (overshooting), so weights meta-trained on one model find
    #: the step size of another without a learning rate. 0 (the paper's L3RS) switches it off.
    hypergradient_rate: float = 0.0
    adaptation_min: float = 1 / 30
    #: 1 makes the adaptation a brake: it only lowers the learned rates where they overshoot
    #: (the lineage adaptive weights; docs/adr/0006 "No learning rate").
    adaptation_max: float = 30.0
    #: The agreement the adaptation steers to: log a += β·(cos − target). 0 is the greedy
    #: optimum of the last step (Adam-HD); a positive target keeps steps below it (ADR 0013).
    adaptation_target: float = 0.0

    def __post_init__(self) -> None:
        # Lists arrive from JSON/YAML: store tuples so the config stays hashable and frozen.
        for name in ("directions", "ema_betas", "absolute_time_scales", "hidden_sizes"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ConfigError(f"L3RSConfig.{name} must be a sequence, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        self.validate()

    def _check_types(self) -> None:
        """Every field has its annotated type (numbers finite), so that a wrong value is a
        ConfigError naming the field, never a TypeError from deep inside a comparison."""

        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        def integer(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        checks = {
            "float": (number, "a finite number"),
            "int": (integer, "an integer"),
            "bool": (lambda v: isinstance(v, bool), "true or false"),
            "str": (lambda v: isinstance(v, str), "a string"),
            "int | None": (lambda v: v is None or integer(v), "an integer or null"),
            "dict[str, float]": (
                lambda v: isinstance(v, dict) and all(isinstance(k, str) and number(x) for k, x in v.items()),
                "a mapping of names to numbers",
            ),
            "tuple[float, ...]": (lambda v: all(number(x) for x in v), "a list of finite numbers"),
            "tuple[int, ...]": (lambda v: all(integer(x) for x in v), "a list of integers"),
            "tuple[str, ...]": (lambda v: all(isinstance(x, str) for x in v), "a list of names"),
        }
        for f in dataclasses.fields(self):
            check = checks.get(str(f.type))
            value = getattr(self, f.name)
            if check is not None and not check[0](value):
                raise ConfigError(f"L3RSConfig.{f.name} must be {check[1]}, got {value!r}")

    def validate(self) -> None:
        from hf_l3rs.optim.directions import DIRECTIONS

        self._check_types()

        if not self.directions:
            raise ConfigError("L3RSConfig.directions must name at least one base direction")
        for name in self.directions:
            if name not in DIRECTIONS:
                raise ConfigError(
                    f"L3RSConfig.directions: unknown base direction {name!r}; known: {sorted(DIRECTIONS)}"
                )
        if len(set(self.directions)) != len(self.directions):
            raise ConfigError(f"L3RSConfig.directions has duplicates: {self.directions}")
        if self.norm not in NORMS:
            raise ConfigError(f"L3RSConfig.norm must be one of {NORMS}, got {self.norm!r}")
        if not self.hypergradient_rate >= 0:  # _check_types has made every float field a finite number
            raise ConfigError(
                f"L3RSConfig.hypergradient_rate must be >= 0 (0: no rate adaptation), got {self.hypergradient_rate!r}"
            )
        if self.adapts and self.momentum_direction is None:
            raise ConfigError(
                "L3RSConfig.hypergradient_rate > 0 (rate adaptation) reads Adam's momentum: add 'adam' (or a "
                "direction that extends it, e.g. 'shampoo') to directions"
            )
        low, high = self.adaptation_min, self.adaptation_max
        if not 0 < low <= 1 <= high:
            raise ConfigError(
                f"L3RSConfig needs 0 < adaptation_min <= 1 <= adaptation_max < inf, got {low!r} and {high!r}"
            )
        if not -1 < self.adaptation_target < 1:
            raise ConfigError(f"L3RSConfig.adaptation_target must be in (-1, 1), got {self.adaptation_target!r}")
        if self.variant not in VARIANTS:
            raise ConfigError(f"L3RSConfig.variant must be one of {VARIANTS}, got {self.variant!r}")
        for beta in self.ema_betas:
            if not (isinstance(beta, (int, float)) and 0.0 <= beta < 1.0):
                raise ConfigError(f"L3RSConfig.ema_betas: each beta must be in [0, 1), got {beta!r}")
        if self.relative_time_points < 0:
            raise ConfigError("L3RSConfig.relative_time_points must be >= 0")
        for scale in self.absolute_time_scales:
            if not scale > 0:
                raise ConfigError(f"L3RSConfig.absolute_time_scales must be > 0, got {scale!r}")
        if not self.hidden_sizes:
            raise ConfigError("L3RSConfig.hidden_sizes must have at least one layer")
        for h in self.hidden_sizes:
            if not (isinstance(h, int) and 0 < h <= MAX_WIDTH):
                raise ConfigError(
                    f"L3RSConfig.hidden_sizes must be integers in [1, {MAX_WIDTH}] (a tiny MLP), got {h!r}"
                )
        if len(self.hidden_sizes) > MAX_LAYERS:
            raise ConfigError(f"L3RSConfig.hidden_sizes: at most {MAX_LAYERS} layers, got {len(self.hidden_sizes)}")
        if self.embedding and not 0 < self.embedding_dim <= MAX_WIDTH:
            raise ConfigError(f"L3RSConfig.embedding_dim must be in [1, {MAX_WIDTH}] when embedding=True")
        if not (0 < self.base_lr <= MAX_BASE_LR):
            raise ConfigError(
                f"L3RSConfig.base_lr must be in (0, {MAX_BASE_LR:g}] (a per-element step size of normalised "
                f"directions), got {self.base_lr!r}"
            )
        if not self.rate_clamp > 0:
            raise ConfigError(f"L3RSConfig.rate_clamp must be > 0, got {self.rate_clamp!r}")
        if self.num_components is not None and not 0 < self.num_components <= MAX_COMPONENTS:
            raise ConfigError(f"L3RSConfig.num_components must be in [1, {MAX_COMPONENTS}] or None")
        known_hyper = {f"{d}.{h}" for d in self.directions for h in DIRECTIONS[d].hyper_defaults}
        for key in self.hyper_init:
            if key not in known_hyper:
                raise ConfigError(
                    f"L3RSConfig.hyper_init: unknown hyper-parameter {key!r}; known: {sorted(known_hyper)}"
                )

    @property
    def num_features(self) -> int:
        """Width of one component's feature row."""
        n = 3 * len(self.ema_betas) + self.relative_time_points + len(self.absolute_time_scales)
        n += len(self.directions)
        if self.embedding:
            n += self.embedding_dim
        if self.descriptor:
            n += len(ROLES) + 2
        return n

    @property
    def adapts(self) -> bool:
        """Whether rate adaptation is on (a positive ``hypergradient_rate``)."""
        return self.hypergradient_rate > 0

    @property
    def momentum_direction(self) -> str | None:
        """The direction whose Adam momentum (``<name>.exp_avg``) rate adaptation reads: ``adam``
        or the first direction that extends it (``shampoo``); None if there is none."""
        from hf_l3rs.optim.directions import DIRECTIONS

        for name in self.directions:
            if name == "adam" or (name in DIRECTIONS and DIRECTIONS[name].extends == "adam"):
                return name
        return None

    def replace(self, **changes: Any) -> L3RSConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> L3RSConfig:
        """Build from JSON data (a run config's ``l3rs:`` block): unknown fields are an error,
        missing ones take the defaults. Saved checkpoints go through :meth:`from_json_file`."""
        if not isinstance(data, dict):
            raise ConfigError(f"L3RS config must be a JSON object, got {type(data).__name__}")
        data = drop_removed_fields(data, "L3RS config")
        reject_unknown_fields(cls, data, "L3RS config")
        return cls(**data)

    @classmethod
    def from_json_file(cls, path: str | Path) -> L3RSConfig:
        """Load a saved ``config.json``: it must list every field except those in
        :data:`ADDED_FIELDS` (which take the value that reproduces older checkpoints)."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_saved(raw, path)

    @classmethod
    def from_saved(cls, raw: Any, source: str | Path) -> L3RSConfig:
        """The config of an already parsed ``config.json`` (``source`` names it in every error);
        the same rules as :meth:`from_json_file`, except that fields this version does not know
        (a newer hf_l3rs wrote them) load with a warning naming them: if they changed the
        network's shape, the tensors will not fit and loading fails there."""
        data = raw.get("l3rs", raw) if isinstance(raw, dict) else raw
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the L3RS config must be a JSON object, got {type(data).__name__}")
        data = drop_removed_fields({**ADDED_FIELDS, **data}, str(source))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            from hf_l3rs._version import __version__

            writer = raw.get("library_version", "another version")  # raw is a dict: data came from it
            warnings.warn(
                f"{source}: L3RS config field(s) {unknown} are unknown to hf_l3rs {__version__} (written by "
                f"hf_l3rs {writer}) and are ignored; upgrade hf_l3rs to use them",
                UserWarning,
                stacklevel=3,
            )
            data = {k: v for k, v in data.items() if k in names}
        missing = sorted(names - set(data))
        if missing:
            raise ConfigError(f"{source}: missing field(s) {missing} in the L3RS config")
        try:
            return cls(**data)
        except (TypeError, ConfigError) as exc:  # every error of a saved config names its file
            raise ConfigError(f"{source}: {exc}") from exc
