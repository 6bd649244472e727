"""Embedded offline image domains ("kanji", "clipart"): rendering into HF ``datasets``
folders. Their names, task shapes and splits are in the one table, ``hf_l3rs.tasks.datasets``."""

from hf_l3rs.tasks.domains.build import DomainSpec, prepare_domain

__all__ = ["DomainSpec", "prepare_domain"]
