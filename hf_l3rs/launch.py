"""The one correct way to start N meta-training processes on this kind of machine.

`accelerate launch --cpu --num_processes N` starts ONE process; N CPU processes need
`--multi_gpu` with ACCELERATE_USE_CPU=true (gloo). One torch thread per process.
"""

from __future__ import annotations

import os
import shutil
import sys


def launch_command(
    script: str, processes: int, args: list[str], *, checked: bool = True
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) running ``script args`` on ``processes`` CPU processes. With ``checked``
    (scripts built on the meta-training CLI) it appends ``--threads 1 --expect-processes N``
    so a mis-launch fails instead of running N copies; scripts that check the world size
    themselves pass ``checked=False``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    accelerate = shutil.which("accelerate")
    if processes > 1:
        if accelerate is None:
            raise RuntimeError("the `accelerate` command is not on PATH; install accelerate")
        cmd = [
            accelerate,
            "launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
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
