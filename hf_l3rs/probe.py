"""Linear probing with L3RS: train only a model's head, its body frozen in inference mode.

Why a helper: the measured probe (docs/adr/0006 "L3RS as a linear probe") keeps the frozen
body in inference mode, and two things undo that silently. ``requires_grad_(False)`` alone
leaves BatchNorm normalising with each batch's statistics and updating its running ones in
training mode (on A's validation tasks that costs a probe 1.4 points at ten steps), and
``transformers.Trainer`` calls ``model.train()`` before every step. ``freeze_body`` freezes
the body's tensors and has its modules run in inference mode whatever ``train()`` set.
"""

from __future__ import annotations

import weakref

from torch import nn

#: attribute names under which Hugging Face and torchvision models keep their classifier
_HEAD_ATTRIBUTES = ("classifier", "score", "fc", "head")


def find_head(model: nn.Module) -> nn.Module:
    """The model's classifier: timm's ``get_classifier()``, else the first of
    ``classifier`` / ``score`` / ``fc`` / ``head`` that is a module with parameters."""
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        if isinstance(head, nn.Module) and next(head.parameters(), None) is not None:
            return head
    for name in _HEAD_ATTRIBUTES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Module) and next(head.parameters(), None) is not None:
            return head
    raise ValueError(
        f"freeze_body: cannot tell which module of {type(model).__name__} is its head "
        f"(no get_classifier() and none of {_HEAD_ATTRIBUTES}); pass head=model.<your head>"
    )


def _inference_mode(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook: a frozen body's module runs as in ``eval()`` whatever ``train()`` set.
    A module-level function, so a hooked model still pickles and deep-copies."""
    module.training = False


#: model -> (its pre-hook handles, each parameter's requires_grad before freeze_body)
_FROZEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def freeze_body(model: nn.Module, head: nn.Module | None = None) -> nn.Module:
    """Freeze every parameter of ``model`` but ``head``'s (default: :func:`find_head`) and make
    every other module run in inference mode, also after ``model.train()``; returns the head.
    :func:`unfreeze_body` undoes it (a probe, then the whole model: LP-FT).

    Build L3RS over the whole model afterwards (``L3RS.from_pretrained(name, model)``): the
    frozen tensors count for depth, so the head is read as a head and calibrates its step."""
    if model in _FROZEN:
        raise ValueError("freeze_body: this model's body is frozen already (unfreeze_body first)")
    head = head if head is not None else find_head(model)
    head_modules = {id(m) for m in head.modules()}
    if not any(m is head for m in model.modules()):
        raise ValueError("freeze_body: head is not a submodule of model")
    head_params = {id(p) for p in head.parameters()}
    if not head_params:
        raise ValueError("freeze_body: the head has no parameters to train")
    before = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in head_params)
    handles = []
    for module in model.modules():
        if id(module) not in head_modules and module is not model:
            module.training = False
            handles.append(module.register_forward_pre_hook(_inference_mode))
    _FROZEN[model] = (handles, before)
    return head


def unfreeze_body(model: nn.Module) -> None:
    """Undo :func:`freeze_body`: every parameter gets back the ``requires_grad`` it had, the
    body's modules follow ``train()``/``eval()`` again, and the model takes ``model.training``'s
    mode. Build a new optimizer afterwards: an optimizer's tensors are fixed when it is made.
    (A pickled or deep-copied frozen model stays frozen: its hooks travel with it.)"""
    if model not in _FROZEN:
        raise ValueError("unfreeze_body: freeze_body was not called on this model")
    handles, before = _FROZEN.pop(model)
    for handle in handles:
        handle.remove()
    for p in model.parameters():
        p.requires_grad_(before.get(id(p), True))
    model.train(model.training)
