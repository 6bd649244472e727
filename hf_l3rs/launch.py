"""The one correct way to start N meta-training processes on this kind of machine.

`accelerate launch --cpu --num_processes N` starts ONE process; N CPU processes need
`--multi_gpu` with ACCELERATE_USE_CPU=true (gloo). One torch thread per process.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys


def free_port() -> int:
    """A TCP port nobody listens on now, so that two runs (or a run and a test) on one
    machine never fight over accelerate's default 29500."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_command(
    script: str, processes: int, args: list[str], *, checked: bool = True
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) running ``script args`` on ``processes`` CPU processes. With ``checked``
    (scripts built on the meta-training CLI) it appends ``--threads 1 --expect-processes N``
    so a mis-launch fails instead of running N copies; scripts that check the world size
    themselves pass ``checked=False``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    if processes > 1:
        if importlib.util.find_spec("accelerate") is None:
            raise RuntimeError("N processes need accelerate: pip install accelerate")
        # The launcher of this interpreter (a venv's, even when its bin/ is not on PATH).
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--main_process_port",
            os.environ.get("MASTER_PORT") or str(free_port()),
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            script,
        ]
    else:
        cmd = [sys.executable, script]
    checks = ["--threads", "1", "--expect-processes", str(processes)] if checked else []
    return [*cmd, *args, *checks], env
