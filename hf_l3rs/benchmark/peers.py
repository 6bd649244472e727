"""The optimizers L3RS is compared with, each as a user would run it.

*Zero-tuning* peers run at their published defaults (docs/adr/0001-benchmark-suite.md lists
the sources): L3RS's bundled default weights with no learning rate and no horizon,
schedule-free AdamW, Prodigy, D-Adaptation Adam, Muon, AdamW at 1e-3 (and at Trainer's
5e-5 on transformers models). *Tuned* peers (AdamW, SGD-Nesterov, two-rate AdamW for
fine-tuning) are swept on validation data (hf_l3rs/benchmark/plan.py).

A peer is a :class:`PeerConfig`; :func:`build` turns it into an optimizer and a schedule.
:func:`check_settings` reads the hyper-parameters back from the optimizer that was built and
refuses a run whose optimizer differs from what its configuration declares, so a report
can never describe settings other than the ones that ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

SCHEDULES = ("constant", "cosine", "warmup-linear", "linear")
WARMUP_FRACTION = 0.1
ZERO_TUNING = ("l3rs", "schedulefree-adamw", "prodigy", "dadapt-adam", "muon", "adamw-1e-3", "adamw-5e-5")
TUNED = ("adamw", "nesterov", "two-rate-adamw")
DEFAULT_WEIGHTS = "l3rs-general"
#: published defaults (docs/adr/0001-benchmark-suite.md): what each zero-tuning peer declares
PUBLISHED = {
    "schedulefree-adamw": {"lr": 0.0025, "weight_decay": 0.0, "betas": (0.9, 0.999), "warmup_steps": 0},
    "prodigy": {"lr": 1.0, "weight_decay": 0.0, "betas": (0.9, 0.999), "d_coef": 1.0},
    "dadapt-adam": {"lr": 1.0, "weight_decay": 0.0, "betas": (0.9, 0.999)},
    "muon": {"lr": 1e-3, "weight_decay": 0.1, "momentum": 0.95, "nesterov": True},
    "adamw-1e-3": {"lr": 1e-3, "weight_decay": 0.01},
    "adamw-5e-5": {"lr": 5e-5, "weight_decay": 0.0},  # TrainingArguments' defaults, with its linear decay
}
#: the schedule each zero-tuning peer runs under (published defaults: none, but Trainer's linear decay)
PUBLISHED_SCHEDULE = {"adamw-5e-5": "linear"}


class SettingsMismatch(RuntimeError):
    """An optimizer was built with other hyper-parameters than its configuration declares."""


@dataclass(frozen=True)
class PeerConfig:
    """One optimizer setting. ``lr``/``weight_decay``/``schedule`` are set for tuned peers;
    zero-tuning peers take theirs from :data:`PUBLISHED` (``None`` here)."""

    peer: str
    lr: float | None = None
    schedule: str = "constant"
    weight_decay: float | None = None
    weights: str | None = None  # L3RS: meta-weights name or folder

    def __post_init__(self) -> None:
        if self.peer not in ZERO_TUNING + TUNED:
            raise ValueError(f"unknown peer {self.peer!r}; known: {ZERO_TUNING + TUNED}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {SCHEDULES}")
        if self.peer in TUNED and (self.lr is None or not (self.lr > 0 and math.isfinite(self.lr))):
            raise ValueError(f"tuned peer {self.peer} needs a positive finite lr, got {self.lr!r}")

    @property
    def key(self) -> str:
        """A file-name-safe identity of the setting (results are stored under it)."""
        parts = [self.peer]
        if self.lr is not None:
            parts.append(f"lr{self.lr:.3g}")
        if self.peer in TUNED:
            parts.append(self.schedule)
        if self.weight_decay is not None:
            parts.append(f"wd{self.weight_decay:g}")
        if self.weights:
            parts.append(self.weights.replace("/", "_"))
        return "-".join(parts)

    def declared(self) -> dict[str, Any]:
        """The hyper-parameters this setting promises (what the report prints)."""
        if self.peer == "l3rs":
            return {"weights": self.weights or DEFAULT_WEIGHTS, "lr": 1.0}
        if self.peer in PUBLISHED:
            return {**PUBLISHED[self.peer], "schedule": PUBLISHED_SCHEDULE.get(self.peer, "constant")}
        out: dict[str, Any] = {"lr": self.lr, "schedule": self.schedule, "weight_decay": self.weight_decay or 0.0}
        if self.peer == "nesterov":
            out |= {"momentum": 0.9, "nesterov": True}
        if self.peer == "two-rate-adamw":
            out["head_lr"] = 10 * self.lr
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedule_factor(schedule: str, steps: int) -> Callable[[int], float]:
    """Multiplier of the base rate at step t (0-based) of a ``steps``-step run."""
    if schedule == "constant":
        return lambda t: 1.0
    if schedule == "cosine":
        return lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps))
    if schedule == "linear":
        return lambda t: max(0.0, (steps - t) / steps)
    warm = max(1, round(WARMUP_FRACTION * steps))
    return lambda t: (t + 1) / warm if t < warm else max(0.0, (steps - t) / max(1, steps - warm))


def _named(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _muon_groups(model: nn.Module, head: Iterable[str]) -> tuple[list, list]:
    """(Muon's tensors, AdamW's): Muon takes the 2-D hidden weights; embeddings, the output
    layer, the head, norms, biases and conv kernels go to AdamW (Muon's documented use)."""
    muon, rest = [], []
    head = tuple(head)
    for name, p in _named(model):
        is_io = any(k in name for k in ("embed", "lm_head", "wte", "wpe")) or name.startswith(head)
        (muon if p.ndim == 2 and not is_io and min(p.shape) > 1 else rest).append(p)
    if not muon:  # a model with no hidden matrix: Muon has nothing to do
        return [], rest
    return muon, rest


class Combined(torch.optim.Optimizer):
    """Several optimizers over disjoint tensors stepped as one (Muon + AdamW)."""

    def __init__(self, parts: list[torch.optim.Optimizer]) -> None:
        super().__init__([t for part in parts for g in part.param_groups for t in g["params"]], {})
        self.parts = parts
        self.param_groups = [g for p in parts for g in p.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parts:
            p.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):  # type: ignore[override]
        for p in self.parts:
            p.step()
        for p in self.parts:
            self.state.update(p.state)


def build(
    config: PeerConfig, model: nn.Module, steps: int, head: tuple[str, ...] = (), trainer: bool = False
) -> tuple[torch.optim.Optimizer, Callable[[int], float]]:
    """The optimizer over ``model``'s trainable tensors and its schedule (a multiplier of each
    group's initial rate; constant for zero-tuning peers). L3RS gets no learning rate and, in
    a plain loop, no horizon (it runs horizon-free, as a user who does not know T would run
    it); under Trainer the integration hands it Trainer's ``max_steps``."""
    named = _named(model)
    params = [p for _, p in named]
    peer = config.peer
    if peer == "l3rs":
        from hf_l3rs.optim.l3rs import L3RS

        return L3RS.from_pretrained(config.weights or DEFAULT_WEIGHTS, model), schedule_factor("constant", steps)
    if peer in PUBLISHED:
        pub = PUBLISHED[peer]
        if peer == "schedulefree-adamw":
            import schedulefree

            opt = schedulefree.AdamWScheduleFree(params)
        elif peer == "prodigy":
            from prodigyopt import Prodigy

            opt = Prodigy(params)
        elif peer == "dadapt-adam":
            from dadaptation import DAdaptAdam

            opt = DAdaptAdam(params)
        elif peer == "muon":
            muon, rest = _muon_groups(model, head)
            parts = [torch.optim.AdamW(rest)] if rest else []
            if muon:
                parts.insert(0, torch.optim.Muon(muon))
            opt = Combined(parts)
        else:
            opt = torch.optim.AdamW(params, lr=pub["lr"], weight_decay=pub["weight_decay"], fused=True)
        return opt, schedule_factor(PUBLISHED_SCHEDULE.get(peer, "constant"), steps)
    wd = config.weight_decay or 0.0
    if peer == "adamw":
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=wd, fused=True)
    elif peer == "nesterov":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=wd)
    else:  # two-rate-adamw
        if not head:
            raise ValueError("two-rate-adamw needs a case with a head (a fine-tuning case)")
        heads = [p for n, p in named if n.startswith(head)]
        body = [p for n, p in named if not n.startswith(head)]
        opt = torch.optim.AdamW(
            [{"params": body, "lr": config.lr}, {"params": heads, "lr": 10 * config.lr}],
            lr=config.lr,
            weight_decay=wd,
            fused=True,
        )
    return opt, schedule_factor(config.schedule, steps)


def actual_settings(opt: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Each param group's hyper-parameters as the optimizer holds them (tensors excluded)."""
    keep = ("lr", "weight_decay", "betas", "momentum", "nesterov", "d_coef", "warmup_steps")
    return [
        {k: (tuple(g[k]) if isinstance(g[k], (list, tuple)) else g[k]) for k in keep if k in g}
        for g in opt.param_groups
    ]


def check_settings(config: PeerConfig, opt: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The optimizer's real settings; :class:`SettingsMismatch` naming the field if any group
    differs from :meth:`PeerConfig.declared` (Muon's AdamW half is checked against AdamW's
    defaults, the two-rate head group against 10× the rate)."""
    groups = actual_settings(opt)
    if config.peer == "l3rs":
        if any(g.get("lr", 1.0) != 1.0 for g in groups):
            raise SettingsMismatch(f"{config.key}: L3RS must run with no learning-rate multiplier, got {groups}")
        return groups
    want = config.declared()
    expected: list[dict[str, Any]] = []
    if config.peer == "muon":
        muon_keys = ("lr", "weight_decay", "momentum", "nesterov")
        adamw = {"lr": 1e-3, "weight_decay": 0.01, "betas": (0.9, 0.999)}
        for g in groups:
            expected.append({k: want[k] for k in muon_keys} if "nesterov" in g else adamw)
    elif config.peer == "two-rate-adamw":
        expected = [
            {"lr": want["lr"], "weight_decay": want["weight_decay"]},
            {"lr": want["head_lr"], "weight_decay": want["weight_decay"]},
        ]
    else:
        expected = [{k: v for k, v in want.items() if k != "schedule"}] * len(groups)
    if len(expected) != len(groups):
        raise SettingsMismatch(f"{config.key}: {len(groups)} param groups, expected {len(expected)}")
    for i, (g, e) in enumerate(zip(groups, expected)):
        for k, v in e.items():
            if k not in g:
                continue
            got = g[k]
            same = math.isclose(got, v, rel_tol=1e-9) if isinstance(v, float) and isinstance(got, float) else got == v
            if not same:
                raise SettingsMismatch(f"{config.key}: param group {i} runs {k}={got!r}, but the report says {v!r}")
    return groups
