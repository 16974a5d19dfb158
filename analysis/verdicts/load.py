"""Measurements to judge: dicts, or files and directories of any kind the
analysis readers understand (censorscope JSONL and Parquet, OONI JSON/JSONL;
see :mod:`censorscope.analysis.records`).

The JSONL store is append-only and a crash can leave a torn last line; such
lines (and corrupt ones) are skipped and listed in the :class:`LoadReport`,
never fatal.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from censorscope.analysis.records import iter_records as read_paths

_WHERE = re.compile(r"^(?P<path>.*):(?P<line>\d+): (?P<reason>.*)$")


@dataclass
class LoadReport:
    """Unreadable records: ``torn`` as (path, 1-based line), ``problems`` as the readers' messages."""

    torn: list[tuple[str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        """Record one reader problem (``FILE:LINE: reason``)."""
        self.problems.append(message)
        m = _WHERE.match(message)
        if m:
            self.torn.append((m["path"], int(m["line"])))


def iter_records(source: Any, report: LoadReport | None = None) -> Iterator[dict[str, Any]]:
    """Measurement dicts from a dict, a path, or an iterable mixing both."""
    report = report if report is not None else LoadReport()
    if isinstance(source, dict):
        yield source
        return
    if isinstance(source, str | os.PathLike):
        yield from read_paths(os.fspath(source), report.problem)
        return
    for item in source:
        if isinstance(item, dict):
            yield item
        elif isinstance(item, str | os.PathLike):
            yield from read_paths(os.fspath(item), report.problem)
        else:
            raise TypeError(f"expected a measurement dict or a path, got {type(item).__name__}")
