"""The package surface: light import, every public name resolves, CLI version."""

from __future__ import annotations

import subprocess
import sys

import hf_l3rs


def test_import_is_light() -> None:
    """`import hf_l3rs` (and the CLI parser) load neither torch, YAML nor the meta-trainer."""
    code = (
        "import sys, hf_l3rs, hf_l3rs.cli; hf_l3rs.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'yaml', 'hf_l3rs.meta.trainer', 'hf_l3rs.tasks') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_import_loads_neither_yaml_nor_the_meta_trainer() -> None:
    code = "import sys, hf_l3rs; print(sorted(m for m in ('yaml', 'hf_l3rs.meta', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_name_resolves() -> None:
    assert set(hf_l3rs.__all__) == set(hf_l3rs._EXPORTS) | {"__version__"}
    for name in hf_l3rs.__all__:
        assert getattr(hf_l3rs, name) is not None
    from hf_l3rs import L3RS
    from hf_l3rs.optim import L3RS as direct

    assert L3RS is direct


def test_cli_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hf_l3rs.cli", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"hf-l3rs {hf_l3rs.__version__}"


def test_plugins_and_card_templates_install_under_the_package() -> None:
    """trainer_plugins/ and hub_cards/ are repository folders installed as hf_l3rs.*."""
    from hf_l3rs.hub_cards import template
    from hf_l3rs.trainer_plugins import L3RSCallback, L3RSTrainer, register_timm

    assert callable(register_timm) and L3RSCallback and L3RSTrainer
    assert "{{ card_data }}" in template()  # huggingface_hub.ModelCard.from_template fills it


def test_set_verbosity_controls_hf_l3rs_messages() -> None:
    import logging

    import pytest

    from hf_l3rs.verbosity import get_logger, get_verbosity, set_verbosity

    before = get_verbosity()
    try:
        set_verbosity("warning")
        assert not get_logger("hf_l3rs.optim.components").isEnabledFor(logging.INFO)
        set_verbosity(logging.INFO)
        assert get_logger("hf_l3rs.optim.components").isEnabledFor(logging.INFO)
        with pytest.raises(ValueError, match="level must be one of"):
            set_verbosity("loud")
    finally:
        set_verbosity(before)


def test_cpu_only_runs_do_not_print_the_cuda_warning() -> None:
    code = (
        "import torch, sys; from hf_l3rs.optim.fused import load_fused; "
        "print('cuda' if torch.cuda.is_available() else ('built' if load_fused() else 'no-kernels'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    if proc.stdout.strip() != "cuda":
        assert "No CUDA runtime is found" not in proc.stderr


def test_every_cli_option_has_help() -> None:
    import argparse

    from hf_l3rs.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif not action.help:
                missing.append((path, action.dest))

    walk(build_parser(), [])
    assert missing == []


def test_cli_download_and_push(tmp_path, monkeypatch) -> None:
    """download checks and copies meta-weights (a bundled name here: no network); push
    refuses a folder that would not load, then uploads through HfApi (faked)."""
    import huggingface_hub
    import pytest

    from hf_l3rs.cli import main

    main(["download", "l3rs-general", "--local-dir", str(tmp_path / "w")])
    files = sorted(p.name for p in (tmp_path / "w").iterdir())
    assert files == ["README.md", "config.json", "meta_training_curve.png", "model.safetensors"]
    sent = {}

    class Api:
        def __init__(self, **kw):
            pass

        def create_repo(self, repo_id, **kw):
            sent["repo"] = repo_id

        def upload_folder(self, **kw):
            sent["folder"] = kw["folder_path"]
            return "url"

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    main(["push", "org/x", str(tmp_path / "w")])  # REPO_ID FOLDER, as `hf upload`
    assert sent == {"repo": "org/x", "folder": str(tmp_path / "w")}
    sent.clear()
    with pytest.warns(FutureWarning, match="deprecated"):
        main(["push", str(tmp_path / "w"), "org/x"])  # the old order still works, with a deprecation
    assert sent == {"repo": "org/x", "folder": str(tmp_path / "w")}
    (tmp_path / "w" / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="hf-l3rs push: error"):
        main(["push", "org/x", str(tmp_path / "w")])
