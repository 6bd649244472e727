"""The two implementations of L3RS's step (docs/design.md §1 "Backends"), behind one interface.

A step is two passes (docs/design.md §1 "Non-finite numbers"): ``probe`` computes every
active component's base directions and their norms without writing anything, then L3RS
runs its features and network and, once the coefficients are known, ``commit`` writes the
parameters and the directions' state (skipping the components whose numbers were not
finite). A backend returns a :class:`Probe` with the norms L3RS needs; what it keeps for its
own commit is in its subclass, so no untyped dictionary crosses the interface.

- :class:`FusedBackend`: C++/OpenMP kernels (``optim/csrc``) for float32 CPU tensors and
  directions in {sgd, adam, weight_decay}, every component at the same step.
- :class:`ForeachBackend`: ``torch._foreach_*`` over the direction registry, any device,
  dtype and direction set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from hf_l3rs.optim.directions import get_direction, widened
from hf_l3rs.optim.fused import FUSED_DIRECTIONS, fused_unavailable_reason, load_fused
from hf_l3rs.optim.sampling import SAMPLE_EVERY, adam_sums, estimates, is_sampled


class Stepped(Protocol):
    """What a backend reads and writes of the optimizer: its tensors in component order,
    torch's per-tensor state, the config's directions and each tensor's norm (float64)."""

    _params: list[Tensor]
    _pnorm: Tensor
    _step: int
    state: Any
    config: Any


def sample_offset(opt: Stepped) -> int:
    """Which pages Adam's sums read on large tensors this step (optim/sampling.py)."""
    return opt._step % SAMPLE_EVERY


def _dense(t: Tensor) -> bool:
    """Contiguous in some dimension order (plain, channels-last, transposed): no overlap, no gaps."""
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _all_plain(params: list[Tensor], check_grads: bool, states: list[dict] | None) -> bool:
    """Every parameter a contiguous float32 CPU tensor, and so its gradient and state: the
    common case, checked once a step in a few C calls per tensor instead of comparing strides."""
    for i, p in enumerate(params):
        if p.dtype != torch.float32 or p.device.type != "cpu" or not p.is_contiguous():
            return False
        if check_grads and p.grad is not None and not p.grad.is_contiguous():
            return False
        if states is not None and not all(v.is_contiguous() for v in states[i].values() if isinstance(v, Tensor)):
            return False
    return True


def fused_blocker(
    directions: tuple[str, ...], params: list[Tensor], check_grads: bool, states: list[dict] | None = None
) -> str | None:
    """Why the fused kernels cannot run on these tensors now (``None`` when they can). The
    kernels walk memory, so a parameter, its gradient and its state must share one layout
    (with ``check_grads`` / ``states``: checked at the step)."""
    if not set(directions) <= FUSED_DIRECTIONS:
        return f"directions {directions} are not all in {sorted(FUSED_DIRECTIONS)}"
    if not _all_plain(params, check_grads, states):
        reason = _layout_blocker(params, check_grads, states)
        if reason:
            return reason
    if load_fused() is None:
        return f"the C++ kernels could not be built ({fused_unavailable_reason()})"
    return None


def _layout_blocker(params: list[Tensor], check_grads: bool, states: list[dict] | None) -> str | None:
    for i, p in enumerate(params):
        if p.device.type != "cpu" or p.dtype != torch.float32:
            return "fused kernels need float32 parameters on the CPU"
        if not _dense(p):
            return "fused kernels need dense parameters (no gaps between elements)"
        if check_grads and p.grad is not None and p.grad.stride() != p.stride():
            return "a gradient's memory layout differs from its parameter's"
        if states is not None and any(
            isinstance(v, Tensor) and v.shape == p.shape and v.stride() != p.stride() for v in states[i].values()
        ):
            return "an optimizer state's memory layout differs from its parameter's"
    return None


@dataclass
class Probe:
    """Norms of the active components: ``dnorm`` [n, K] of each base direction and
    ``gnorm`` [n] of the gradient, float64 on the CPU (NaN/inf where not finite);
    ``agreement`` [n, 2], g·m and |m|² with Adam's momentum before this step, where the
    backend computed them in its pass (None: rate adaptation computes them itself)."""

    dnorm: Tensor
    gnorm: Tensor
    agreement: Tensor | None = field(default=None, kw_only=True)


@dataclass
class FusedProbe(Probe):
    params: list[Tensor]
    grads: list[Tensor]
    exp_avg: list[Tensor]
    exp_avg_sq: list[Tensor]
    adam_args: tuple[Any, ...]


@dataclass
class ForeachProbe(Probe):
    #: directions[k][i]: base direction k of active component i (prospective, not written)
    directions: list[list[Tensor]]
    #: new_states[i]: the state component i will hold once committed
    new_states: list[dict[str, Tensor]]


class Backend(Protocol):
    name: str

    def probe(self, opt: Stepped, active: list[int], hyper: dict[str, dict[str, float]]) -> Probe: ...

    def commit(
        self, opt: Stepped, active: list[int], coef: Tensor, decay: Tensor, finite: Tensor, probe: Probe
    ) -> None:
        """Write p ← (1 − decay)·p − Σ_k coef[:, k]·d_k and the new state for components
        with ``finite``; update ``opt``'s parameter norms and per-tensor step counts."""
        ...


class FusedBackend:
    name = "fused"

    def probe(self, opt: Stepped, active: list[int], hyper: dict[str, dict[str, float]]) -> FusedProbe:
        kernels = load_fused()
        params = [opt._params[j] for j in active]
        grads = [p.grad for p in params]
        step = opt.state[params[0]]["step"] + 1  # the fused path runs only when all agree
        has_adam = "adam" in opt.config.directions
        m = [opt.state[p]["adam.exp_avg"] for p in params] if has_adam else []
        v = [opt.state[p]["adam.exp_avg_sq"] for p in params] if has_adam else []
        h = hyper.get("adam", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8})
        adam_args = (has_adam, h["beta1"], h["beta2"], h["eps"], 1 - h["beta1"] ** step, 1 - h["beta2"] ** step)
        sums = kernels.probe(grads, m, v, sample_offset(opt), *adam_args)
        gnorm = torch.sqrt(sums[:, 0])
        numel = torch.tensor([p.numel() for p in params], dtype=torch.float64)
        adam_norm, agreement = estimates(numel, sums[:, 0], sums[:, 1:]) if has_adam else (None, None)
        cols = []
        for dname in opt.config.directions:
            if dname == "sgd":
                cols.append(gnorm)
            elif dname == "adam":
                cols.append(adam_norm)
            else:  # weight_decay: d = p
                cols.append(opt._pnorm[active])
        return FusedProbe(torch.stack(cols, dim=1), gnorm, params, grads, m, v, adam_args, agreement=agreement)

    def commit(
        self, opt: Stepped, active: list[int], coef: Tensor, decay: Tensor, finite: Tensor, probe: Probe
    ) -> None:
        assert isinstance(probe, FusedProbe)
        dirs = opt.config.directions
        c = torch.zeros(len(active), 3, dtype=torch.float64)
        if "sgd" in dirs:
            c[:, 0] = -coef[:, dirs.index("sgd")]
        if "adam" in dirs:
            c[:, 1] = -coef[:, dirs.index("adam")]
        c[:, 2] = -decay
        if "weight_decay" in dirs:
            c[:, 2] -= coef[:, dirs.index("weight_decay")]
        sq = load_fused().commit(
            probe.params, probe.grads, probe.exp_avg, probe.exp_avg_sq, c, ~finite, *probe.adam_args
        )
        opt._pnorm[active] = torch.sqrt(sq)
        for j, ok in zip(active, finite.tolist()):
            if ok:
                opt.state[opt._params[j]]["step"] += 1


class ForeachBackend:
    name = "foreach"

    def probe(self, opt: Stepped, active: list[int], hyper: dict[str, dict[str, float]]) -> ForeachProbe:
        # Bias corrections use each tensor's own step: group the components by it.
        by_step: dict[int, list[int]] = {}
        for pos, j in enumerate(active):
            by_step.setdefault(opt.state[opt._params[j]]["step"] + 1, []).append(pos)
        k = len(opt.config.directions)
        dirs: list[list[Tensor | None]] = [[None] * len(active) for _ in range(k)]
        new_states: list[dict[str, Tensor]] = [{} for _ in active]
        wide_grads_all: list[Tensor | None] = [None] * len(active)  # float16 widened once a step
        for step, positions in by_step.items():
            params = [opt._params[active[i]] for i in positions]
            wide_params, wide_grads = _widened(params), _widened([p.grad for p in params])
            for i, pos in enumerate(positions):
                wide_grads_all[pos] = wide_grads[i]
            for kk, dname in enumerate(opt.config.directions):
                direction = get_direction(dname)
                states = {key: [opt.state[p][f"{dname}.{key}"] for p in params] for key in direction.state_keys}
                d, new = direction.compute(wide_params, wide_grads, states, hyper[dname], step)
                for i, pos in enumerate(positions):
                    dirs[kk][pos] = d[i]
                    for key, lst in new.items():
                        new_states[pos][f"{dname}.{key}"] = lst[i]
        gnorm = torch.stack(torch._foreach_norm(wide_grads_all)).to("cpu", torch.float64)  # type: ignore[arg-type]
        cols = [torch.stack(torch._foreach_norm(d)).to("cpu", torch.float64) for d in dirs]
        names = opt.config.directions
        if "adam" in names:  # on large tensors Adam's norm follows the sampling rule (optim/sampling.py)
            big = [pos for pos, j in enumerate(active) if is_sampled(opt._params[j].numel())]
            adam = names.index("adam")
            for pos in big:
                p = opt._params[active[pos]]
                m = opt.state[p]["adam.exp_avg"]
                sums = adam_sums(p, dirs[adam][pos], wide_grads_all[pos], m, sample_offset(opt))[None].cpu()
                cols[adam][pos] = estimates(torch.tensor([float(p.numel())]), gnorm[pos : pos + 1] ** 2, sums)[0][0]
        return ForeachProbe(torch.stack(cols, dim=1), gnorm, dirs, new_states)  # type: ignore[arg-type]

    def commit(
        self, opt: Stepped, active: list[int], coef: Tensor, decay: Tensor, finite: Tensor, probe: Probe
    ) -> None:
        assert isinstance(probe, ForeachProbe)
        ok = [pos for pos, f in enumerate(finite.tolist()) if f]
        if not ok:
            return
        params = [opt._params[active[pos]] for pos in ok]
        update: list[Tensor] | None = None
        for kk in range(len(opt.config.directions)):
            d = [probe.directions[kk][pos] for pos in ok]
            scaled = torch._foreach_mul(d, [float(coef[pos, kk]) for pos in ok])
            if update is None:
                update = scaled
            else:
                torch._foreach_add_(update, scaled)
        if float(decay.abs().max()) > 0:
            torch._foreach_mul_(params, [1.0 - float(decay[pos]) for pos in ok])
        if any(p.dtype != u.dtype for p, u in zip(params, update)):  # float16 weights, float32 math
            update = [u.to(p.dtype) for p, u in zip(params, update)]
        torch._foreach_sub_(params, update)
        for pos in ok:
            p = opt._params[active[pos]]
            for key, value in probe.new_states[pos].items():
                opt.state[p][key].copy_(value)
            opt.state[p]["step"] += 1
        norms = torch._foreach_norm(_widened(params))
        for pos, nrm in zip(ok, norms):
            opt._pnorm[active[pos]] = float(nrm)


def fill_missing_norms(pnorm: Tensor, params: list[Tensor], idx: list[int]) -> None:
    """‖p‖ of the tensors ``idx`` not yet measured (NaN in ``pnorm``): the commit keeps the rest."""
    missing = [idx[i] for i in torch.isnan(pnorm[idx]).nonzero().flatten().tolist()]
    if missing:
        for j, nrm in zip(missing, torch._foreach_norm(_widened([params[j] for j in missing]))):
            pnorm[j] = float(nrm)


def _widened(tensors: list[Tensor]) -> list[Tensor]:
    """The tensors in the dtype their directions are computed in (float16 as float32)."""
    return [widened(t) for t in tensors]


FUSED: Backend = FusedBackend()
FOREACH: Backend = ForeachBackend()
