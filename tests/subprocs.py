"""Helpers for tests that start long-running subprocesses (helper servers, daemons)."""

from __future__ import annotations

import signal
import subprocess


def stop_process(p: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM ``p`` if it still runs, wait up to ``grace`` seconds, then SIGKILL; always reaped."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
