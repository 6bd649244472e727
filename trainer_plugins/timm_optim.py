"""Register L3RS in timm's optimizer registry: ``create_optimizer_v2(model, "l3rs", ...)``.

timm takes the part of the name after the last ``_``, so the name has no underscore. Extra
keyword arguments reach L3RS (``total_steps``, ``net`` or ``pretrained`` for meta-weights).
timm regroups the model's tensors (decay / no-decay) and drops their names: pass
``model=model`` too, so L3RS sees each tensor under its name, role and place in the model
(without it the tensors are ``param_0 …`` in timm's order, and meta-weights trained on this
architecture would meet its tensors in the wrong order)."""

from __future__ import annotations

from typing import Any

from hf_l3rs.optim import L3RS


class _TimmL3RS(L3RS):
    """Accepts the ``lr``/``weight_decay`` timm passes and ``pretrained=`` meta-weights."""

    def __init__(
        self,
        params: Any,
        lr: float | None = None,
        weight_decay: float = 0.0,
        pretrained: str | None = None,
        **kwargs: Any,
    ) -> None:
        net = kwargs.pop("net", None)
        if pretrained is not None:
            from hf_l3rs.optim.hub import load_net

            net = load_net(pretrained)
        super().__init__(params, net, lr=1.0 if lr is None else lr, weight_decay=weight_decay, **kwargs)


def register() -> None:
    from timm.optim._optim_factory import OptimInfo, default_registry

    if "l3rs" in default_registry.list_optimizers():
        return
    default_registry.register(
        OptimInfo(
            name="l3rs",
            opt_class=_TimmL3RS,
            description="L3RS learned optimizer (hf_l3rs); lr is a multiplier of the learned rate (use 1.0)",
            has_momentum=False,
            has_betas=False,
            has_eps=False,
            defaults={"lr": 1.0},
        )
    )
