"""Fine-tune a small timm model with L3RS and with AdamW on the same data and print both.

Runs on the CPU in about a minute. Untrained L3RS behaves like normalised Adam; load
meta-trained weights with ``L3RS.from_pretrained(path_or_repo_id, model, total_steps=T)``.
"""

from __future__ import annotations

import timm
import torch
from tqdm import tqdm

from hf_l3rs import L3RS

STEPS = 60


def data(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed synthetic 5-class problem: class-specific blobs plus noise."""
    g = torch.Generator().manual_seed(step)
    y = torch.randint(0, 5, (32,), generator=g)
    centers = torch.Generator().manual_seed(7)
    protos = torch.randn(5, 3, 32, 32, generator=centers)
    return protos[y] + 0.8 * torch.randn(32, 3, 32, 32, generator=g), y


def run(name: str) -> list[float]:
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=5)
    if name == "l3rs":
        opt = L3RS(model, total_steps=STEPS)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for t in tqdm(range(STEPS), desc=name, leave=False):
        x, y = data(t)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if name == "l3rs":
            opt.step(loss=loss)
        else:
            opt.step()
        losses.append(loss.item())
    return losses


def main() -> None:
    results = {name: run(name) for name in ("adamw", "l3rs")}
    print("step   " + "   ".join(f"{k:>8s}" for k in results))
    for t in range(0, STEPS, 10):
        print(f"{t:4d}   " + "   ".join(f"{v[t]:8.4f}" for v in results.values()))
    print("final  " + "   ".join(f"{v[-1]:8.4f}" for v in results.values()))


if __name__ == "__main__":
    main()
