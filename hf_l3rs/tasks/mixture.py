"""A mixture of task families (docs/design.md §3): one meta-training run over several
domains, checkpoints and initialisations, so the learned rule cannot specialise to one.

Each task seed picks its member from a generator seeded by (seed, split), with the members'
weights, so the mixture is as reproducible as its members and every process agrees on it.
"""

from __future__ import annotations

import torch

from hf_l3rs.seeding import task_seed
from hf_l3rs.tasks.base import Task, TaskFamily, template_task


class MixtureFamily(TaskFamily):
    """``members``: (family, weight) pairs; weights need not sum to 1."""

    def __init__(self, members: list[tuple[TaskFamily, float]], name: str = "mixture") -> None:
        if not members:
            raise ValueError("a task mixture needs at least one member")
        names = [family.name for family, _ in members]
        if len(set(names)) != len(names):
            raise ValueError(f"task mixture members need distinct names (tasks are seeded by them): {names}")
        for family, weight in members:
            if not (isinstance(weight, (int, float)) and weight > 0):
                raise ValueError(f"task mixture: member {family.name!r} needs a weight > 0, got {weight!r}")
        self.members = members
        self.name = name
        self.splits = tuple(s for s in members[0][0].splits if all(s in f.splits for f, _ in members))
        self._weights = torch.tensor([float(w) for _, w in members], dtype=torch.float64)

    def member_index(self, seed: int, split: str) -> int:
        g = torch.Generator().manual_seed(task_seed(self.name, split, seed))
        return int(torch.multinomial(self._weights, 1, generator=g))

    def template_task(self) -> Task:
        """The first member's: reordering or reweighting the other members never changes the
        shape of the network a mixture meta-trains (a decoder drawn first would)."""
        return template_task(self.members[0][0])

    def sample(self, seed: int, split: str = "train") -> Task:
        self.check_split(split)
        family, _ = self.members[self.member_index(seed, split)]
        return family.sample(seed, split)
