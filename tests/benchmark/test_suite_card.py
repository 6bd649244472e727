"""Cards of shipped weights are generated from the committed test report (issue 40)."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import ModelCard

from hf_l3rs.benchmark.card import render

ROOT = Path(__file__).resolve().parents[2]
V1 = ROOT / "docs" / "results" / "l3rs-general@83524d4905-suite-v1" / "report.json"


def test_card_carries_the_reports_numbers_and_says_where_it_loses(tmp_path) -> None:
    report = json.loads(V1.read_text())
    folder = ROOT / "hf_l3rs" / "pretrained" / "l3rs-general"
    (tmp_path / "README.md").write_text(render(report, folder, "4.6 CPU-hours."))
    card = ModelCard.load(tmp_path / "README.md")
    results = card.data.eval_results
    assert len(results) == 2 * len(report["cases"])
    cnn = next(c for c in report["cases"] if c["name"] == "clipart-cnn-scratch")["peers"]["l3rs"]
    accuracy = [
        r.metric_value for r in results if r.dataset_type == "clipart-cnn-scratch" and r.metric_type == "accuracy"
    ]
    assert accuracy == [round(sum(cnn["accuracy"]) / 3, 4)]
    text = card.text
    # v1 trailed every learning-rate-free peer on the from-scratch CNN: the card must say so
    assert "clipart-cnn-scratch: 8.1 accuracy points behind schedule-free AdamW" in text
    assert "fortunes-decoder-lora: 1.1 accuracy points behind tuned AdamW" in text
    # and where its loss is worse at similar accuracy (an over-confident head), in loss
    assert "clipart-resnet-finetune: test loss 3.044, 1.99× tuned AdamW's 1.530" in text
    assert "fortunes-decoder-lora: test loss" not in text  # within 1.05× of every peer there
    # the claim's bars, computed from the same report (hf_l3rs.benchmark.acceptance)
    assert "## The claim's bars" in text
    assert "clipart-cnn-scratch -8.1 pts (schedule-free AdamW)" in text
    assert "4.6 CPU-hours." in text and "@article{l3rs" in text
    assert "](meta_training_curve.png)" in text  # issue 37: the card shows the meta-training curve
    assert report["weights_version"] in card.data.model_name
