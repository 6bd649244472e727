"""All Hub I/O: meta-weights as safetensors + ``config.json`` + a model card.

This is the only module that talks to ``huggingface_hub``. Nothing loaded from outside is
ever unpickled: tensors come from safetensors, everything else from JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import hf_l3rs.optim.learned as learned
from hf_l3rs.optim.components import Component, trained_components
from hf_l3rs.optim.config import ConfigError, L3RSConfig, drop_removed_fields
from hf_l3rs.optim.network import L3RSNet

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
FORMAT = "hf_l3rs/1"
LIBRARY_NAME = "hf_l3rs"
# Fields that change the network's shape or meaning and so may not be overridden on load
# (``directions`` only by directions that extend the saved ones: ``with_directions``).
SHAPE_FIELDS = {
    "directions",
    "ema_betas",
    "relative_time_points",
    "absolute_time_scales",
    "embedding",
    "embedding_dim",
    "descriptor",
    "hidden_sizes",
    "variant",
    "num_components",
}


#: Meta-weights shipped inside the package (``L3RS.from_pretrained("l3rs-general", model)``).
BUNDLED_DIR = Path(__file__).parent.parent / "pretrained"  # hf_l3rs/pretrained


def bundled_weights() -> list[str]:
    """Names of the meta-weights shipped with the package."""
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / CONFIG_NAME).is_file()) if BUNDLED_DIR.is_dir() else []


class CheckpointError(ValueError):
    """A meta-weights folder is missing a file or holds a corrupt one."""


class HubError(RuntimeError):
    """Talking to the Hub failed; the message names the repo and the endpoint."""


def _endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def _version() -> str:
    from hf_l3rs._version import __version__

    return __version__


def save_net(
    net: L3RSNet,
    save_directory: str | os.PathLike,
    *,
    components: list[Component] | None = None,
    card: dict[str, Any] | None = None,
    **card_info: Any,
) -> Path:
    """Write the meta-weights folder. ``card``/``card_info`` fill the model card
    (meta-training provenance, evaluation tables)."""
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {"format": FORMAT, "library_version": _version()}
    save_file(tensors, str(out / WEIGHTS_NAME), metadata=meta)
    other = learned.for_net(net)
    kind = other.config_key if other else "l3rs"
    config = {
        "format": FORMAT,
        "library_name": LIBRARY_NAME,
        "library_version": _version(),
        kind: net.config.to_dict(),
        "hyper_parameters": net.hyper_values(),
        # what a loaded folder listed is kept by a re-save unless new components are given
        "trained_components": [
            {"name": c.name, "role": c.role, "depth": round(c.depth, 6), "numel": c.numel} for c in components
        ]
        if components
        else getattr(net, "trained_components", None),
    }
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    from hf_l3rs.optim.cards import render_card

    # A re-save keeps what the loaded card recorded (meta-training, evaluation, model-index)
    # unless the caller gives new values.
    info = {**getattr(net, "card_info", {}), **(card or {}), **card_info}
    (out / CARD_NAME).write_text(render_card(net, info))
    return out


def resolve(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> Path:
    """A local folder as is, or a Hub repo id through the HF cache (``local_files_only``
    or ``HF_HUB_OFFLINE=1`` never touch the network)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    bundled = BUNDLED_DIR / str(name_or_path)
    if "/" not in str(name_or_path) and (bundled / CONFIG_NAME).is_file():
        return bundled
    if path.exists():
        raise CheckpointError(f"{path} is a file; from_pretrained expects a folder or a Hub repo id")
    if "/" not in str(name_or_path):
        raise CheckpointError(
            f"{str(name_or_path)!r} is not a local folder nor meta-weights bundled with hf_l3rs "
            f"(bundled: {', '.join(bundled_weights()) or 'none'}); a Hub repo id looks like 'org/name'"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "0") in ("1", "true", "True")
    try:
        folder = snapshot_download(
            repo_id=str(name_or_path),
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, CARD_NAME],
        )
    except HFValidationError as exc:
        raise CheckpointError(f"{name_or_path!r} is neither a local folder nor a valid Hub repo id") from exc
    except LocalEntryNotFoundError as exc:
        if local_files_only:
            why = "local_files_only=True" if os.environ.get("HF_HUB_OFFLINE", "0") == "0" else "HF_HUB_OFFLINE=1"
            raise CheckpointError(
                f"{name_or_path!r} is not a local folder and is not in the Hugging Face cache ({why}, so the "
                f"Hub at {_endpoint()} was not asked)"
            ) from exc
        raise HubError(f"cannot download {name_or_path!r} from {_endpoint()}: {exc}") from exc
    except Exception as exc:  # network, auth, missing repo: name what and where
        raise HubError(f"cannot download {name_or_path!r} from {_endpoint()}: {type(exc).__name__}: {exc}") from exc
    return Path(folder)


def load_config(folder: Path, saved: dict[str, Any] | None = None) -> L3RSConfig:
    """The folder's L3RSConfig; ``saved``: its config.json already read (read_saved_config)."""
    path = folder / CONFIG_NAME
    return L3RSConfig.from_saved(read_saved_config(folder) if saved is None else saved, path)


def read_saved_config(folder: Path) -> dict[str, Any]:
    """A meta-weights folder's parsed ``config.json``, checked to be an hf_l3rs config of this
    format (CheckpointError otherwise)."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_NAME} (not an hf_l3rs meta-weights folder)")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply to be an hf_l3rs config") from None
    if not isinstance(raw, dict) or "l3rs" not in raw:
        raise CheckpointError(f"{path}: no 'l3rs' object (not an hf_l3rs config)")
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {raw.get('format')!r} is not {FORMAT!r}")
    return raw


def load_tensors(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {WEIGHTS_NAME}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({exc}); the file is corrupt or "
            "truncated: delete it and download or save it again"
        ) from exc


def load_net(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    **overrides: Any,
) -> L3RSNet:
    """Load an :class:`L3RSNet`; ``overrides`` replace non-shape config fields."""
    folder = resolve(
        name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
    )
    raw = _raw_config(folder)  # read once: which optimizer's weights, and that one's config
    try:
        other = learned.for_saved_config(raw)
    except KeyError as exc:
        raise CheckpointError(f"{folder}: {exc.args[0]}") from None
    if other is not None:
        return other.load(folder, raw, overrides)
    saved = read_saved_config(folder)
    config = load_config(folder, saved)
    directions = overrides.pop("directions", None)
    # a meta-training YAML written before ADR 0004/0014 names removed fields: read past them as a
    # saved config.json is (a warning names any that acted), never a bare "unknown field"
    overrides = drop_removed_fields(overrides, "L3RS overrides")
    if overrides:
        bad = sorted(set(overrides) & SHAPE_FIELDS)
        if bad:
            raise ConfigError(f"cannot override {bad} when loading: they define the saved network's shape")
        unknown = sorted(set(overrides) - set(config.to_dict()))
        if unknown:
            raise ConfigError(f"unknown L3RSConfig field(s) {unknown} in from_pretrained overrides")
        config = config.replace(**overrides)
    tensors = load_tensors(folder)
    net = L3RSNet(config, tensors.get("trained_roles"), tensors.get("trained_depths"))
    net.card_info = read_card(folder)  # kept by a re-save (save_net), as is the list below
    listed = saved.get("trained_components")
    net.trained_components = trained_components(listed, config.num_components, folder / CONFIG_NAME)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{folder / WEIGHTS_NAME}: tensors do not match the config (missing {missing}, unexpected {unexpected})"
        )
    for key, value in tensors.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{folder / WEIGHTS_NAME}: tensor {key!r} has shape {tuple(value.shape)}, "
                f"the config implies {tuple(expected[key].shape)}"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"{folder / WEIGHTS_NAME}: tensor {key!r} holds non-finite values (NaN or inf); these meta-weights "
                "are corrupted and would skip every step"
            )
    net.load_state_dict(tensors, strict=True)
    if directions is not None and tuple(directions) != config.directions:
        net = with_directions(net, tuple(directions))
    return net


def with_directions(net: L3RSNet, directions: tuple[str, ...]) -> L3RSNet:
    """The same meta-weights with some base directions replaced by directions that *extend*
    them (``BaseDirection.extends``: ``shampoo`` extends ``adam``): the network is unchanged,
    the replaced direction's hyper-parameters carry over by name and new ones start at their
    defaults. Why: a rule meta-trained with Adam can continue with a better-preconditioned
    Adam without starting over (docs/adr/0006, "A whitened head direction")."""
    from hf_l3rs.optim.directions import get_direction

    old = net.config.directions
    config = net.config.replace(directions=directions)  # a name that is no direction: ConfigError
    if len(directions) != len(old):
        raise ConfigError(f"directions {list(directions)} must replace {list(old)} one for one (same length)")
    renamed: dict[str, str] = {}
    for before, after in zip(old, directions):
        if before != after and get_direction(after).extends != before:
            raise ConfigError(
                f"direction {after!r} cannot replace {before!r}: only a direction that extends it can "
                f"(BaseDirection.extends) without retraining the network"
            )
        renamed[after] = before
    out = L3RSNet(config, net.trained_roles, net.trained_depths)
    state = {k: v for k, v in net.state_dict().items() if k != "hyper_raw"}
    raw = dict(zip(net.hyper_names, net.hyper_raw.detach()))
    hyper = out.hyper_raw.detach().clone()
    for i, key in enumerate(out.hyper_names):
        dname, hname = key.split(".", 1)
        hyper[i] = raw.get(f"{renamed[dname]}.{hname}", hyper[i])
    out.load_state_dict({**state, "hyper_raw": hyper}, strict=True)
    out.card_info = getattr(net, "card_info", None)
    out.trained_components = getattr(net, "trained_components", None)
    return out


def _raw_config(folder: Path) -> Any:
    """``config.json`` as JSON, or ``None`` when it cannot be read (``load_config`` names the problem)."""
    try:
        return json.loads((folder / CONFIG_NAME).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None


def read_card(folder: Path) -> dict[str, Any]:
    """What a saved card recorded and a re-save must keep: its meta-training and evaluation
    sections, model-index, datasets and tags (empty when there is no card)."""
    path = folder / CARD_NAME
    if not path.is_file():
        return {}
    from huggingface_hub import ModelCard

    try:
        card = ModelCard.load(path)
    except Exception:  # an unparsable card is not worth failing a load over
        return {}
    info: dict[str, Any] = {}
    data = card.data.to_dict()
    if data.get("model-index"):
        info["model_index"] = data["model-index"]
    if data.get("datasets"):
        info["datasets"] = data["datasets"]
    from hf_l3rs.optim.cards import BASE_TAGS

    tags = [t for t in data.get("tags") or [] if t not in BASE_TAGS]
    if tags:
        info["tags"] = tags
    for key, heading in (("training", "## Meta-training"), ("evaluation", "## Evaluation")):
        if heading + "\n" in card.text:
            section = card.text.split(heading + "\n", 1)[1].split("\n## ", 1)[0].strip()
            if section and not section.startswith(("Not recorded", "No evaluation recorded")):
                info[key] = section
    title = next((line[2:].strip() for line in card.text.splitlines() if line.startswith("# ")), None)
    if title:
        info["title"] = title
    return info


def push_to_hub(
    save_directory: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    branch: str | None = None,
) -> str:
    """Upload a folder written by :func:`save_net`: safetensors, JSON, the card and its
    plots only (never a pickle). Returns the commit URL. Failures raise :class:`HubError`
    naming the repo and the endpoint."""
    from huggingface_hub import HfApi

    folder = Path(save_directory)
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder}: no {name}; write the folder with save_pretrained first")
    endpoint = _endpoint()
    try:
        api = HfApi(endpoint=endpoint, token=token, library_name=LIBRARY_NAME, library_version=_version())
        api.create_repo(repo_id, private=private, exist_ok=True)
        if branch is not None:
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, "*.png"],
            commit_message=commit_message or "Upload L3RS meta-weights",
            create_pr=create_pr,
            revision=branch,
        )
    except Exception as exc:  # network, auth, permissions: say which repo and where
        hint = " (check your token: `hf auth login` or token=...)" if "401" in str(exc) or "403" in str(exc) else ""
        raise HubError(
            f"pushing {folder} to {repo_id!r} at {endpoint} failed{hint}: {type(exc).__name__}: {exc}"
        ) from exc
    return str(info)
