"""The frozen benchmark suite (``suite v1``): L3RS against the optimizers a user would pick
instead — learning-rate-free ones at their published defaults and AdamW/SGD tuned on
validation data — on versioned ``dev`` and ``test`` cases (docs/adr/0001-benchmark-suite.md).

Arrows point one way: ``benchmark → tasks, optim``; nothing in ``optim`` or ``tasks`` imports
from here."""

from hf_l3rs.benchmark.suite import CASES, SUITE_VERSION, Case, cases

__all__ = ["CASES", "SUITE_VERSION", "Case", "cases"]
