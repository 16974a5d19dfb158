"""A per-campaign run lock: never two runs of one campaign at once.

The lock is an advisory ``flock`` on a file in the state directory. The kernel
drops it when the holding process dies, however it dies (``kill -9``, power
loss followed by reboot), so a crashed run never leaves a lock that blocks the
next one: the recorded pid is information for the operator, and a stale one
is reported and overwritten.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from types import TracebackType

from censorscope.probes.errors import CensorscopeError


class AlreadyRunning(CensorscopeError):
    """Another process holds the campaign's run lock."""


class RunLock:
    """``with RunLock(path):`` holds the lock for the block; raises AlreadyRunning if taken."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.stale: dict | None = None  # what a crashed previous holder left behind, if anything

    def holder(self) -> dict | None:
        """The pid/start recorded by the last holder (alive or not), if any."""
        try:
            text = self.path.read_text()
            return json.loads(text) if text.strip() else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        """Take the lock without waiting."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            who = self.holder() or {}
            raise AlreadyRunning(
                f"campaign already running (lock {self.path}, pid {who.get('pid', '?')})"
            ) from None
        previous = self.holder()
        if previous and previous.get("pid") != os.getpid():
            self.stale = previous  # its holder died without unlocking: recovered
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "since": time.time()}).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock and clear the recorded holder."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
