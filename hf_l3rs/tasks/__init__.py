"""Tasks: what is optimised (data, initial weights, loss), independent of the optimizer."""

from hf_l3rs.tasks.augment import AugmentedFamily
from hf_l3rs.tasks.base import OptimizerFactory, Task, TaskFamily
from hf_l3rs.tasks.classic import CLASSIC_FAMILIES, classic_family
from hf_l3rs.tasks.inner_loop import OBJECTIVES, TaskResult, run_task

__all__ = [
    "CLASSIC_FAMILIES",
    "OBJECTIVES",
    "AugmentedFamily",
    "OptimizerFactory",
    "Task",
    "TaskFamily",
    "TaskResult",
    "classic_family",
    "run_task",
]
