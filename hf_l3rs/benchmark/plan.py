"""What to run, and which setting wins: tuning profiles, the rate grid with its edge rule,
and selection on validation runs only.

Selection is a pure function of *tune-role* results: the score (test) runs of a setting are
never read before every family has chosen (tests/test_suite_honesty.py seeds the bug).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hf_l3rs.benchmark.peers import TUNED, ZERO_TUNING, PeerConfig
from hf_l3rs.benchmark.suite import Case


@dataclass(frozen=True)
class Profile:
    """How hard baselines are tuned. Rates are ``10 ** (k / 2)`` (half-decade steps) for k in
    the ``*_rates`` span; ``coordinate_weight_decay`` tunes rate x schedule at the first
    weight decay, then the other decays at the winner (else the full product)."""

    name: str
    tune_seeds: tuple[int, ...]
    score_seeds: tuple[int, ...]
    adamw_rates: tuple[int, int]
    adamw_schedules: tuple[str, ...]
    adamw_weight_decays: tuple[float, ...]
    coordinate_weight_decay: bool
    nesterov_rates: tuple[int, int]
    nesterov_schedules: tuple[str, ...]
    two_rate_schedules: tuple[str, ...]
    max_extensions: int = 3
    curve_points: int = 12


PROFILES = {
    "quick": Profile(
        "quick", (100,), (0, 1, 2), (-8, -4), ("constant", "cosine"), (0.01,), True, (-5, -1), ("cosine",), ("cosine",)
    ),
    "standard": Profile(
        "standard",
        (100,),
        (0, 1, 2),
        (-9, -3),
        ("constant", "cosine", "warmup-linear"),
        (0.01, 0.0, 0.1),
        True,
        (-6, 0),
        ("constant", "cosine"),
        ("cosine", "warmup-linear"),
    ),
    "full": Profile(
        "full",
        (100, 101),
        (0, 1, 2),
        (-9, -3),
        ("constant", "cosine", "warmup-linear"),
        (0.0, 0.01, 0.1),
        False,
        (-6, 0),
        ("constant", "cosine"),
        ("constant", "cosine", "warmup-linear"),
    ),
}


def rate(k: int) -> float:
    return float(f"{10 ** (k / 2):.6g}")


def exponent(lr: float) -> int:
    return round(2 * math.log10(lr))


def family_of(config: PeerConfig) -> tuple[str, str, float | None]:
    """The sub-grid a tuned setting belongs to: (peer, schedule, weight decay); its rate axis
    is what the edge rule extends."""
    return (config.peer, config.schedule, config.weight_decay)


def mean_loss(values: Iterable[float]) -> float:
    """Mean final held-out loss over seeds; a diverged seed (non-finite) makes it infinite."""
    values = list(values)
    if not values or any(not math.isfinite(v) for v in values):
        return math.inf
    return statistics.fmean(values)


def select(tune: dict[PeerConfig, list[float]], peer: str) -> PeerConfig | None:
    """The setting of ``peer`` with the lowest mean final *validation* loss. ``tune`` maps
    settings to their tune-role final losses (one per tune seed); ties go to the smaller rate."""
    candidates = [c for c in tune if c.peer == peer]
    if not candidates:
        return None
    return min(candidates, key=lambda c: (mean_loss(tune[c]), c.lr or 0.0, c.schedule, c.weight_decay or 0.0))


def edge(tune: dict[PeerConfig, list[float]], chosen: PeerConfig) -> str | None:
    """``"low"``/``"high"`` when the chosen rate is the smallest/largest tried in its
    sub-grid (the optimum may lie outside it), else None."""
    rates = sorted(c.lr for c in tune if family_of(c) == family_of(chosen))
    if len(rates) < 3:
        return "low" if chosen.lr == rates[0] else "high"
    if chosen.lr == rates[0]:
        return "low"
    if chosen.lr == rates[-1]:
        return "high"
    return None


def tuned_peers(case: Case) -> tuple[str, ...]:
    return tuple(p for p in TUNED if p != "two-rate-adamw" or case.finetune)


def zero_tuning_peers(case: Case) -> tuple[str, ...]:
    return tuple(p for p in ZERO_TUNING if p != "adamw-5e-5" or case.transformer)


def tune_results(runs: list[dict[str, Any]]) -> dict[PeerConfig, list[float]]:
    """Tune-role final losses by setting (the only input selection ever sees)."""
    out: dict[PeerConfig, list[float]] = {}
    for r in runs:
        if r["role"] == "tune":
            out.setdefault(PeerConfig(**r["config"]), []).append(r["loss"])
    return out


def initial_grid(case: Case, profile: Profile) -> list[PeerConfig]:
    """Every tuned setting of the first round."""
    out: list[PeerConfig] = []
    lo, hi = profile.adamw_rates
    first_wd = profile.adamw_weight_decays if not profile.coordinate_weight_decay else profile.adamw_weight_decays[:1]
    for s in profile.adamw_schedules:
        for wd in first_wd:
            out += [PeerConfig("adamw", rate(k), s, wd) for k in range(lo, hi + 1)]
    lo, hi = profile.nesterov_rates
    for s in profile.nesterov_schedules:
        out += [PeerConfig("nesterov", rate(k), s, 0.0) for k in range(lo, hi + 1)]
    if case.finetune:
        lo, hi = profile.adamw_rates
        for s in profile.two_rate_schedules:
            out += [PeerConfig("two-rate-adamw", rate(k), s, 0.01) for k in range(lo - 2, hi - 1)]
    return out


def next_tuning(case: Case, profile: Profile, tune: dict[PeerConfig, list[float]]) -> list[PeerConfig]:
    """Settings still to run given the tune results so far: the first grid, then one more
    rate beyond an edge the winner sits on (at most ``max_extensions`` per sub-grid), then
    (coordinate profiles) AdamW's other weight decays at its winning rate and schedule."""
    first = initial_grid(case, profile)
    grid = [c for c in first if c not in tune]
    if grid:
        return grid
    first_set = set(first)
    todo: list[PeerConfig] = []
    for peer in tuned_peers(case):
        chosen = select(tune, peer)
        side = edge(tune, chosen)
        fam = family_of(chosen)
        initial = sum(1 for c in first_set if family_of(c) == fam) or 3  # 3: a weight-decay stage's rates
        extended = sum(1 for c in tune if family_of(c) == fam) - initial
        if side and extended < profile.max_extensions:
            k = exponent(chosen.lr) + (-1 if side == "low" else 1)
            todo.append(PeerConfig(peer, rate(k), chosen.schedule, chosen.weight_decay))
    if todo:
        return todo
    if profile.coordinate_weight_decay:
        best = select(tune, "adamw")
        for wd in profile.adamw_weight_decays[1:]:
            for k in (-1, 0, 1):  # the rate is re-tuned around the winner at each decay
                c = PeerConfig("adamw", rate(exponent(best.lr) + k), best.schedule, wd)
                if c not in tune:
                    todo.append(c)
    return todo


def scoring(
    case: Case, profile: Profile, tune: dict[PeerConfig, list[float]], weights: str | None = None
) -> list[PeerConfig]:
    """The settings scored on test data: every zero-tuning peer and each tuned peer's winner."""
    out = [PeerConfig(p, weights=weights) if p == "l3rs" else PeerConfig(p) for p in zero_tuning_peers(case)]
    for peer in tuned_peers(case):
        chosen = select(tune, peer)
        if chosen is not None:
            out.append(chosen)
    return out
