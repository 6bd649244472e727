"""experiments/scripts/dev_compare.py and trade_off.py: the peers' report assembled from several
dev reports takes each case only from a report whose fingerprint is that of the current case
definitions; the trade-off's groups split the dev cases."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments" / "scripts"))

from dev_compare import assemble, current_cases_of

from hf_l3rs.benchmark.suite import cases, fingerprint


def _report(names: list[str], fp: str | None = None, tag: str = "") -> dict:
    return {
        "split": "dev",
        "command": f"run {tag}",
        "fingerprint": fp or fingerprint(cases("dev", names)),
        "cases": [{"name": n, "peers": {"prodigy": {"loss": [1.0], "tag": tag}}} for n in names],
    }


def test_each_case_comes_from_a_current_report_and_the_result_is_of_the_whole_split():
    names = [c.name for c in cases("dev")]
    first, rest = names[:-2], names[-2:]
    stale = _report(names, fp="000000000000", tag="stale")  # the same cases, other definitions
    merged = assemble([stale, _report(first, tag="a"), _report(rest, tag="b"), _report(rest, tag="copy")])
    assert [c["name"] for c in merged["cases"]] == names
    assert merged["fingerprint"] == fingerprint(cases("dev"))
    tags = {c["name"]: c["peers"]["prodigy"]["tag"] for c in merged["cases"]}
    assert {tags[n] for n in first} == {"a"} and {tags[n] for n in rest} == {"b"}
    assert [s["cases"] for s in merged["assembled_from"]] == [first, rest]  # the copy added nothing


def test_a_stale_or_foreign_report_counts_for_nothing_and_missing_cases_are_named():
    names = [c.name for c in cases("dev")]
    assert current_cases_of(_report(names[:3], fp="000000000000")) == []
    assert current_cases_of({**_report(names[:3]), "split": "test"}) == []
    with pytest.raises(SystemExit, match=names[-1]):
        assemble([_report(names[:-1])])


def test_the_trade_off_groups_split_the_dev_cases():
    """trade_off.py's groups (ADR 0022): every dev case in exactly one; the kanji group is the
    three meta-training-domain cases, the other-domain group their twins plus the text classifier."""
    from trade_off import GROUPS, group_of

    for case in cases("dev"):
        assert sum(member(case) for member in GROUPS.values()) == 1, case.name
    by_group: dict[str, set[str]] = {}
    for case in cases("dev"):
        by_group.setdefault(group_of(case), set()).add(case.name)
    assert by_group["kanji fine-tuning"] == {
        "kanji-resnet-finetune",
        "kanji-resnet-probe",
        "kanji-resnet-finetune-long",
    }
    assert by_group["other-domain fine-tuning, text classification"] == {
        "fashion-resnet-fewshot",
        "fashion-resnet-probe",
        "fashion-resnet-fewshot-long",
        "docstring-decoder-classify-trainer",
    }
