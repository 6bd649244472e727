"""Step time of the bundled default, ``L3RS.from_pretrained("l3rs-general", model)``, against
fused ``torch.optim.AdamW`` on the models Hugging Face users fine-tune (issue 40): a BERT encoder
in MiniLM-L6's layout, a causal LM in SmolLM2-135M's layout and timm's resnet34, random init.

Both optimizers step on the same real gradients (one backward pass) in the same process,
interleaved round by round so that machine noise hits both alike; medians and their ratio.
Pause anything else running on the machine first.
Usage: python benchmarks/default_step_time.py [--models bert smollm2 resnet34] [--rounds 15]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch


def build(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model and the loss of one forward pass on a small random batch."""
    torch.manual_seed(0)
    if name == "bert":
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig(
            vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
        )
        model = BertForSequenceClassification(config)
        ids = torch.randint(0, 30522, (8, 64))
        return model, model(input_ids=ids, labels=torch.randint(0, 2, (8,))).loss
    if name == "smollm2":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            vocab_size=49152,
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            tie_word_embeddings=True,
        )
        model = LlamaForCausalLM(config)
        ids = torch.randint(0, 49152, (2, 32))
        return model, model(input_ids=ids, labels=ids).loss
    if name == "resnet34":
        import timm

        model = timm.create_model("resnet34", num_classes=25)
        x, y = torch.randn(8, 3, 64, 64), torch.randint(0, 25, (8,))
        return model, torch.nn.functional.cross_entropy(model(x), y)
    raise ValueError(f"unknown model {name!r}; choose bert, smollm2 or resnet34")


def measure(name: str, rounds: int) -> dict[str, float]:
    from hf_l3rs import L3RS

    model, loss = build(name)
    loss.backward()
    loss_value = float(loss.detach())
    models = {"adamw_fused": copy.deepcopy(model), "l3rs_default": copy.deepcopy(model)}
    for copied in models.values():  # the same gradients for both (deepcopy leaves .grad behind)
        for p, q in zip(model.parameters(), copied.parameters()):
            q.grad = None if p.grad is None else p.grad.clone()
    opts = {
        "adamw_fused": torch.optim.AdamW(models["adamw_fused"].parameters(), lr=1e-4, fused=True),
        "l3rs_default": L3RS.from_pretrained("l3rs-general", models["l3rs_default"]),
    }
    times: dict[str, list[float]] = {k: [] for k in opts}
    for r in range(rounds + 3):  # the first 3 rounds warm up (state allocation, kernel load)
        for key, opt in opts.items():
            t0 = time.perf_counter()
            opt.step(loss=loss_value) if key.startswith("l3rs") else opt.step()
            if r >= 3:
                times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    tensors = sum(1 for p in model.parameters() if p.requires_grad)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "model": name,
        "tensors": tensors,
        "parameters": params,
        "adamw_fused_ms": round(med["adamw_fused"], 2),
        "l3rs_default_ms": round(med["l3rs_default"], 2),
        "ratio": round(med["l3rs_default"] / med["adamw_fused"], 2),
        "backend": _backend_name(opts["l3rs_default"]),
    }


def _backend_name(opt: torch.optim.Optimizer) -> str:
    """The backend a step of ``opt`` takes now (the fused kernels, or foreach where they cannot run)."""
    from hf_l3rs.optim.compiled import choose_backend

    params = [p for g in opt.param_groups for p in g["params"]]
    states = [opt.state[p] for p in params]
    return choose_backend(opt.implementation, {1}, opt.config.directions, params, states).name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="+", default=["bert", "smollm2", "resnet34"])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    print(f"L3RS default (l3rs-general) vs fused AdamW, {torch.get_num_threads()} threads, median of {args.rounds}")
    for name in args.models:
        row = measure(name, args.rounds)
        rows.append(row)
        print(
            f"  {name:9s} {row['tensors']:4d} tensors {row['parameters'] / 1e6:6.1f}M  fused AdamW "
            f"{row['adamw_fused_ms']:8.2f} ms  L3RS {row['l3rs_default_ms']:8.2f} ms ({row['backend']})  "
            f"ratio {row['ratio']:.2f}x"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
