"""``FILE:LINE: reason``: a line that a reader skipped (target lists, JSONL stores)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LineProblem:
    """Where a skipped line is, and why it was skipped."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"
