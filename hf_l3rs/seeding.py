"""Counter-based seeds shared by every package (NES noise, task sampling, rendering).

Python's ``hash()`` is salted per process, so processes that must agree without talking
derive their seeds from integers with this stable hash instead.
"""

from __future__ import annotations

_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def hash_seed(*parts: int) -> int:
    """A stable 63-bit seed from integers (FNV-1a over their 8-byte encodings)."""
    h = 1469598103934665603
    for part in parts:
        for byte in int(part).to_bytes(8, "little", signed=True):
            h = ((h ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def task_seed(family: str, split: str, seed: int) -> int:
    """The seed of task ``seed`` of a named family in a split (train / val / test)."""
    return hash_seed(sum(ord(c) * 31**i for i, c in enumerate(family)) % (2**31), _SPLIT_IDS[split], seed)
