"""Save, load and push meta-weights from the optimizer class, in huggingface_hub's
``ModelHubMixin`` convention (``from_pretrained`` / ``save_pretrained(push_to_hub=...)`` /
``push_to_hub``); the file formats live in :mod:`hf_l3rs.optim.hub`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

import hf_l3rs.optim.learned as learned
from hf_l3rs.optim.hub import load_net, save_net
from hf_l3rs.optim.hub import push_to_hub as upload_folder
from hf_l3rs.optim.network import L3RSNet


class PretrainedMixin:
    """For an optimizer class whose constructor takes ``(params, net, **kwargs)`` and which
    holds ``net`` and ``components``."""

    net: L3RSNet
    components: list[Any]

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        params: Any = None,
        *,
        total_steps: int | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool | None = None,
        token: str | bool | None = None,
        lr: float = 1.0,
        weight_decay: float = 0.0,
        implementation: str = "auto",
        map_embeddings: bool = True,
        loss_from: nn.Module | None = None,
        model: nn.Module | None = None,
        **overrides: Any,
    ) -> Any:
        """Load meta-weights from a local folder, a bundled name or a Hub repo id and bind them
        to ``params`` (a model, its parameters or param groups; with groups or bare tensors pass
        ``model`` too, as in the constructor, so that components keep their names and roles).
        ``overrides`` replace config fields that do not change the network's shape (e.g.
        ``base_lr``, ``rate_clamp``)."""
        if params is None:
            raise TypeError(
                f"{cls.__name__}.from_pretrained needs the parameters it will optimise: "
                f"{cls.__name__}.from_pretrained({name_or_path!r}, model, total_steps=...) "
                "(or model.named_parameters())."
            )
        net = load_net(
            name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token,
            **overrides,
        )  # fmt: skip
        if not isinstance(net, L3RSNet):
            other = learned.for_net(net)
            owner = other.optimizer.__name__ if other else "the optimizer class they were trained for"
            raise TypeError(
                f"{name_or_path!r} holds {type(net).__name__} meta-weights, not L3RS's; load them with "
                f"{owner}.from_pretrained(...)"
            )
        return cls(  # type: ignore[call-arg]
            params,
            net,
            total_steps=total_steps,
            lr=lr,
            weight_decay=weight_decay,
            implementation=implementation,
            map_embeddings=map_embeddings,
            loss_from=loss_from,
            model=model,
        )

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        card: dict[str, Any] | None = None,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str | None = None,
        create_pr: bool = False,
        branch: str | None = None,
    ) -> str | None:
        """Write ``model.safetensors``, ``config.json`` and a model card (``README.md``;
        ``card`` fills it, see ``hf_l3rs.optim.cards.render_card``; meta-weights loaded with a
        card keep its history). With ``push_to_hub=True`` also upload the folder to
        ``repo_id`` (default: the folder's name) and return the commit URL."""
        save_net(self.net, save_directory, components=self.components, card=card)
        if not push_to_hub:
            return None
        return upload_folder(
            save_directory,
            repo_id or Path(save_directory).name,
            private=private,
            token=token,
            commit_message=commit_message,
            create_pr=create_pr,
            branch=branch,
        )

    def push_to_hub(
        self,
        repo_id: str,
        *,
        card: dict[str, Any] | None = None,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str | None = None,
        create_pr: bool = False,
        branch: str | None = None,
    ) -> str:
        """Save the meta-weights to a temporary folder and upload them to ``repo_id``
        (safetensors, JSON and card only). Returns the commit URL."""
        with tempfile.TemporaryDirectory() as tmp:
            url = self.save_pretrained(
                tmp, card=card, push_to_hub=True, repo_id=repo_id, private=private, token=token,
                commit_message=commit_message, create_pr=create_pr, branch=branch,
            )  # fmt: skip
        assert url is not None  # push_to_hub=True returns the commit URL
        return url
