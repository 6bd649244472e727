"""What a new user meets first: quiet logs printed once, a clear word when ``lr`` is used as a
learning rate, and a refusal of non-finite rates before they reach the weights."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch

from hf_l3rs import L3RS


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120
    )


LOAD = "import torch; from hf_l3rs import L3RS; m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)); "


def test_default_verbosity_is_warning_and_the_environment_changes_it():
    code = "from hf_l3rs.verbosity import get_verbosity; print(get_verbosity())"
    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_L3RS_VERBOSITY"}
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert quiet.stdout.strip() == str(logging.WARNING)
    assert _run(code, {"HF_L3RS_VERBOSITY": "info"}).stdout.strip() == str(logging.INFO)


def test_loading_weights_on_another_model_prints_nothing_by_default():
    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_L3RS_VERBOSITY"}
    out = subprocess.run(
        [sys.executable, "-c", LOAD + "L3RS.from_pretrained('l3rs-general', m)"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0 and out.stderr == ""


def test_a_message_prints_once_under_basicconfig():
    code = "import logging; logging.basicConfig(level=logging.WARNING); " + LOAD + "L3RS(m, lr=1e-3)"
    err = _run(code).stderr
    assert err.count("it is not a learning rate") == 1


def test_an_lr_typed_by_habit_is_named_with_the_fix(caplog):
    model = torch.nn.Linear(3, 2)
    with caplog.at_level(logging.WARNING, logger="hf_l3rs"):
        L3RS(model, lr=1e-3)
    assert "lr=0.001" in caplog.text and "Leave it at 1.0" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_l3rs"):
        L3RS(model, lr=0.5)
    assert caplog.text == ""


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1.0])
def test_non_finite_rates_are_refused_at_construction_and_at_every_step(bad):
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="lr"):
        L3RS(model, lr=bad)
    opt = L3RS(model, total_steps=5)
    before = [p.detach().clone() for p in model.parameters()]
    opt.param_groups[0]["lr"] = bad  # as a scheduler or a user may write it
    loss = model(torch.randn(4, 3)).pow(2).mean()
    loss.backward()
    with pytest.raises(ValueError, match="param group 0 has lr"):
        opt.step(loss=loss)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_env_prints_what_a_bug_report_needs():
    out = subprocess.run([sys.executable, "-m", "hf_l3rs.cli", "env"], capture_output=True, text=True, timeout=120)
    import hf_l3rs

    assert out.returncode == 0
    assert f"- hf_l3rs version: {hf_l3rs.__version__}" in out.stdout
    assert f"- torch version: {torch.__version__.split('+')[0]}" in out.stdout.replace("+cu130", "")
    assert "HF_L3RS_VERBOSITY" in out.stdout and "fused CPU kernels" in out.stdout


def test_the_kernel_build_is_keyed_by_torch_python_and_flags(monkeypatch):
    """Two environments on one machine (other torch, other Python, other flags) get two builds
    side by side; the same environment always finds its own."""
    from hf_l3rs.optim import fused

    source = b"kernel source"
    key = fused.kernel_key(source)
    assert fused.kernel_key(source) == key
    assert fused.kernel_key(source + b" ") != key
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert fused.kernel_key(source) != key
    monkeypatch.undo()
    monkeypatch.setattr(fused, "CFLAGS", (*fused.CFLAGS, "-O0"))
    assert fused.kernel_key(source) != key
    monkeypatch.undo()
    import sysconfig

    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: "cpython-399-x86_64-linux-gnu")
    assert fused.kernel_key(source) != key


def test_the_paper_protocol_verb_and_its_deprecated_alias():
    from hf_l3rs.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["paper-protocol"]).func is parser.parse_args(["evaluate"]).func
    out = _run(
        "import sys; from hf_l3rs.cli import main; sys.argv=['hf-l3rs']; "
        "main(['evaluate', '--config', '/nonexistent.yaml'])"
    )
    assert "deprecated: use `hf-l3rs paper-protocol`" in out.stderr
