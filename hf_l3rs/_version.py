"""The package version, in a module that imports nothing (optim reads it for model cards)."""

__version__ = "0.1.0"
