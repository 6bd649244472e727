"""Embedded offline image domains: "kanji" (D1) and "clipart" (D2)."""

from hf_l3rs.tasks.domains.build import DEFAULT_SPECS, DOMAINS, DomainSpec, prepare_domain

__all__ = ["DEFAULT_SPECS", "DOMAINS", "DomainSpec", "prepare_domain"]
