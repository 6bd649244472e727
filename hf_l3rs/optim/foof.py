"""FOOF, gradient descent on neurons (Benzing, ICML 2022): each linear layer's gradient
times the inverse of the damped second moment of the layer's inputs.

Why it is here: it is the strongest hand-designed linear probe found on the kanji tasks
(docs/adr/0006 "FOOF: a stronger linear probe"), so the tuned benchmark must have it as a
baseline family (registry kind ``foof``) before a learned rule claims a win on short runs. It
is K-FAC with the output factor left out, and it needs the layers' *inputs*, which an
optimizer handed only parameters never sees: it takes the model and hooks its linear layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from hf_l3rs.optim.direction_optimizer import closure_loss
from hf_l3rs.optim.directions import damped_eigh


class FOOF(torch.optim.Optimizer):
    """``W -= lr · [G, g_b] · (Â + δ·λ_max(Â)·I)^(-1)`` for every ``nn.Linear`` of ``model``
    whose weight is optimised (its bias, if trained, joins as a homogeneous input
    coordinate), ``Â`` the bias-corrected EMA (``beta``) of the inputs' second moment
    ``xxᵀ`` recorded by a forward hook on steps with autograd on; plain SGD on every
    other tensor. ``lr = 1`` (the default) is a full step of the input-whitened least-squares
    update; the benchmark's tuned head-only rates ranged 0.1–3.2 on pretrained features (3.2
    on the kanji ones), and no rate was tuned for whole networks.

    The hooks record only forwards run with gradients enabled (evaluation under
    ``torch.no_grad()`` does not count) and sum several forwards before one step
    (gradient accumulation). :meth:`remove_hooks` detaches them."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        model: nn.Module,
        lr: float = 1.0,
        beta: float = 0.95,
        damping: float = 1e-2,
        max_fan_in: int = 2048,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"FOOF needs the model whose linear layers it preconditions, got {type(model).__name__}")
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr!r}")
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta!r}")
        if not damping > 0:
            raise ValueError(f"damping must be positive, got {damping!r}")
        super().__init__(params, {"lr": lr})
        self.beta, self.damping, self.max_fan_in = beta, damping, max_fan_in
        optimised = {id(p) for group in self.param_groups for p in group["params"]}
        #: id(weight) -> (layer, bias or None); the bias is preconditioned with its weight
        self._layers: dict[int, tuple[nn.Linear, Tensor | None]] = {}
        self._pending: dict[int, list] = {}  # id(weight) -> [Σ xxᵀ, rows] since the last step
        self._handles = []
        for module in model.modules():
            if not isinstance(module, nn.Linear) or id(module.weight) not in optimised:
                continue
            bias = module.bias if module.bias is not None and id(module.bias) in optimised else None
            if module.in_features + (bias is not None) > max_fan_in:
                continue
            self._layers[id(module.weight)] = (module, bias)
            self._handles.append(module.register_forward_hook(self._record))

    def _record(self, module: nn.Linear, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
        if not torch.is_grad_enabled():
            return
        x = inputs[0].detach().reshape(-1, module.in_features).double()
        if self._layers[id(module.weight)][1] is not None:
            x = torch.cat([x, x.new_ones(len(x), 1)], dim=1)
        pending = self._pending.setdefault(id(module.weight), [0.0, 0])
        pending[0] = pending[0] + x.T @ x
        pending[1] += len(x)

    def remove_hooks(self) -> None:
        """Detach the forward hooks (the optimizer then steps like SGD on every tensor)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._layers.clear()

    def _whitened(self, weight: Tensor, bias: Tensor | None) -> Tensor | None:
        """[G, g_b] · (Â + δλ_max I)^(-1); None before the layer's first recorded input (the
        step is then SGD's), NaN when this step's inputs or the gradient are not finite (the
        step skips the layer; non-finite inputs never enter the EMA)."""
        state = self.state[weight]
        pending = self._pending.pop(id(weight), None)
        g = weight.grad.double()
        if bias is not None:
            g = torch.cat([g, bias.grad.double()[:, None]], dim=1)
        if pending is not None and pending[1] > 0:
            moment = pending[0] / pending[1]
            if not bool(torch.isfinite(moment).all()):
                return torch.full_like(g, float("nan"))  # kept out of the EMA: later steps recover
            state["count"] = state.get("count", 0) + 1
            previous = state.get("input_moment", torch.zeros_like(moment))
            state["input_moment"] = self.beta * previous + (1 - self.beta) * moment
        if "input_moment" not in state:
            return None
        a = state["input_moment"] / (1 - self.beta ** state["count"])
        eig = damped_eigh(a, self.damping)
        if eig is None:
            return torch.full_like(g, float("nan"))
        e, v = eig
        return ((g @ v) / e) @ v.T

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = closure_loss(closure)
        lr = {id(p): group["lr"] for group in self.param_groups for p in group["params"]}
        done: set[int] = set()
        for key, (module, bias) in self._layers.items():
            weight = module.weight
            if weight.grad is None or (bias is not None and bias.grad is None):
                continue
            d = self._whitened(weight, bias)
            if d is None:
                continue  # no input recorded yet: SGD below
            done.update({key} if bias is None else {key, id(bias)})
            if not bool(torch.isfinite(d).all()):
                continue  # a non-finite gradient or input moment: this layer skips the step
            weight.sub_(d[:, : module.in_features].to(weight.dtype), alpha=lr[key])
            if bias is not None:
                bias.sub_(d[:, -1].to(bias.dtype), alpha=lr[id(bias)])
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and id(p) not in done and bool(torch.isfinite(p.grad).all()):
                    p.sub_(p.grad, alpha=group["lr"])
        return loss
