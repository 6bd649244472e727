"""The suite's definition: frozen, two disjoint splits on different data and models, the
coverage the benchmark promises."""

from __future__ import annotations

from hf_l3rs.benchmark.suite import CASES, KINDS, SUITE_VERSION, cases, fingerprint

#: Changing a case changes this: that is suite v8, never an edit of v7 (results carry the hash).
V7_FINGERPRINT = "9888ef0298e4"
#: v6's dev split (docs/results/dev/report.json): v7 keeps its cases unchanged, so its runs count.
V6_DEV_FINGERPRINT = "a66830f609c7"
#: The test split of v1 (scored for l3rs-general@83524d4905), v2 … v7: unchanged, so they compare.
V1_TEST_FINGERPRINT = "f5143124518c"


def test_v7_is_frozen_and_its_test_split_is_v1s():
    assert SUITE_VERSION == "v7"
    assert fingerprint() == V7_FINGERPRINT
    assert fingerprint(cases("test")) == V1_TEST_FINGERPRINT
    v6_dev = [c for c in cases("dev") if c.name not in ("fashion-resnet-fewshot", "fashion-resnet-probe")]
    assert fingerprint(v6_dev) == V6_DEV_FINGERPRINT


def test_test_cases_use_other_data_and_other_models_than_dev():
    dev_data = {c.data for c in cases("dev")}
    dev_models = {c.model for c in cases("dev")}
    for case in cases("test"):
        assert case.data not in dev_data, f"{case.name} trains on dev data {case.data}"
        assert case.model not in dev_models, f"{case.name} starts from a dev model {case.model}"
    # the options that pick data and checkpoints agree with the declared names
    for case in CASES:
        for key in ("dataset", "checkpoint", "corpus", "decoder"):
            if key in case.options:
                assert case.options[key] in case.data + case.model


def test_splits_cover_every_kind_and_the_promised_horizons():
    assert {c.kind for c in CASES} == set(KINDS)
    assert {c.name for c in cases("dev")}.isdisjoint({c.name for c in cases("test")})
    steps = [c.steps for c in CASES]
    assert 100 in steps and 300 in steps
    assert sum(s >= 1000 for s in steps) >= 2
    assert any(c.trainer and c.kind == "text-encoder-trainer" for c in CASES)
    # v6: that kind on both splits (the test's MiniLM case had no dev counterpart before)
    assert {c.split for c in CASES if c.kind == "text-encoder-trainer"} == {"dev", "test"}


def test_unknown_split_and_case_are_named():
    import pytest

    with pytest.raises(ValueError, match="unknown split"):
        cases("val")
    with pytest.raises(ValueError, match="nope"):
        cases("dev", ["nope"])


def test_the_long_fine_tuning_dev_case_is_its_sibling_at_three_times_the_steps():
    """Suite v4's kanji-resnet-finetune-long differs from kanji-resnet-finetune only in its horizon
    (and name): same data, model, options, so the two rows isolate what a longer run does."""
    from dataclasses import asdict

    by_name = {c.name: asdict(c) for c in cases("dev")}
    short, long = by_name["kanji-resnet-finetune"], by_name["kanji-resnet-finetune-long"]
    assert long["steps"] == 3 * short["steps"]
    differing = {k for k in short if short[k] != long[k]}
    assert differing == {"name", "steps", "description"}


def test_the_cross_domain_dev_case_is_the_long_one_on_other_images():
    """Suite v5's fashion-resnet-fewshot-long is kanji-resnet-finetune-long with other images (a
    few Fashion-MNIST photos) under the same kanji checkpoint: the pair isolates what training
    long on another domain than the checkpoint's does (docs/adr/0017)."""
    from dataclasses import asdict

    by_name = {c.name: asdict(c) for c in cases("dev")}
    kanji, fashion = by_name["kanji-resnet-finetune-long"], by_name["fashion-resnet-fewshot-long"]
    differing = {k for k in kanji if kanji[k] != fashion[k]}
    assert differing == {"name", "data", "options", "description"}
    assert fashion["options"] == {"dataset": "fashion", "checkpoint": "kanji"}
    assert fashion["model"] == "resnet-tiny@kanji" and fashion["steps"] == 300


def test_every_kanji_fine_tuning_case_has_an_other_domain_twin():
    """Suite v7: each vision-finetune case on kanji (the meta-training domain, the checkpoint's
    own) has a twin that differs only in its images (a few Fashion-MNIST photos, the same kanji
    checkpoint), so the kind is half in the meta-training distribution and half out of it
    (docs/adr/0022)."""
    from dataclasses import asdict

    by_name = {c.name: asdict(c) for c in cases("dev")}
    twins = {
        "kanji-resnet-finetune": "fashion-resnet-fewshot",
        "kanji-resnet-probe": "fashion-resnet-probe",
        "kanji-resnet-finetune-long": "fashion-resnet-fewshot-long",
    }
    finetune = {c.name for c in cases("dev") if c.kind == "vision-finetune"}
    assert finetune == set(twins) | set(twins.values())
    for kanji_name, fashion_name in twins.items():
        kanji, fashion = by_name[kanji_name], by_name[fashion_name]
        assert {k for k in kanji if kanji[k] != fashion[k]} == {"name", "data", "options", "description"}
        assert fashion["options"] == {**kanji["options"], "dataset": "fashion"}
        assert fashion["data"] == "fashion-mnist" and fashion["model"] == kanji["model"] == "resnet-tiny@kanji"
