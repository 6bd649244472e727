"""``L3RSConfig``: every choice of docs/design.md §1 that a checkpoint must remember."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VARIANTS = ("shared", "global", "per_layer_mlp")
NORMS = ("rms", "l2")
LOSS_FEATURES = ("raw", "log1p")
RATE_SCHEDULES = ("constant", "cosine")
RATE_ADAPTATIONS = ("none", "hypergradient")
ADAPTATION_SCOPES = ("model", "component")
ADAPTATION_SIGNALS = ("gradient", "tangential")
ADAPTER_STEPS = ("tensor", "weight")
STEP_SCALES = ("base_lr", "distance", "distance_per_tensor")
#: Fields added after the first release, with the value that reproduces older checkpoints
#: (a saved config without them loads with these, any other missing field is an error).
ADDED_FIELDS = {
    "loss_feature": "raw",
    "rate_schedule": "constant",
    "init_head_fraction": 0.0,
    "init_head_rate": 1.0,
    "init_backbone_rate": 1.0,
    "rate_adaptation": "none",
    "hypergradient_rate": 0.05,
    "adaptation_min": 1 / 30,
    "adaptation_max": 30.0,
    "adaptation_target": 0.0,
    "adaptation_scope": "model",
    "role_rate_scale": {},
    "adaptation_signal": "gradient",
    "role_adaptation_min": {},
    "role_adaptation_min_release": 0.0,
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
    "step_scale": "base_lr",
}
ROLES = ("conv", "linear", "norm", "bias", "embedding", "other")


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
    init_output_scale: float = 0.01
    init_adam_mix: float = 0.9
    feature_eps: float = 1e-12
    num_components: int | None = None
    hyper_init: dict[str, float] = field(default_factory=dict)
    #: How the loss enters the EMA features: ``raw`` (the paper's) or ``log1p``, sign(l)·log(1+|l|),
    #: for losses spanning orders of magnitude between tasks (regression); docs/decisions.md.
    loss_feature: str = "raw"
    #: A hand-designed prior the learned rate multiplies: ``constant`` (the paper's) or ``cosine``,
    #: 0.5·(1 + cos(π·t/T)) over the announced horizon T, so that the untrained L3RS already
    #: follows a tuned cosine schedule and meta-training only corrects it (docs/decisions.md).
    rate_schedule: str = "constant"
    #: A hand-designed start for fine-tuning (docs/design.md §1 "Initialisation"): the
    #: components in the deepest ``init_head_fraction`` of the network by relative depth (the
    #: freshly initialised head) start at ``init_head_rate``·η₀, all others at
    #: ``init_backbone_rate``·η₀. Written into the MLP's initial weights (θ keeps its shape),
    #: so meta-training refines it. 0 = off (the paper's uniform start).
    init_head_fraction: float = 0.0
    init_head_rate: float = 1.0
    init_backbone_rate: float = 1.0
    #: Online correction of the model's overall step size (docs/design.md §1 "Rate
    #: adaptation"): ``none`` (the paper's) or ``hypergradient``, a multiplier a on every
    #: learned rate, log a += ``hypergradient_rate``·(cos(g_t, m_{t-1}) − ``adaptation_target``)
    #: each step (m the Adam momentum), a kept in [``adaptation_min``, ``adaptation_max``]: it grows
    #: while successive gradients agree and shrinks when they stop agreeing (overshooting), so
    #: weights meta-trained on one model find the step size of another without a learning rate.
    rate_adaptation: str = "none"
    hypergradient_rate: float = 0.05
    adaptation_min: float = 1 / 30
    #: 1 makes the adaptation a brake: it only lowers the learned rates where they overshoot
    #: (the shipped adaptive weights; docs/decisions.md "No learning rate").
    adaptation_max: float = 30.0
    #: The agreement the adaptation steers to: log a += β·(cos − target). 0 is the greedy
    #: optimum of the last step (Adam-HD); a positive target keeps steps below it.
    adaptation_target: float = 0.0
    #: ``model``: one multiplier for every learned rate (cosine over all tensors concatenated);
    #: ``component``: one per tensor from its own cosine, so an oscillating head cannot hold
    #: back adapters that want a larger step (docs/decisions.md "Per-tensor adaptation").
    adaptation_scope: str = "model"
    #: A fixed multiplier on the learned rate of every component of a role (as the network
    #: sees it), e.g. ``{"conv": 3.0}``; {} = none. Chosen outside NES, on the validation
    #: tasks of the meta-training members, for a direction the search does not move along
    #: (docs/design.md §1 "Role prior", docs/decisions.md "The head/backbone split").
    role_rate_scale: dict[str, float] = field(default_factory=dict)
    #: What the adaptation's cosine compares: ``gradient`` (g_t with m_{t-1}) or
    #: ``tangential`` (both with their component along the tensor's own weights removed), so
    #: that steady growth of a tensor's norm, which on separable data (a classifier head
    #: driving its logits up) agrees from step to step without being progress, does not
    #: count as "steps too short" (docs/design.md §1 "Rate adaptation").
    adaptation_signal: str = "gradient"
    #: A floor per role (as the network sees it) on the adaptation multiplier, above
    #: ``adaptation_min``, e.g. ``{"conv": 1.0}``: the adaptation may raise those tensors'
    #: rates but not lower them below the floor; {} = none (docs/design.md §1 "Rate adaptation").
    role_adaptation_min: dict[str, float] = field(default_factory=dict)
    #: Releases the role floors for the rest of the run once the training loss (an EMA, β 0.9,
    #: bias-corrected) has fallen to this fraction of the first step's loss; 0 keeps them for
    #: the whole run. The floors then guard only the first steps, where a fresh head's noisy
    #: gradients would otherwise shrink the backbone's rates for good (docs/design.md §1
    #: "Rate adaptation", *Releasing the floors*).
    role_adaptation_min_release: float = 0.0
    #: The backbone's gradient share (docs/design.md §1 "The backbone's gradient share"): s =
    #: ‖g of the convolutions‖ / ‖g of the head‖ (the deepest linear tensor), its geometric mean
    #: over steps 2…``gradient_share_steps``. Where s exceeds this reference (the share on the
    #: checkpoint the rule was meta-trained on), the backbone's tensors of
    #: ``gradient_share_roles`` have their rates multiplied by s / reference, at most
    #: ``gradient_share_max``, from step ``gradient_share_steps`` on: a checkpoint that does not
    #: fit the data sends more of the gradient to its backbone, which then needs larger steps
    #: than the rule learned. 0 = off; a model without convolutions is never changed.
    gradient_share_reference: float = 0.0
    gradient_share_max: float = 8.0
    gradient_share_steps: int = 5
    gradient_share_roles: tuple[str, ...] = ("conv", "norm", "bias")
    #: From scratch: where the share's multiplier m exceeds ``gradient_share_boost_from`` (a
    #: checkpoint that barely fits its data: random init reads m = 8, every pretrained
    #: checkpoint measured here m <= 2), the tensors of these roles (among the scaled ones) take
    #: m · (m / from) ** (power - 1) instead of m through step ``gradient_share_boost_steps``,
    #: e.g. ``{"norm": 2.0, "bias": 2.0}``: BatchNorm's gains and biases, at their initial 1
    #: and 0, are what a network trained from scratch must move first (docs/design.md §1 "The
    #: backbone's gradient share", *From scratch*). {} = off.
    gradient_share_boost: dict[str, float] = field(default_factory=dict)
    gradient_share_boost_from: float = 2.0
    gradient_share_boost_steps: int = 10
    #: From scratch, short runs: where the boost applies (m above ``gradient_share_boost_from``)
    #: and the horizon T is known and shorter than this, the boosted roles' rates are further
    #: multiplied by (horizon / T) ** ``gradient_share_boost_horizon_power`` for the whole run.
    #: The tuned baselines' rates from random init are ~3× larger at T = 10 than from T = 25 on;
    #: a 10-step run has no later steps to catch up in (docs/design.md §1, *Short runs from
    #: scratch*). 0 = off; without a known horizon nothing changes.
    gradient_share_boost_horizon: float = 0.0
    gradient_share_boost_horizon_power: float = 1.0
    #: A pretrained checkpoint whose backbone takes more of the gradient than the reference
    #: (1 < m <= ``gradient_share_boost_from``): the head's weight (the deepest linear tensor)
    #: steps m ** -power times its rate from the step m is decided. Its features fit the new
    #: data less well, and the rule's large head step then sharpens a few-shot fit into
    #: over-confident logits (docs/design.md §1, *The head of a checkpoint that must move*).
    #: 0 = off; random init (m above the boost's start) and models without convolutions are
    #: never changed.
    gradient_share_head_power: float = 0.0
    #: LoRA adapters (peft): ``tensor`` steps each adapter matrix like any weight matrix;
    #: ``weight`` multiplies their rates by 1 / (s·√r·rms(A)) so that the step moves the adapted
    #: weight W = W₀ + s·B·A by what the rule meant for a weight matrix (optim/adapters.py,
    #: docs/design.md §1 "Low-rank adapters"). No other tensor is changed.
    adapter_steps: str = "tensor"
    #: Partial fine-tuning (part of the model frozen, the model known): the head (the deepest
    #: trained linear tensor that is not a LoRA matrix, and the biases after it) multiplies its
    #: rate by ``head_calibration_growth`` per step while the training loss (EMA, β 0.9) has not
    #: fallen below (1 − ``head_calibration_drop``) of the first loss, at most
    #: ``head_calibration_max``; the multiplier is then kept. 1 = off; a model trained whole is
    #: never changed (docs/design.md §1 "A head on a frozen body").
    head_calibration_growth: float = 1.0
    head_calibration_drop: float = 0.1
    head_calibration_max: float = 100.0
    #: The calibration's brake: a training loss above (1 + ``head_calibration_rise``) of the first
    #: one while the head still grows (it overshot) ends the growth and undoes its last
    #: ``head_calibration_backoff`` growth steps (the EMA that stops the growth lags the loss).
    #: 0 = no brake.
    head_calibration_rise: float = 0.0
    head_calibration_backoff: int = 2
    #: Each growth step's factor is the previous one's × ``head_calibration_acceleration`` (the
    #: k-th is growth × acceleration^(k−1)): a head the loss has not answered for several steps is
    #: likely short by decades, one whose loss falls at once by a little. 1 = constant growth.
    head_calibration_acceleration: float = 1.0
    #: What sets the size of a step (docs/adr/0003-distance-scale.md): ``base_lr`` (the paper's:
    #: the network's rate is an absolute step size), ``distance`` (Prodigy's estimate d of the
    #: distance to the solution, one for the model, optim/distance.py; the network's rate ÷
    #: ``base_lr`` modulates it) or ``distance_per_tensor`` (one d per tensor).
    step_scale: str = "base_lr"

    def __post_init__(self) -> None:
        # Lists arrive from JSON/YAML: store tuples so the config stays hashable and frozen.
        for name in ("directions", "ema_betas", "absolute_time_scales", "hidden_sizes", "gradient_share_roles"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ConfigError(f"L3RSConfig.{name} must be a sequence, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        for name in ("role_rate_scale", "role_adaptation_min", "gradient_share_boost"):
            if isinstance(getattr(self, name), dict):  # a copy: the default in ADDED_FIELDS is shared
                object.__setattr__(self, name, dict(getattr(self, name)))
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
        if self.loss_feature not in LOSS_FEATURES:
            raise ConfigError(f"L3RSConfig.loss_feature must be one of {LOSS_FEATURES}, got {self.loss_feature!r}")
        if self.rate_schedule not in RATE_SCHEDULES:
            raise ConfigError(f"L3RSConfig.rate_schedule must be one of {RATE_SCHEDULES}, got {self.rate_schedule!r}")
        if self.rate_adaptation not in RATE_ADAPTATIONS:
            raise ConfigError(
                f"L3RSConfig.rate_adaptation must be one of {RATE_ADAPTATIONS}, got {self.rate_adaptation!r}"
            )
        if self.rate_adaptation == "hypergradient" and self.momentum_direction is None:
            raise ConfigError(
                "L3RSConfig.rate_adaptation='hypergradient' reads Adam's momentum: add 'adam' (or a direction "
                "that extends it, e.g. 'shampoo') to directions"
            )
        if not self.hypergradient_rate > 0:  # _check_types has made every float field a finite number
            raise ConfigError(
                f"L3RSConfig.hypergradient_rate must be a positive number, got {self.hypergradient_rate!r}"
            )
        low, high = self.adaptation_min, self.adaptation_max
        if not 0 < low <= 1 <= high:
            raise ConfigError(
                f"L3RSConfig needs 0 < adaptation_min <= 1 <= adaptation_max < inf, got {low!r} and {high!r}"
            )
        if self.adaptation_scope not in ADAPTATION_SCOPES:
            raise ConfigError(
                f"L3RSConfig.adaptation_scope must be one of {ADAPTATION_SCOPES}, got {self.adaptation_scope!r}"
            )
        if self.adaptation_signal not in ADAPTATION_SIGNALS:
            raise ConfigError(
                f"L3RSConfig.adaptation_signal must be one of {ADAPTATION_SIGNALS}, got {self.adaptation_signal!r}"
            )
        if not -1 < self.adaptation_target < 1:
            raise ConfigError(f"L3RSConfig.adaptation_target must be in (-1, 1), got {self.adaptation_target!r}")
        if not 0.0 <= self.init_head_fraction < 1.0:
            raise ConfigError(f"L3RSConfig.init_head_fraction must be in [0, 1), got {self.init_head_fraction!r}")
        for name in ("init_head_rate", "init_backbone_rate"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"L3RSConfig.{name} must be a positive number, got {value!r}")
        if self.init_head_fraction > 0:
            if not self.descriptor:
                raise ConfigError("L3RSConfig.init_head_fraction needs descriptor=True (it reads the relative depth)")
            if self.variant == "global":
                raise ConfigError("L3RSConfig.init_head_fraction needs per-component rates (not variant='global')")
            if len(self.hidden_sizes) < 2 or self.hidden_sizes[0] < 2:
                raise ConfigError("L3RSConfig.init_head_fraction needs >= 2 hidden layers, the first with >= 2 units")
        for role, scale in self.role_rate_scale.items():
            if role not in ROLES:
                raise ConfigError(f"L3RSConfig.role_rate_scale: unknown role {role!r}; known: {list(ROLES)}")
            if not scale > 0:
                raise ConfigError(f"L3RSConfig.role_rate_scale[{role!r}] must be a number > 0, got {scale!r}")
        for role, floor in self.role_adaptation_min.items():
            if role not in ROLES:
                raise ConfigError(f"L3RSConfig.role_adaptation_min: unknown role {role!r}; known: {list(ROLES)}")
            if not self.adaptation_min <= floor <= self.adaptation_max:
                raise ConfigError(
                    f"L3RSConfig.role_adaptation_min[{role!r}] must lie in [adaptation_min, adaptation_max] = "
                    f"[{self.adaptation_min!r}, {self.adaptation_max!r}], got {floor!r}"
                )
        if not 0.0 <= self.role_adaptation_min_release < 1.0:
            raise ConfigError(
                "L3RSConfig.role_adaptation_min_release must be in [0, 1) (a fraction of the first loss), "
                f"got {self.role_adaptation_min_release!r}"
            )
        if self.role_adaptation_min_release > 0 and not self.role_adaptation_min:
            raise ConfigError(
                "L3RSConfig.role_adaptation_min_release releases the floors of role_adaptation_min, which is empty"
            )
        if self.gradient_share_reference < 0:
            raise ConfigError(
                f"L3RSConfig.gradient_share_reference must be >= 0 (0 = off), got {self.gradient_share_reference!r}"
            )
        if self.gradient_share_max < 1:
            raise ConfigError(f"L3RSConfig.gradient_share_max must be >= 1, got {self.gradient_share_max!r}")
        if self.gradient_share_steps < 2:
            raise ConfigError(
                "L3RSConfig.gradient_share_steps must be >= 2 (the share is averaged over steps 2…k), "
                f"got {self.gradient_share_steps!r}"
            )
        if not (self.head_calibration_growth >= 1 and self.head_calibration_max >= 1):
            raise ConfigError(
                "L3RSConfig needs head_calibration_growth >= 1 and head_calibration_max >= 1, got "
                f"{self.head_calibration_growth!r} and {self.head_calibration_max!r}"
            )
        if not 0 < self.head_calibration_drop < 1:
            raise ConfigError(f"L3RSConfig.head_calibration_drop must be in (0, 1), got {self.head_calibration_drop!r}")
        if not self.head_calibration_acceleration >= 1:
            raise ConfigError(
                f"L3RSConfig.head_calibration_acceleration must be >= 1, got {self.head_calibration_acceleration!r}"
            )
        if not (self.head_calibration_rise >= 0 and self.head_calibration_backoff >= 0):
            raise ConfigError(
                "L3RSConfig needs head_calibration_rise >= 0 and head_calibration_backoff >= 0, got "
                f"{self.head_calibration_rise!r} and {self.head_calibration_backoff!r}"
            )
        if self.step_scale not in STEP_SCALES:
            raise ConfigError(f"L3RSConfig.step_scale must be one of {STEP_SCALES}, got {self.step_scale!r}")
        if self.adapter_steps not in ADAPTER_STEPS:
            raise ConfigError(f"L3RSConfig.adapter_steps must be one of {ADAPTER_STEPS}, got {self.adapter_steps!r}")
        for role, power in self.gradient_share_boost.items():
            if role not in self.gradient_share_roles:
                raise ConfigError(
                    f"L3RSConfig.gradient_share_boost: {role!r} is not one of gradient_share_roles "
                    f"{list(self.gradient_share_roles)}"
                )
            if not power >= 1:
                raise ConfigError(f"L3RSConfig.gradient_share_boost[{role!r}] must be a number >= 1, got {power!r}")
        if not self.gradient_share_boost_from >= 1 or self.gradient_share_boost_steps < 0:
            raise ConfigError(
                "L3RSConfig needs gradient_share_boost_from >= 1 and gradient_share_boost_steps >= 0, got "
                f"{self.gradient_share_boost_from!r} and {self.gradient_share_boost_steps!r}"
            )
        if not self.gradient_share_head_power >= 0:
            raise ConfigError(
                f"L3RSConfig.gradient_share_head_power must be >= 0 (0 = off), got {self.gradient_share_head_power!r}"
            )
        if not self.gradient_share_boost_horizon >= 0 or not self.gradient_share_boost_horizon_power > 0:
            raise ConfigError(
                "L3RSConfig needs gradient_share_boost_horizon >= 0 (0 = off) and "
                f"gradient_share_boost_horizon_power > 0, got {self.gradient_share_boost_horizon!r} and "
                f"{self.gradient_share_boost_horizon_power!r}"
            )
        for role in self.gradient_share_roles:
            if role not in ROLES:
                raise ConfigError(f"L3RSConfig.gradient_share_roles: unknown role {role!r}; known: {list(ROLES)}")
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
        if not self.feature_eps > 0:
            raise ConfigError(f"L3RSConfig.feature_eps must be > 0 (features take its log), got {self.feature_eps!r}")
        if not self.rate_clamp > 0:
            raise ConfigError(f"L3RSConfig.rate_clamp must be > 0, got {self.rate_clamp!r}")
        if not 0.0 < self.init_adam_mix < 1.0:
            raise ConfigError("L3RSConfig.init_adam_mix must be in (0, 1)")
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
        """The config of an already parsed ``config.json`` (``source`` names it in errors);
        the same rules as :meth:`from_json_file`."""
        data = raw.get("l3rs", raw) if isinstance(raw, dict) else raw
        if isinstance(data, dict):
            data = {**ADDED_FIELDS, **data}
            missing = sorted({f.name for f in dataclasses.fields(cls)} - set(data))
            if missing:
                raise ConfigError(f"{source}: missing field(s) {missing} in the L3RS config")
        try:
            return cls.from_dict(data)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
