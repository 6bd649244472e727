"""Evaluation: baselines, comparisons, tables."""
