"""Reverse-engineering what a learned optimizer learned (docs/design.md §6)."""
