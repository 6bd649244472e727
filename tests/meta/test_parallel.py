"""Work sharing across processes (hf_l3rs.parallel): static deal and dynamic claiming."""

from __future__ import annotations

import json
import math
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from hf_l3rs.parallel import KEY_PREFIX, LostProcessError, balanced_assignment, name_lost_process, shard_map


def test_balanced_assignment_is_longest_first_and_complete() -> None:
    owned = balanced_assignment([5.0, 1.0, 4.0, 3.0, 3.0], 2)
    assert sorted(owned[0] + owned[1]) == [0, 1, 2, 3, 4]
    # 0 (5) -> p0, 2 (4) -> p1, 3 (3) -> p1, 4 (3) -> p0, 1 (1) -> p1: loads 8 and 8
    assert owned == [[0, 4], [1, 2, 3]]


def test_single_process_table_keeps_nan_and_infinities() -> None:
    values = [1.0, math.nan, math.inf, -math.inf, -2.5]
    done: list[int] = []
    timing: dict[str, float] = {}
    table = shard_map(lambda v: torch.tensor([v, 2 * v]), values, 2, timing=timing, on_done=done.append)
    assert table.dtype == torch.float64
    assert torch.isnan(table[1]).all()
    assert table[2].tolist() == [math.inf, math.inf] and table[3].tolist() == [-math.inf, -math.inf]
    assert table[[0, 4]].tolist() == [[1.0, 2.0], [-2.5, -5.0]]
    assert done == [1, 2, 3, 4, 5] and timing["items_here"] == 5


WORKER = textwrap.dedent(
    """
    import json, math, sys, time
    import torch
    from accelerate import Accelerator
    from hf_l3rs.parallel import claim_key, default_store, shard_map, shutdown

    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2, acc.num_processes
    store = default_store()
    n = 12

    held = []

    def fn(item):
        if acc.process_index == 0 and not held:
            # hold the first item until the other process has claimed every other one
            held.append(item)
            deadline = time.time() + 30
            while int(store.add(claim_key(0), 0)) <= n and time.time() < deadline:
                time.sleep(0.01)
        value = {3: math.nan, 4: math.inf}.get(item, 1.5 * item)
        return torch.tensor([value, float(acc.process_index)])

    timing = {}
    table = shard_map(fn, list(range(n)), 2, acc, costs=[1.0] * n, timing=timing)
    again = shard_map(lambda i: torch.tensor([float(i)]), list(range(5)), 1, acc)
    if acc.is_main_process:
        rows = [[None if math.isnan(v) else v for v in row] for row in table.tolist()]
        print(json.dumps({"table": rows, "again": again.flatten().tolist()}))
    shutdown(acc)
    """
)


def test_two_processes_claim_work_dynamically(tmp_path: Path) -> None:
    """A process stuck on a long item takes no more items: the other one does the rest,
    and every process ends with the same complete table (NaN and inf included)."""
    from hf_l3rs.launch import launch_command

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cmd, env = launch_command(str(script), 2, [], checked=False)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    table = out["table"]
    expected = [1.5 * i for i in range(12)]
    expected[3], expected[4] = None, math.inf
    assert [row[0] for row in table] == expected
    ranks = [row[1] for row in table if row[1] is not None]
    assert ranks.count(0.0) <= 1 and ranks.count(1.0) >= 10
    assert out["again"] == [0.0, 1.0, 2.0, 3.0, 4.0]


DRIFTING_WORKER = textwrap.dedent(
    """
    import sys

    import torch
    from accelerate import Accelerator
    from hf_l3rs.parallel import ProcessDriftError, shard_map

    def report(exc):  # one write per line: both processes share the pipe, and print() writes
        sys.stdout.write(f"DRIFT {exc}\\n")  # its arguments separately, so lines could interleave
        sys.stdout.flush()
        raise SystemExit(3)

    acc = Accelerator(cpu=True)
    if acc.process_index == 1:  # one process makes an extra call the other does not
        try:
            shard_map(lambda i: torch.tensor([1.0]), [0, 1], 1, acc, tag="extra")
        except ProcessDriftError as exc:
            report(exc)
    try:
        shard_map(lambda i: torch.tensor([float(i)]), list(range(4)), 1, acc, tag="generation 0")
    except ProcessDriftError as exc:
        report(exc)
    print("NO DRIFT DETECTED", flush=True)
    """
)


def test_a_process_that_makes_an_extra_call_is_caught(tmp_path: Path) -> None:
    """Calls are paired by position: the first position where the processes' calls differ
    raises ProcessDriftError naming both calls, instead of pairing different work."""
    from hf_l3rs.launch import launch_command

    script = tmp_path / "drift.py"
    script.write_text(DRIFTING_WORKER)
    cmd, env = launch_command(str(script), 2, [], checked=False)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "NO DRIFT DETECTED" not in proc.stdout
    assert "DRIFT shard_map call #0 differs between processes" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "tag 'extra'" in proc.stdout and "tag 'generation 0'" in proc.stdout


def test_a_collective_that_fails_names_the_process_whose_heartbeat_stopped() -> None:
    """A process killed between the barrier and the all-reduce surfaces as the backend's
    'Connection closed by peer'; the run names the process instead (its heartbeat stopped),
    and a failure while every process still beats is raised as it was."""
    failure = RuntimeError("Connection closed by peer [127.0.0.1]:46006")
    store = dist.HashStore()  # process 1 never beats
    with pytest.raises(LostProcessError, match="process 1 of 2 stopped responding") as caught:
        name_lost_process(store, 0, 2, failure, timeout=0.5)
    assert caught.value.__cause__ is failure

    alive = dist.HashStore()
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            alive.add(f"{KEY_PREFIX}/heartbeat/1", 1)
            time.sleep(0.05)

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        with pytest.raises(RuntimeError, match="Connection closed") as caught:
            name_lost_process(alive, 0, 2, failure, timeout=0.5)
        assert caught.value is failure
    finally:
        stop.set()
        beater.join()
