"""SIGKILL a child process at a random moment once it has reached a given state (crash-safety tests)."""
from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def kill_at_random_moment(cmd: list[str], env: dict, log: Path, ready: Callable[[], bool], rng: random.Random, *,
                          what: str, wait_s: float, max_delay_s: float) -> int:
    """Start ``cmd`` (output to the file ``log``), wait until ``ready()``, sleep up to ``max_delay_s`` and
    SIGKILL it; returns its exit status. Fails if it exits early or ``what`` takes over ``wait_s``."""
    with open(log, "wb") as sink:  # a file, not a pipe: an undrained pipe could block the child
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + wait_s
        while not ready():
            assert proc.poll() is None, f"{cmd[3]} exited early: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"no {what} after {wait_s:g} s"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, max_delay_s))
        assert proc.poll() is None, f"{cmd[3]} finished before the kill; make it longer"
        proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
