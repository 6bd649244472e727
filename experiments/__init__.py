"""Research beside the product, not installed by the wheel and tested by ``make test``:
VeLO-lite (the per-parameter learned baseline), the analysis of what a learned optimizer
learned, and the lineage meta-weights (``experiments/weights``). See experiments/README.md."""
