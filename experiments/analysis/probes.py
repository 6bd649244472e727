"""The five mechanisms of docs/design.md §6, each measured by feeding an optimizer controlled
gradients on :class:`ProbeNet` and reading what it does (after Maheswaranathan et al.,
"Reverse engineering learned optimizers reveals known and novel mechanisms").

Every analysis works on any :class:`Subject`, so the same numbers are read off Adam and SGD
with momentum (whose answers are known: the tests check them) and off learned meta-weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from experiments.analysis.subjects import ProbeNet, Subject, noise


@dataclass
class Trace:
    """One run on the probe: per step and tensor, the update's RMS and its first coordinate,
    and the learned rate η (L3RS, VeLO-lite) and mixing α (L3RS)."""

    names: list[str]
    update_rms: Tensor  # [T, C]
    first_coordinate: Tensor  # [T, C]
    rate: Tensor | None  # [T, C]
    mix: Tensor | None  # [T, C, K]
    directions: tuple[str, ...] | None


def run_stream(
    subject: Subject,
    steps: int,
    gradients: Callable[[int, list[torch.Size]], list[Tensor]],
    loss: Callable[[int], float] = lambda t: 1.0,
    seed: int = 0,
) -> Trace:
    model = ProbeNet(seed)
    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    opt = subject.make(model, steps)
    rms, first, rates, mixes = [], [], [], []
    for t in range(steps):
        for p, g in zip(params, gradients(t, shapes)):
            p.grad = g.to(p.dtype).clone()
        before = [p.detach().clone() for p in params]
        subject.step(opt, loss(t))
        upd = [p.detach() - b for p, b in zip(params, before)]
        rms.append(torch.stack([u.double().pow(2).mean().sqrt() for u in upd]))
        first.append(torch.stack([u.reshape(-1)[0].double() for u in upd]))
        if getattr(opt, "last_rate", None) is not None:
            rates.append(opt.last_rate.detach().double().cpu().clone())
        if getattr(opt, "last_mix", None) is not None:
            mixes.append(opt.last_mix.detach().double().cpu().clone())
    return Trace(
        names,
        torch.stack(rms),
        torch.stack(first),
        torch.stack(rates) if rates else None,
        torch.stack(mixes) if mixes else None,
        tuple(opt.config.directions) if mixes else None,
    )


# ------------------------------------------------------------------ momentum
@dataclass
class Momentum:
    names: list[str]
    response: Tensor  # [K, C]: |change of the update| k steps after the impulse (k = 0..K-1)
    beta: Tensor  # [C]: effective momentum, exp(slope of log|response| over k = 1..fit)


def momentum(
    subject: Subject, impulse_step: int = 100, length: int = 30, delta: float = 0.1, fit: int = 12
) -> Momentum:
    """Impulse response: the same noisy run twice, the first coordinate of every tensor kept at
    zero gradient except, in the second run, ``delta`` at ``impulse_step`` (late enough that
    bias corrections have settled). That coordinate's update difference (for a learned
    optimizer divided by its learned rate at the same step, so the schedule is taken out)
    decays like β^k for momentum β."""
    steps = impulse_step + length

    def base(t: int, shapes: list[torch.Size]) -> list[Tensor]:
        grads = noise(t, shapes, seed=1)
        for g in grads:
            g.view(-1)[0] = 0.0
        return grads

    def kicked(t: int, shapes: list[torch.Size]) -> list[Tensor]:
        grads = base(t, shapes)
        if t == impulse_step:
            for g in grads:
                g.view(-1)[0] = delta
        return grads

    plain, hit = run_stream(subject, steps, base), run_stream(subject, steps, kicked)
    response = (hit.first_coordinate - plain.first_coordinate).abs()
    if plain.rate is not None:  # divide out the learned rate (its schedule), step by step
        response = response / plain.rate.clamp_min(1e-300)
    response = response[impulse_step:]
    k = torch.arange(1, fit + 1, dtype=torch.float64)
    betas = []
    for c in range(response.shape[1]):
        y = response[1 : fit + 1, c]
        ok = y > 1e-9 * float(response[0, c]) if float(response[0, c]) > 0 else y > 0
        if ok.sum() < 3:
            betas.append(0.0)  # the impulse is gone after one step: no momentum
            continue
        kk, ly = k[ok], torch.log(y[ok])
        slope = float(((kk - kk.mean()) * (ly - ly.mean())).sum() / ((kk - kk.mean()) ** 2).sum())
        betas.append(math.exp(slope))
    return Momentum(plain.names, response, torch.tensor(betas, dtype=torch.float64))


# ------------------------------------------------------------------ clipping
@dataclass
class Clipping:
    names: list[str]
    scales: Tensor  # [S] gradient scales
    update_rms: Tensor  # [S, C] the update's RMS after a few steps at that scale
    slope_small: Tensor  # [C] log-log slope over the smallest decades (1: linear)
    slope_large: Tensor  # [C] over the largest (0: the update saturates, as clipping does)


def clipping(subject: Subject, low: float = -6.0, high: float = 6.0, points: int = 13, steps: int = 3) -> Clipping:
    """Update size as a function of gradient scale: fresh runs of ``steps`` steps with
    gradients ``c``·noise for ``c`` from 10^low to 10^high."""
    scales = torch.logspace(low, high, points, dtype=torch.float64)
    rows = []
    for c in scales.tolist():
        trace = run_stream(subject, steps, lambda t, shapes, c=c: [g * c for g in noise(t, shapes, seed=2)])
        rows.append(trace.update_rms[-1])
    upd = torch.stack(rows)
    logs, logu = torch.log10(scales), torch.log10(upd.clamp_min(1e-300))

    def slope(a: int, b: int) -> Tensor:
        return (logu[b] - logu[a]) / (logs[b] - logs[a])

    edge = max(2, points // 4)
    return Clipping(trace.names, scales, upd, slope(0, edge), slope(points - 1 - edge, points - 1))


# ------------------------------------------------------------------ schedule
@dataclass
class Schedule:
    names: list[str]
    update_rms: Tensor  # [T, C] on a stationary noise stream
    rate: Tensor | None  # [T, C] learned rate (L3RS)
    late_over_early: Tensor  # [C] mean update in the last quarter / in the second quarter
    kind: list[str]  # per tensor: constant / decaying / growing (±15 %)


def schedule(subject: Subject, steps: int = 200, tolerance: float = 0.15, seeds: int = 3) -> Schedule:
    """The effective rate over a run at fixed inputs: stationary unit noise for ``steps``
    steps (announced as the horizon), averaged over ``seeds`` noise streams; a constant-rate
    optimizer's update size stays flat."""
    traces = [run_stream(subject, steps, lambda t, shapes, s=s: noise(t, shapes, seed=30 + s)) for s in range(seeds)]
    update = torch.stack([tr.update_rms for tr in traces]).mean(0)
    rate = traces[0].rate
    q = steps // 4
    ratio = update[3 * q :].mean(0) / update[q : 2 * q].mean(0)
    kind = ["constant" if abs(r - 1) <= tolerance else "decaying" if r < 1 else "growing" for r in ratio.tolist()]
    return Schedule(traces[0].names, update, rate, ratio, kind)


# ------------------------------------------------------------------ adaptation
@dataclass
class Adaptation:
    names: list[str]
    switched: Tensor  # [T, C] update RMS with the gradient (loss) scale ×factor from step T/2
    control: Tensor  # [T, C] the same run without the switch
    response: Tensor  # [C] (after/before with switch) / (after/before without): ×1 = no adaptation
    factor: float


def adaptation(subject: Subject, steps: int = 60, factor: float = 10.0, window: int = 10) -> Adaptation:
    """How the step responds when the loss scale (and so every gradient) grows ×``factor``
    mid-run: SGD passes the factor through, Adam absorbs it as its second moment catches up."""
    half = steps // 2

    def scaled(t: int, shapes: list[torch.Size]) -> list[Tensor]:
        return [g * (factor if t >= half else 1.0) for g in noise(t, shapes, seed=4)]

    switched = run_stream(subject, steps, scaled, loss=lambda t: factor if t >= half else 1.0)
    control = run_stream(subject, steps, lambda t, shapes: noise(t, shapes, seed=4))

    def jump(u: Tensor) -> Tensor:
        return u[half : half + window].mean(0) / u[half - window : half].mean(0)

    response = jump(switched.update_rms) / jump(control.update_rms)
    return Adaptation(switched.names, switched.update_rms, control.update_rms, response, factor)


# ------------------------------------------------------------------ mixing
@dataclass
class Mixing:
    names: list[str]
    directions: tuple[str, ...]
    mix: Tensor  # [T, C, K] α of every tensor at every step


def mixing(subject: Subject, steps: int = 100) -> Mixing | None:
    """Which base directions each tensor uses over a run (L3RS only; ``None`` otherwise)."""
    trace = run_stream(subject, steps, lambda t, shapes: noise(t, shapes, seed=5))
    if trace.mix is None or trace.directions is None:
        return None
    return Mixing(trace.names, trace.directions, trace.mix)
