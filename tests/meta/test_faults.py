"""Meta-training survives faults: a lost process is named (no hang) and the run resumes bit
for bit; SIGTERM checkpoints at the next generation boundary and exits cleanly; a corrupt
checkpoint falls back to the previous one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_meta import ROOT, _launch, _tiny, _trainer, two_machine_commands


def _write(tmp_path: Path, **kw) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(_tiny(**kw).to_dict()))
    return path


def _generation(out: Path) -> int:
    try:
        return int(yaml.safe_load((out / "checkpoint" / "trainer.json").read_text())["generation"])
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError):
        return -1


def _wait_for_generation(out: Path, generation: int, procs: list, limit: float = 300) -> None:
    start = time.monotonic()
    while _generation(out) < generation:
        if any(p.poll() is not None for p in procs):
            raise AssertionError("a process ended before the checkpoint: " + procs[0].communicate()[0][-2000:])
        assert time.monotonic() - start < limit, "no checkpoint in time"
        time.sleep(0.2)


def _theta(out: Path) -> torch.Tensor:
    return load_file(str(out / "checkpoint" / "state.safetensors"))["theta"]


def _rank_pid(marker: str, rank: int) -> int:
    """PID of the worker process with RANK=rank whose command line contains ``marker``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in cmd and "metatrain.py" in cmd and f"RANK={rank}".encode() in env:
            if "accelerate.commands.launch" not in cmd:
                return int(proc.name)
    raise AssertionError(f"no worker with RANK={rank}")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds worker processes through /proc")
def test_a_killed_process_is_named_and_the_run_resumes_bitwise(tmp_path) -> None:
    config = _write(tmp_path, generations=8)
    _launch(1, config, tmp_path / "straight")
    out = tmp_path / "faulty"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_L3RS_PROCESS_TIMEOUT": "10"}
    procs = [  # two "machines" on this host, one process each
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for cmd in two_machine_commands(config, out, port)
    ]
    machine1, machine0 = procs
    _wait_for_generation(out, 2, procs)
    os.kill(_rank_pid(str(out), 1), signal.SIGKILL)
    killed = time.monotonic()
    log, _ = machine0.communicate(timeout=120)
    machine1.communicate(timeout=120)
    assert machine0.returncode != 0
    assert time.monotonic() - killed < 60
    assert "process 1 of 2 stopped responding" in log, log[-3000:]
    stopped_at = _generation(out)
    assert 2 <= stopped_at < 8
    _launch(1, config, out, resume=True)
    assert torch.equal(_theta(out), _theta(tmp_path / "straight"))


def test_sigterm_checkpoints_at_the_generation_boundary_and_resumes_bitwise(tmp_path) -> None:
    config = _write(tmp_path, generations=8, checkpoint_every=4)
    _launch(1, config, tmp_path / "straight")
    out = tmp_path / "preempted"
    cmd = [sys.executable, str(ROOT / "examples" / "metatrain.py"), "--config", str(config), "--output", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--no-trackers"], env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    _wait_for_generation(out, 4, [proc])
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, log[-2000:]
    assert "stopped by SIGTERM at generation" in log
    stopped_at = _generation(out)
    assert 4 <= stopped_at < 8  # the generation in progress finished and was saved
    for tag in ("best", "final"):  # the weights so far are exported too: nothing lost
        assert (out / tag / "model.safetensors").is_file()
    _launch(1, config, out, resume=True)
    assert torch.equal(_theta(out), _theta(tmp_path / "straight"))


def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog) -> None:
    from hf_l3rs.meta.trainer import CheckpointCorrupt

    first = _trainer(_tiny(generations=3), tmp_path)
    first.run()
    state = tmp_path / "checkpoint" / "state.safetensors"
    state.write_bytes(state.read_bytes()[:100])  # truncated
    again = _trainer(_tiny(generations=3), tmp_path)
    with caplog.at_level("WARNING"):
        again.load_checkpoint()
    assert again.state.generation == 2 and "resuming from the previous checkpoint" in caplog.text
    (tmp_path / "checkpoint.bak" / "trainer.json").write_text("{not json")
    with pytest.raises(CheckpointCorrupt, match="no readable checkpoint"):
        _trainer(_tiny(generations=3), tmp_path).load_checkpoint()
