"""Components (one per trainable parameter tensor), their descriptors, and the mapping of
an unseen architecture's components onto the ones an L3RS was meta-trained on."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from hf_l3rs.optim.config import ROLES, L3RSConfig
from hf_l3rs.optim.network import L3RSNet
from hf_l3rs.verbosity import get_logger

logger = get_logger(__name__)

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM_WORDS = ("norm", "bn", "ln", "gn")


@dataclass(frozen=True)
class Component:
    """What L3RS knows about one parameter tensor."""

    name: str
    role: str
    depth: float
    numel: int


def _module_roles(model: nn.Module) -> dict[int, str]:
    """Map ``id(param)`` to a role using the owning module's type."""
    roles: dict[int, str] = {}
    for module in model.modules():
        if isinstance(module, _CONV):
            kind = "conv"
        elif isinstance(module, nn.Linear):
            kind = "linear"
        elif isinstance(module, nn.Embedding | nn.EmbeddingBag):
            kind = "embedding"
        elif "norm" in type(module).__name__.lower():
            kind = "norm"
        else:
            continue
        for pname, p in module.named_parameters(recurse=False):
            # A tied tensor (an LM's input embedding reused as its output layer) keeps the
            # role of the module it is first found in, the one named_parameters() names it by.
            roles.setdefault(id(p), "bias" if pname.endswith("bias") else kind)
    return roles


def infer_role(name: str, p: Tensor, module_roles: dict[int, str] | None = None) -> str:
    """Role one-hot category of docs/design.md §1 (conv / linear / norm / bias / embedding / other)."""
    if module_roles and id(p) in module_roles:
        return module_roles[id(p)]
    lname = name.lower()
    if lname.endswith("bias"):
        return "bias"
    if "embed" in lname or "wte" in lname or "wpe" in lname:
        return "embedding"
    if p.dim() >= 3:
        return "conv"
    if p.dim() == 2:
        return "linear"
    if p.dim() == 1 and any(w in lname for w in _NORM_WORDS):
        return "norm"
    return "other"


def relative_depths(named: list[tuple[str, Tensor]], model: nn.Module | None = None) -> list[float]:
    """Each tensor's relative depth in [0, 1]: its position among all of the model's parameter
    tensors, frozen ones included, when the model is known and holds them all; else among
    ``named``. With everything trainable the two are the same; when part of the model is
    frozen (a linear probe, LoRA adapters) the trained tensors keep the depth they have in the
    network, so a probe's head is not read as the first layer of a backbone
    (docs/design.md §1 "Components")."""
    if model is not None:
        where = {id(p): i for i, (_, p) in enumerate(model.named_parameters())}
        if len(where) > 1 and all(id(p) in where for _, p in named):
            return [where[id(p)] / (len(where) - 1) for _, p in named]
    n = len(named)
    return [(i / (n - 1)) if n > 1 else 0.0 for i in range(n)]


def describe(named: list[tuple[str, Tensor]], model: nn.Module | None = None) -> list[Component]:
    """Descriptors for an ordered list of (name, parameter)."""
    module_roles = _module_roles(model) if model is not None else None
    depths = relative_depths(named, model)
    return [
        Component(name=name, role=infer_role(name, p, module_roles), depth=depth, numel=p.numel())
        for (name, p), depth in zip(named, depths)
    ]


def descriptor_matrix(components: list[Component], roles: Tensor | None = None) -> Tensor:
    """[C, len(ROLES) + 2] float32: role one-hot, relative depth, log numel. ``roles``
    (indices into ROLES) replaces the components' own roles, e.g. by :func:`stand_in_roles`."""
    rows = []
    for j, c in enumerate(components):
        role = c.role if roles is None else ROLES[int(roles[j])]
        onehot = [1.0 if role == r else 0.0 for r in ROLES]
        rows.append([*onehot, c.depth, math.log(max(c.numel, 1))])
    return torch.tensor(rows, dtype=torch.float32).reshape(len(components), len(ROLES) + 2)


def role_indices(components: list[Component]) -> Tensor:
    return torch.tensor([ROLES.index(c.role) for c in components], dtype=torch.long)


class EmbeddingMismatchError(ValueError):
    """The model's components do not match the checkpoint's and mapping is not allowed."""


#: The trained role a role the meta-weights never saw is presented as, in order of preference:
#: an embedding table is a weight matrix read row by row (linear), a normalisation gain a
#: vector like a bias, and so on. Used only for meta-weights trained with real roles.
STAND_INS: dict[str, tuple[str, ...]] = {
    "embedding": ("linear", "conv"),
    "conv": ("linear",),
    "linear": ("conv",),
    "norm": ("bias",),
    "bias": ("norm",),
    "other": ("linear", "conv"),
}


def stand_in_roles(roles: Tensor, trained_roles: Tensor) -> Tensor:
    """``roles`` with every role absent from ``trained_roles`` replaced by its first trained
    stand-in (:data:`STAND_INS`; kept when none was trained). A role one-hot the meta-network
    never saw in meta-training is an input it was not trained on: its output is arbitrary
    (SmolLM2's tied embedding: docs/adr/0006 "Unseen roles"). Meta-weights whose trained
    roles are the placeholder (all ``other``, an untrained network) keep every role."""
    seen = {ROLES[int(r)] for r in trained_roles}
    if seen == {"other"}:
        return roles.clone()
    out = roles.clone()
    for j, r in enumerate(roles.tolist()):
        role = ROLES[r]
        if role not in seen:
            stand_in = next((s for s in STAND_INS[role] if s in seen), role)
            out[j] = ROLES.index(stand_in)
    return out


def map_components(roles: Tensor, depths: Tensor, trained_roles: Tensor, trained_depths: Tensor) -> Tensor:
    """Index of the trained component each component borrows its embedding from: the
    trained component of the same role with the nearest relative depth (nearest depth of
    any role when that role was never trained)."""
    out = torch.empty(len(roles), dtype=torch.long)
    for j in range(len(roles)):
        same = (trained_roles == roles[j]).nonzero().flatten()
        pool = same if len(same) else torch.arange(len(trained_roles))
        dist = (trained_depths[pool] - depths[j]).abs()
        out[j] = pool[int(torch.argmin(dist))]  # argmin returns the first of ties
    return out


def normalize_params(params: Any) -> tuple[list[dict[str, Any]], list[list[str]], nn.Module | None]:
    """Accept a module, parameters, (name, parameter) pairs or param-group dicts.

    Returns torch-style groups (``params`` plain tensors, requires_grad only), the names
    per group, and the module when one was given (for role inference).
    """
    model = params if isinstance(params, nn.Module) else None
    if model is not None:
        params = list(model.named_parameters())
    if isinstance(params, Tensor):
        raise TypeError("L3RS params must be an iterable of tensors, not a single tensor")
    items = list(params) if isinstance(params, Iterable) else None
    if not items:
        raise ValueError("L3RS got an empty parameter list")
    raw_groups = items if isinstance(items[0], dict) else [{"params": items}]
    groups, names, counter = [], [], 0
    for g in raw_groups:
        if not isinstance(g, dict) or "params" not in g:
            raise TypeError("L3RS param groups must be dicts with a 'params' entry")
        plist = g["params"]
        plist = [plist] if isinstance(plist, Tensor) else list(plist)
        kept, kept_names = [], []
        for item in plist:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Tensor):
                name, p = item
            elif isinstance(item, Tensor):
                name, p = f"param_{counter}", item
            else:
                raise TypeError(f"L3RS cannot use {type(item).__name__} as a parameter")
            counter += 1
            if p.requires_grad:
                kept.append(p)
                kept_names.append(name)
        group = {k: v for k, v in g.items() if k != "params"}
        group["params"] = kept
        groups.append(group)
        names.append(kept_names)
    if not any(g["params"] for g in groups):
        raise ValueError("L3RS got no parameter that requires grad")
    return groups, names, model


_LOGGED: set[tuple] = set()


def log_mapping(components: list[Component], mapping: Tensor, trained: int, presented: Tensor | None = None) -> None:
    """Report, once per architecture, how it borrows embeddings and which roles stand in for
    roles the meta-weights never saw (never silently)."""
    shown_roles = [c.role for c in components] if presented is None else [ROLES[int(r)] for r in presented]
    signature = (
        trained,
        tuple((c.name, c.role, c.numel) for c in components),
        tuple(mapping.tolist()),
        tuple(shown_roles),
    )
    if signature in _LOGGED:
        return
    _LOGGED.add(signature)
    lines = [
        f"  {c.name} ({c.role if r == c.role else f'{c.role} seen as {r}'}, depth {c.depth:.2f}) <- trained #{int(m)}"
        for c, m, r in zip(components, mapping, shown_roles)
    ]
    shown = lines if len(lines) <= 12 else [*lines[:6], f"  ... {len(lines) - 12} more ...", *lines[-6:]]
    logger.info(
        "L3RS: this model's %d components are not the architecture the checkpoint was meta-trained "
        "on (%d components); each component uses the embedding of the trained component of the "
        "same role with the nearest relative depth:\n%s",
        len(components),
        trained,
        "\n".join(shown),
    )


def in_model_order(entries: list[tuple[int, str, Tensor]], model: nn.Module) -> list[tuple[int, str, Tensor]]:
    """Components sorted into ``model.named_parameters()`` order under the model's names;
    a tensor that is not the model's is an error (its role and depth would be guesses)."""
    where = {id(p): (i, name) for i, (name, p) in enumerate(model.named_parameters())}
    missing = [n for _, n, p in entries if id(p) not in where]
    if missing:
        raise ValueError(
            f"L3RS: {len(missing)} parameter(s) ({', '.join(missing[:3])}) do not belong to the model given as model="
        )
    return sorted(((gi, where[id(p)][1], p) for gi, _, p in entries), key=lambda e: where[id(e[2])][0])


def bind_components(
    components: list[Component],
    trained_roles: Tensor,
    trained_depths: Tensor,
    map_embeddings: bool,
) -> tuple[Tensor, Tensor]:
    """Which trained embedding row each component uses, and the role it is presented with.
    Identity only for the architecture the embeddings were trained on: same count AND the same
    role at every position (a 41-tensor BERT is not the 41-tensor ResNet); otherwise each
    component borrows the row of the same (or stand-in) role at the nearest depth, logged once,
    or, without ``map_embeddings``, an :class:`EmbeddingMismatchError`."""
    roles = role_indices(components)
    depths = torch.tensor([c.depth for c in components], dtype=torch.float32)
    num, trained = len(components), len(trained_roles)
    if trained == num and torch.equal(roles, trained_roles):
        return torch.arange(num), roles
    if not map_embeddings:
        other = ", with other roles," if trained == num else ""
        raise EmbeddingMismatchError(
            f"L3RS: this model has {num} components{other} but the meta-weights were trained on "
            f"{trained}; pass map_embeddings=True to map each component to the trained one of the "
            "same role and nearest depth, or use meta-weights trained on this model."
        )
    presented = stand_in_roles(roles, trained_roles)
    mapping = map_components(presented, depths, trained_roles, trained_depths)
    log_mapping(components, mapping, trained, presented)
    return mapping, presented


def network_for(net: L3RSNet | L3RSConfig | None, components: list[Component], seed: int) -> L3RSNet:
    """The meta-network an optimizer over ``components`` runs: given, or fresh from a config
    (``None``: the default config) sized for these components."""
    if net is None:
        net = L3RSConfig()
    if isinstance(net, L3RSConfig):
        num = len(components)
        config = net if net.num_components is not None else net.replace(num_components=num)
        if config.num_components != num:
            return L3RSNet(config, seed=seed)
        depths = torch.tensor([c.depth for c in components], dtype=torch.float32)
        return L3RSNet(config, role_indices(components), depths, seed=seed)
    if not isinstance(net, L3RSNet):
        raise TypeError(f"L3RS: net must be an L3RSNet or L3RSConfig, got {type(net).__name__}")
    return net


def trained_components(listed: Any, num_components: int | None, where: Any) -> list[dict[str, Any]] | None:
    """The components a meta-weights folder says it was trained on (kept by a re-save, read by
    nothing else): one {name, role, depth, numel} per component, or dropped with a warning."""
    if listed is None:
        return None
    keys = {"name", "role", "depth", "numel"}
    if (
        isinstance(listed, list)
        and len(listed) == num_components
        and all(isinstance(c, dict) and keys <= set(c) for c in listed)
    ):
        return listed
    import warnings

    warnings.warn(
        f"{where}: 'trained_components' is malformed (one {{name, role, depth, numel}} per component "
        f"expected, {num_components} components); it is dropped",
        UserWarning,
        stacklevel=3,
    )
    return None
