"""The suite's cases, frozen and versioned.

A case is one training problem at one horizon. ``dev`` cases may be looked at while
developing; ``test`` cases use other data *and* other models and are scored once per released
weights version (docs/adr/0001-benchmark-suite.md). Changing anything in :data:`CASES` changes
:func:`fingerprint`, which a test pins: that is a new suite version, never an edit of v1.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

SUITE_VERSION = "v7"
#: v2 = v1 plus two dev cases (a BatchNorm network from scratch, a frozen-body probe); v3 = v2 plus
#: a noise-dominated from-scratch dev case (batch 8: the regime where a greedy rate adaptation
#: starves, docs/adr/0015); v4 = v3 plus the dev fine-tuning case at three times its horizon on the
#: same images (meant to mirror the test's long clipart-resnet-finetune, where the default's head
#: grew over-confident; on kanji it did not, docs/adr/0016); v5 = v4 plus that regime on another
#: domain than the checkpoint's (the kanji ResNet on a few Fashion-MNIST photos for 300 steps),
#: where it does reproduce (docs/adr/0017); v6 = v5 plus a text classification through the Trainer
#: with a pretrained transformer body (the dev decoder as a sequence classifier on stdlib
#: docstrings), the kind of the test's MiniLM case, which no dev case had (docs/adr/0018); v7 = v6
#: plus the other-domain twins of the two kanji cases that had none (the 100-step fine-tuning and
#: the probe, on Fashion-MNIST photos): three of four vision-finetune cases were the meta-training
#: distribution itself (docs/adr/0022).
#: The test split is v1's, case for case (a test pins its fingerprint), so test results of every
#: version compare.
SPLITS = ("dev", "test")
#: what kind of training a case is; the suite must cover every kind across its two splits
KINDS = ("vision-finetune", "vision-scratch", "text-encoder-trainer", "causal-lm-full", "causal-lm-lora")


@dataclass(frozen=True)
class Case:
    """``problem`` names a builder in :mod:`hf_l3rs.benchmark.problems`, ``options`` its
    arguments. ``finetune``: a pretrained body and a new head (adds the two-rate peer);
    ``transformer``: a transformers model (adds AdamW at Trainer's default 5e-5);
    ``trainer``: every optimizer runs through ``transformers.Trainer``. ``data`` and
    ``model`` name what the case trains on and from: no test case shares either with a dev case."""

    name: str
    split: str
    kind: str
    steps: int
    data: str
    model: str
    problem: str
    options: dict[str, Any] = field(default_factory=dict)
    finetune: bool = False
    transformer: bool = False
    trainer: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"case {self.name}: split must be one of {SPLITS}, got {self.split!r}")
        if self.kind not in KINDS:
            raise ValueError(f"case {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.steps < 10:
            raise ValueError(f"case {self.name}: steps must be >= 10, got {self.steps}")


_LORA = {"lora": True}
_KANJI_FINETUNE = Case(
    "kanji-resnet-finetune",
    "dev",
    "vision-finetune",
    100,
    "kanji",
    "resnet-tiny@kanji",
    "image_tasks",
    {"dataset": "kanji", "checkpoint": "kanji"},
    finetune=True,
    description="tiny ResNet pretrained on 200 kanji, a new 25-way head on unseen kanji (3 shots)",
)

_FASHION_MLP = Case(
    "fashion-mlp-scratch",
    "dev",
    "vision-scratch",
    1000,
    "fashion-mnist",
    "mlp",
    "fashion_mlp",
    description="MLP 784-256-10 from random init on Fashion-MNIST photos (10k train images, batch 128)",
)

CASES: tuple[Case, ...] = (
    # ---- dev: look at these while developing
    _FASHION_MLP,
    _KANJI_FINETUNE,
    Case(
        "docstring-decoder-trainer",
        "dev",
        "causal-lm-full",
        300,
        "stdlib-docstrings",
        "decoder-small",
        "decoder_text",
        {"corpus": "docstrings", "decoder": "small"},
        transformer=True,
        trainer=True,
        description="0.4M-parameter Llama decoder pretrained on pydoc, fine-tuned on a stdlib module's docstrings "
        "through transformers.Trainer",
    ),
    Case(
        "docstring-decoder-lora",
        "dev",
        "causal-lm-lora",
        300,
        "stdlib-docstrings",
        "decoder-small",
        "decoder_text",
        {"corpus": "docstrings", "decoder": "small", **_LORA},
        transformer=True,
        description="the same decoder, LoRA (peft, r=8 on q/v) on a stdlib module's docstrings",
    ),
    Case(
        "fashion-resnet-scratch",
        "dev",
        "vision-scratch",
        300,
        "fashion-mnist",
        "resnet-tiny",
        "fashion_resnet",
        description="tiny ResNet (convolutions with BatchNorm) from random init on Fashion-MNIST (batch 64)",
    ),
    replace(
        _FASHION_MLP,
        name="fashion-mlp-batch8",
        options={"batch": 8},
        description="the same MLP from random init at batch 8: gradients dominated by noise",
    ),
    replace(
        _KANJI_FINETUNE,
        name="kanji-resnet-probe",
        options={**_KANJI_FINETUNE.options, "frozen_body": True},
        description="the kanji ResNet frozen, only a new 25-way head trains (a linear probe, 3 shots)",
    ),
    replace(
        _KANJI_FINETUNE,
        name="kanji-resnet-finetune-long",
        steps=300,
        description="the same fine-tuning for 300 steps (three times as long on the same 75 images)",
    ),
    replace(
        _KANJI_FINETUNE,
        name="fashion-resnet-fewshot-long",
        steps=300,
        data="fashion-mnist",
        options={"dataset": "fashion", "checkpoint": "kanji"},
        description="the kanji ResNet, a new 5-way head on Fashion-MNIST photos (10 shots), 300 steps: "
        "a few images of another domain, trained long",
    ),
    Case(
        "docstring-decoder-classify-trainer",
        "dev",
        "text-encoder-trainer",
        100,
        "stdlib-docstrings",
        "decoder-small",
        "docstring_classify",
        finetune=True,
        transformer=True,
        trainer=True,
        description="the dev decoder as a sequence classifier (new head): which of 4 stdlib modules a docstring "
        "paragraph comes from (60 per class), through transformers.Trainer",
    ),
    replace(
        _KANJI_FINETUNE,
        name="fashion-resnet-fewshot",
        data="fashion-mnist",
        options={"dataset": "fashion", "checkpoint": "kanji"},
        description="the kanji ResNet, a new 5-way head on Fashion-MNIST photos (10 shots), 100 steps: "
        "kanji-resnet-finetune on another domain than the checkpoint's",
    ),
    replace(
        _KANJI_FINETUNE,
        name="fashion-resnet-probe",
        data="fashion-mnist",
        options={"dataset": "fashion", "checkpoint": "kanji", "frozen_body": True},
        description="the kanji ResNet frozen, only a new 5-way head trains on Fashion-MNIST photos "
        "(a linear probe, 10 shots): kanji-resnet-probe on another domain",
    ),
    # ---- test: other data and other models; scored once per weights version
    Case(
        "clipart-cnn-scratch",
        "test",
        "vision-scratch",
        1000,
        "clipart",
        "small-cnn",
        "clipart_cnn",
        description="small CNN from random init on all 113 Openclipart categories (32 px colour, batch 32)",
    ),
    Case(
        "clipart-resnet-finetune",
        "test",
        "vision-finetune",
        300,
        "clipart",
        "resnet-tiny@clipart",
        "image_tasks",
        {"dataset": "clipart", "checkpoint": "clipart"},
        finetune=True,
        description="tiny ResNet pretrained on 45 Openclipart categories, a new 8-way head on unseen ones (10 shots)",
    ),
    Case(
        "fortunes-minilm-trainer",
        "test",
        "text-encoder-trainer",
        100,
        "fortunes",
        "minilm-l6",
        "minilm_fortunes",
        finetune=True,
        transformer=True,
        trainer=True,
        description="pretrained MiniLM-L6 encoder, 6 fortunes categories, through transformers.Trainer",
    ),
    Case(
        "fortunes-decoder-full",
        "test",
        "causal-lm-full",
        1000,
        "fortunes",
        "decoder-wide",
        "decoder_text",
        {"corpus": "fortunes", "decoder": "wide"},
        transformer=True,
        description="0.8M-parameter Llama decoder (other shape) pretrained on pydoc, fine-tuned on fortunes text",
    ),
    Case(
        "fortunes-decoder-lora",
        "test",
        "causal-lm-lora",
        300,
        "fortunes",
        "decoder-wide",
        "decoder_text",
        {"corpus": "fortunes", "decoder": "wide", **_LORA},
        transformer=True,
        description="the same decoder, LoRA (peft, r=8 on q/v) on fortunes text",
    ),
)


def cases(split: str | None = None, names: list[str] | None = None) -> list[Case]:
    """The cases of a split (``None``: both), optionally only those named."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    chosen = [c for c in CASES if split is None or c.split == split]
    if names:
        known = {c.name for c in chosen}
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"unknown case(s) {unknown} in split {split}; known: {sorted(known)}")
        chosen = [c for c in chosen if c.name in names]
    return chosen


def fingerprint(selected: list[Case] | tuple[Case, ...] = CASES) -> str:
    """A short hash of the case definitions: results carry it, so a result scored on another
    definition is never mixed with this one's."""
    blob = json.dumps([asdict(c) for c in selected], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
