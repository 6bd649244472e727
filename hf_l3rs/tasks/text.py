"""Causal-LM fine-tuning of a small pretrained decoder (issue 11): a transformer in the
meta-training mixture, so the learned rule meets tensors that want much smaller steps than
a CNN's (docs/adr/0006 "A decoder in the mixture").

Both corpora ship with every CPython, so nothing is downloaded: the language reference
(``pydoc_data.topics``) to pretrain on (tasks/text_pretrain.py), and the standard library's
docstrings, one document per module, to fine-tune on. Modules are split into a meta-train
and a meta-test pool; a task is one module's docstrings, its first three quarters to train
on and the last quarter held out. Tokens are UTF-8 bytes (no tokenizer to fetch).
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hf_l3rs.seeding import task_seed
from hf_l3rs.tasks.base import Task, TaskFamily

#: The decoder text tasks fine-tune: SmolLM2's architecture (Llama: RMSNorm, SwiGLU, rotary
#: positions, tied embeddings, heads of 64) at 3.2M parameters over 256 byte tokens. A
#: checkpoint's config.json records the shape it was pretrained with.
DECODER: dict[str, Any] = {
    "vocab_size": 256,
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}


def build_decoder(**overrides: Any) -> nn.Module:
    """A freshly initialised decoder (``transformers.LlamaForCausalLM``), :data:`DECODER`
    with ``overrides``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**{**DECODER, **overrides}))


def checkpoint_shape(checkpoint: str | Path) -> dict[str, Any]:
    """The decoder shape recorded beside a checkpoint (tasks/text_pretrain.py writes it)."""
    meta = Path(checkpoint).parent / "config.json"
    if not meta.is_file():
        return dict(DECODER)
    try:
        shape = json.loads(meta.read_text()).get("decoder")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{meta}: not valid JSON ({exc})") from exc
    if not isinstance(shape, dict):
        raise ValueError(f"{meta}: no 'decoder' object (not written by the decoder pretraining)")
    return shape


def next_byte_logits_loss(model: nn.Module, batch: Tensor) -> tuple[Tensor, Tensor]:
    """Logits for every position but the last, and their mean cross-entropy against the next byte."""
    logits = model(input_ids=batch[:, :-1]).logits
    return logits, nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


def next_byte_loss(model: nn.Module, batch: Tensor) -> Tensor:
    """Mean cross-entropy of predicting each next byte of ``batch`` [B, n + 1]."""
    return next_byte_logits_loss(model, batch)[1]


def windows(tokens: Tensor, starts: list[int], length: int) -> Tensor:
    """[len(starts), length] int64: the slices of ``tokens`` beginning at ``starts``."""
    return torch.stack([tokens[i : i + length] for i in starts]).long()


def encode(text: str) -> Tensor:
    """UTF-8 bytes as a uint8 tensor (token ids 0-255)."""
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).clone()


def pydoc_topics() -> str:
    """The language reference's topics, in a stable order (the pretraining corpus)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


@functools.lru_cache(maxsize=4)
def stdlib_docstrings(min_chars: int = 4000) -> dict[str, str]:
    """Module name -> its module, class and function docstrings, for the standard library's
    top-level modules with at least ``min_chars`` of them (65 modules on CPython 3.11)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs: dict[str, str] = {}
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for path in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        parts = [ast.get_docstring(node, clean=True) for node in ast.walk(tree) if isinstance(node, kinds)]
        text = "\n\n".join(p for p in parts if p)
        if len(text) >= min_chars:
            docs[path.stem] = text
    return docs


@dataclass(frozen=True)
class TextTaskSpec:
    seq_len: int = 64
    batch_size: int = 8
    k_min: int = 10
    k_max: int = 100
    eval_windows: int = 16
    min_chars: int = 4000
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.seq_len < 2 or self.batch_size < 1 or self.eval_windows < 1:
            raise ValueError("TextTaskSpec needs seq_len >= 2, batch_size >= 1 and eval_windows >= 1")
        if not 0 < self.k_min <= self.k_max:
            raise ValueError("TextTaskSpec needs 0 < k_min <= k_max")


class TextTaskFamily(TaskFamily):
    """Fine-tuning tasks over the standard library's docstrings: ``train``/``val`` draw
    modules of the meta-train pool (different seeds), ``test`` the meta-test pool."""

    splits = ("train", "val", "test")

    def __init__(self, spec: TextTaskSpec, checkpoint: str | None = None, name: str = "text") -> None:
        self.spec, self.checkpoint, self.name = spec, checkpoint, name
        self.documents = stdlib_docstrings(spec.min_chars)
        modules = sorted(self.documents)
        if len(modules) < 2:
            raise ValueError(f"{name}: found {len(modules)} standard-library modules with docstrings; need >= 2")
        perm = torch.randperm(len(modules), generator=torch.Generator().manual_seed(spec.split_seed)).tolist()
        half = len(modules) // 2
        self.pools = {"meta_train": [modules[i] for i in perm[:half]], "meta_test": [modules[i] for i in perm[half:]]}
        self._state: dict[str, Tensor] | None = None
        self.shape = checkpoint_shape(checkpoint) if checkpoint is not None else dict(DECODER)

    def decoder_state(self) -> dict[str, Tensor] | None:
        if self.checkpoint is None:
            return None
        if self._state is None:
            from safetensors.torch import load_file

            if not Path(self.checkpoint).is_file():
                raise FileNotFoundError(
                    f"{self.name}: decoder checkpoint {self.checkpoint} not found "
                    "(run `hf-l3rs pretrain --domains pydoc` first)"
                )
            self._state = load_file(self.checkpoint)
        return self._state

    def sample(self, seed: int, split: str = "train") -> Task:
        self.check_split(split)
        s = task_seed(self.name, split, seed)
        g = torch.Generator().manual_seed(s)
        pool = self.pools["meta_test" if split == "test" else "meta_train"]
        module = pool[int(torch.randint(len(pool), (1,), generator=g))]
        data = encode(self.documents[module])
        cut = 3 * len(data) // 4
        steps = int(torch.randint(self.spec.k_min, self.spec.k_max + 1, (1,), generator=g))
        return TextTask(self, s, steps, module, data[:cut], data[cut:])


class TextTask(Task):
    def __init__(self, family: TextTaskFamily, seed: int, num_steps: int, module: str, train: Tensor, held_out: Tensor):
        self.family, self.seed, self.num_steps, self.module = family, seed, num_steps, module
        self.train_tokens = train
        n = family.spec.seq_len + 1
        if len(train) <= n or len(held_out) < n:
            raise ValueError(f"{family.name}: module {module!r} is too short for windows of {n} bytes")
        starts = torch.linspace(0, len(held_out) - n, family.spec.eval_windows).long()
        self.eval_tokens = windows(held_out, starts.tolist(), n)

    def init_model(self) -> nn.Module:
        """The pretrained decoder (a copy of one built once per task)."""
        if getattr(self, "_template", None) is None:
            torch.manual_seed(self.seed % (2**63))
            model = build_decoder(**self.family.shape)
            state = self.family.decoder_state()
            if state is not None:
                result = model.load_state_dict(state, strict=False)
                # The tied output layer is the input embedding: saved once, under its input name.
                missing = [k for k in result.missing_keys if k != "lm_head.weight"]
                if missing or result.unexpected_keys:
                    raise ValueError(
                        f"checkpoint {self.family.checkpoint} does not fit the decoder shape recorded beside it: "
                        f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
                    )
            self._template = model
        return copy.deepcopy(self._template)

    def train_batch(self, step: int) -> Tensor:
        spec = self.family.spec
        g = torch.Generator().manual_seed((self.seed + 104729 * (step + 1)) % (2**63))
        starts = torch.randint(0, len(self.train_tokens) - spec.seq_len - 1, (spec.batch_size,), generator=g)
        return windows(self.train_tokens, starts.tolist(), spec.seq_len + 1)

    def loss(self, model: nn.Module, batch: Tensor) -> Tensor:
        return next_byte_loss(model, batch)

    def evaluate(self, model: nn.Module) -> tuple[float, float | None]:
        """Held-out loss (nats per byte) and next-byte accuracy."""
        logits, loss = next_byte_logits_loss(model, self.eval_tokens)
        return float(loss), float((logits.argmax(-1) == self.eval_tokens[:, 1:]).float().mean())
