"""The compiled backend (docs/design.md §1 "Backends"): the step's two passes written once per
tensor and handed to ``torch.compile``, which Inductor lowers to C++/OpenMP on the CPU and to
Triton kernels on CUDA.

Like the fused C++ kernels it never materialises the base directions between the passes:
``probe`` computes their norms, ``commit`` recomputes them and writes the parameters and the
state in the same fused loops. Unlike them it covers every registered direction, any float
dtype and any device Inductor supports, because it is written with the directions'
single-tensor ``reference`` formulas. Everything that changes from step to step (the step
count, the hyper-parameters, the coefficients) enters as a tensor, so one graph serves a whole
run; a new model (other shapes) or another direction set compiles once more.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hf_l3rs.optim.backends import FOREACH, FUSED, Backend, Probe, Stepped, fused_blocker, sample_offset
from hf_l3rs.optim.directions import get_direction
from hf_l3rs.optim.sampling import adam_sums, estimates, is_sampled

#: one direction's state tensors of one component, by key
_State = dict[str, Tensor]


def _directions(
    names: tuple[str, ...], p: Tensor, g: Tensor, states: list[_State], hyper: list[dict[str, Tensor]], step: Tensor
) -> tuple[list[Tensor], list[_State]]:
    dirs, news = [], []
    for name, state, hp in zip(names, states, hyper):
        d, new = get_direction(name).reference(p, g, state, hp, step)  # type: ignore[arg-type]
        dirs.append(d)
        news.append(new)
    return dirs, news


def probe_pass(
    names: tuple[str, ...],
    params: list[Tensor],
    grads: list[Tensor],
    states: list[list[_State]],
    hyper: list[dict[str, Tensor]],
    step: Tensor,
    offset: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Norms of every base direction [n, K] and of every gradient [n] (float64), and Adam's
    sampled sums [n, 5] (optim/sampling.py; zeros without Adam): its column of the norms is
    set from those by the caller."""
    dnorm, gnorm, sums = [], [], []
    adam = names.index("adam") if "adam" in names else None
    for p, g, st in zip(params, grads, states):
        dirs, _ = _directions(names, p, g, st, hyper, step)
        dnorm.append(torch.stack([torch.linalg.vector_norm(d).double() for d in dirs]))
        gnorm.append(torch.linalg.vector_norm(g).double())
        if adam is not None:
            sums.append(adam_sums(p, dirs[adam], g, st[adam]["exp_avg"], offset))
        else:
            sums.append(torch.zeros(5, dtype=torch.float64, device=p.device))
    return torch.stack(dnorm), torch.stack(gnorm), torch.stack(sums)


def commit_pass(
    names: tuple[str, ...],
    params: list[Tensor],
    grads: list[Tensor],
    states: list[list[_State]],
    hyper: list[dict[str, Tensor]],
    step: Tensor,
    coef: Tensor,
    decay: Tensor,
    finite: Tensor,
) -> Tensor:
    """p ← (1 − decay)·p − Σ_k coef[:, k]·d_k and the new state, where ``finite``; returns the
    parameters' new norms [n] (float64)."""
    norms = []
    for i, (p, g, st) in enumerate(zip(params, grads, states)):
        dirs, news = _directions(names, p, g, st, hyper, step)
        update = coef[i, 0] * dirs[0]
        for k in range(1, len(dirs)):
            update = update + coef[i, k] * dirs[k]
        new_p = (1 - decay[i]) * p - update
        p.copy_(torch.where(finite[i], new_p, p))
        for old, new in zip(st, news):
            for key, value in new.items():
                old[key].copy_(torch.where(finite[i], value, old[key]))
        norms.append(torch.linalg.vector_norm(p).double())
    return torch.stack(norms)


@functools.cache
def _compiled(fn_name: str) -> Any:
    fn = {"probe": probe_pass, "commit": commit_pass}[fn_name]
    return torch.compile(fn, dynamic=False)


def compiled_unavailable_reason() -> str | None:
    """Why ``torch.compile`` cannot serve here (``None`` when it can)."""
    if not hasattr(torch, "compile"):
        return "this torch has no torch.compile"
    try:
        importlib.import_module("torch._dynamo")
    except Exception as exc:  # pragma: no cover - depends on the torch build
        return f"torch._dynamo cannot be imported ({exc})"
    return None


@dataclass
class CompiledProbe(Probe):
    params: list[Tensor]
    grads: list[Tensor]
    states: list[list[_State]]
    hyper: list[dict[str, Tensor]]
    step: Tensor


class CompiledBackend:
    name = "compiled"

    def probe(self, opt: Stepped, active: list[int], hyper: dict[str, dict[str, float]]) -> CompiledProbe:
        names = tuple(opt.config.directions)
        params = [opt._params[j] for j in active]
        grads = [p.grad for p in params]
        device = params[0].device
        states = [
            [{key: opt.state[p][f"{name}.{key}"] for key in get_direction(name).state_keys} for name in names]
            for p in params
        ]
        hp = [
            {key: torch.tensor(value, dtype=torch.float64, device=device) for key, value in hyper[name].items()}
            for name in names
        ]
        # the compiled path runs only when every component is at the same step
        step = torch.tensor(float(opt.state[params[0]]["step"] + 1), dtype=torch.float64, device=device)
        offset = torch.tensor(sample_offset(opt), device=device)
        dnorm, gnorm, sums = (t.cpu() for t in _compiled("probe")(names, params, grads, states, hp, step, offset))
        if "adam" in names:  # on large tensors Adam's norm follows the sampling rule
            big = torch.tensor([is_sampled(p.numel()) for p in params])
            numel = torch.tensor([p.numel() for p in params], dtype=torch.float64)
            sampled = estimates(numel, gnorm**2, sums)[0]
            dnorm[:, names.index("adam")] = torch.where(big, sampled, dnorm[:, names.index("adam")])
        return CompiledProbe(dnorm, gnorm, params, grads, states, hp, step)

    def commit(
        self, opt: Stepped, active: list[int], coef: Tensor, decay: Tensor, finite: Tensor, probe: Probe
    ) -> None:
        assert isinstance(probe, CompiledProbe)
        device = probe.params[0].device
        sq = _compiled("commit")(
            tuple(opt.config.directions),
            probe.params,
            probe.grads,
            probe.states,
            probe.hyper,
            probe.step,
            coef.to(device),
            decay.to(device),
            finite.to(device),
        )
        sq = sq.cpu()
        for pos, (j, ok) in enumerate(zip(active, finite.tolist())):
            opt._pnorm[j] = float(sq[pos])
            if ok:
                opt.state[opt._params[j]]["step"] += 1


COMPILED = CompiledBackend()


def implementation_blocker(implementation: str, directions: tuple[str, ...], params: list[Tensor]) -> str | None:
    """Why an explicitly requested implementation cannot run on these tensors (``None``: it can)."""
    if implementation == "fused":
        return fused_blocker(directions, params, check_grads=False)
    if implementation == "compiled":
        return compiled_unavailable_reason()
    return None


def choose_backend(
    implementation: str, steps: set[int], directions: tuple[str, ...], params: list[Tensor], states: list[dict]
) -> Backend:
    """The backend of one step: the two-pass ones need every component at the same step
    (tensors without gradients on some steps fall back to foreach for those steps); the C++
    kernels need a parameter, its gradient and its state in one memory layout (a step where
    they differ, e.g. after ``model.to(memory_format=...)``, runs on foreach: same math)."""
    if implementation == "foreach" or len(steps) != 1:
        return FOREACH
    if implementation == "compiled":
        return COMPILED
    if fused_blocker(directions, params, check_grads=True, states=states) is None:
        return FUSED
    return FOREACH
