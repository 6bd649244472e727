"""Calibrated defaults per embedded domain: class splits, task shape, pretraining length.

Calibrated on this CPU (docs/decisions.md): the best tuned Adam reaches roughly 60–85 %
at the meta-training horizons (20–50 steps) on meta-test tasks, so optimizers can differ.
"""

from __future__ import annotations

from typing import Any

DOMAIN_PRESETS: dict[str, dict[str, Any]] = {
    "kanji": {
        # 400 characters: 200 pretrain, 100 meta-train, 100 meta-test; 25-way 3-shot tasks.
        "split_fractions": (0.5, 0.25, 0.25),
        "task": {"classes_per_task": 25, "train_per_class": 3, "eval_per_class": 4, "batch_size": 16},
        "pretrain_steps": 400,
    },
    "clipart": {
        # 113 categories with >= 10 drawings: 45 pretrain, 34 meta-train, 34 meta-test, so
        # 8-way tasks still vary (C(34, 8) > 18M); 10 renders per class, each jittered.
        "split_fractions": (0.4, 0.3, 0.3),
        "task": {"classes_per_task": 8, "train_per_class": 10, "eval_per_class": 4, "batch_size": 16},
        "pretrain_steps": 1000,
    },
}


def task_spec_kwargs(domain: str, **overrides: Any) -> dict[str, Any]:
    """ImageTaskSpec fields for a domain (its preset, then ``overrides``)."""
    preset = DOMAIN_PRESETS.get(domain)
    if preset is None:
        return dict(overrides)
    return {**preset["task"], "split_fractions": preset["split_fractions"], **overrides}
