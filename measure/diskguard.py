"""Stop a run cleanly before the disk fills.

A run checks the free space of its results file system before it stores each
measurement; below the reserve it raises ``DiskFull``, the runner stops
starting new measurements, and everything already stored stays intact (each
line is written whole, see ``store``). The reserve is the larger of an absolute
floor and a fraction of the file system, so small VPS disks and large ones are
both protected.
"""

from __future__ import annotations

import os
from pathlib import Path

from censorscope.probes.errors import StoreError

DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024
DEFAULT_MIN_FREE_FRACTION = 0.02


class DiskFull(StoreError):
    """Free space on the results file system fell below the reserve."""


class DiskGuard:
    """Checks that ``path``'s file system keeps a reserve of free space."""

    def __init__(
        self,
        path: Path,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        min_free_fraction: float = DEFAULT_MIN_FREE_FRACTION,
    ) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes
        self.min_free_fraction = min_free_fraction

    def free_bytes(self) -> tuple[int, int]:
        """(bytes available to this user, file system size)."""
        path = self.path
        while not path.exists() and path != path.parent:  # not created yet: its file system is the parent's
            path = path.parent
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def reserve(self) -> int:
        """The number of bytes that must stay free."""
        _, total = self.free_bytes()
        return max(self.min_free_bytes, int(total * self.min_free_fraction))

    def check(self, about_to_write: int = 0) -> None:
        """Raise ``DiskFull`` if writing ``about_to_write`` more bytes would eat into the reserve."""
        free, total = self.free_bytes()
        reserve = max(self.min_free_bytes, int(total * self.min_free_fraction))
        if free - about_to_write < reserve:
            raise DiskFull(
                f"stopping: only {free // 1024} KiB free on the file system of {self.path} "
                f"(reserve {reserve // 1024} KiB); results stored so far are intact"
            )
