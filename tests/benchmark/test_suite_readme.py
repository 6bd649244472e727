"""The README's results are the committed test-split report, verbatim: no figure in the results
section can drift from the file it came from."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hf_l3rs.benchmark.report import README_END, readme_block
from hf_l3rs.benchmark.run import weights_version

ROOT = Path(__file__).resolve().parents[2]


def test_readme_results_block_is_the_committed_report():
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- suite test summary: generated from (\S+); do not edit -->", text)
    assert match, "README has no generated results block"
    source = match.group(1)
    report = json.loads((ROOT / source).read_text())
    assert report["split"] == "test" and report["suite"] in ("v1", "v2", "v3", "v4", "v5", "v6", "v7")
    # the README shows the bundled default as shipped: its version was scored, and that is the report
    assert report["weights"] == "l3rs-general"
    assert report["weights_version"] == weights_version("l3rs-general")
    start = match.start()
    end = text.index(README_END) + len(README_END)
    assert text[start:end] == readme_block(report, source)


def test_committed_test_reports_are_complete_and_name_their_command():
    reports = sorted((ROOT / "docs" / "results").glob("*-suite-v*/report.json"))
    assert reports, "no committed test-split report"
    for path in reports:
        report = json.loads(path.read_text())
        assert report["command"].startswith("hf-l3rs benchmark --suite test")
        assert path.parent.name == f"{report['weights']}@{report['weights_version']}-suite-{report['suite']}"
        assert {c["name"] for c in report["cases"]} == {
            "clipart-cnn-scratch",
            "clipart-resnet-finetune",
            "fortunes-minilm-trainer",
            "fortunes-decoder-full",
            "fortunes-decoder-lora",
        }
        for case in report["cases"]:
            for entry in case["peers"].values():
                assert len(entry["loss"]) == len(report["score_seeds"]) >= 3
