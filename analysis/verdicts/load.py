"""Reading stored measurements for judging: dicts, JSONL files and directories.

The JSONL store is append-only and a crash can leave a torn last line; such
lines (and any other line that is not a JSON object) are skipped and listed
in the :class:`LoadReport`, never fatal.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson


@dataclass
class LoadReport:
    """What was read: files, and unreadable lines as (path, 1-based line number)."""

    files: list[str] = field(default_factory=list)
    torn: list[tuple[str, int]] = field(default_factory=list)


def jsonl_files(path: str | os.PathLike[str]) -> list[Path]:
    """The JSONL files at ``path`` (a file, or every ``*.jsonl`` under a directory, sorted)."""
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.rglob("*.jsonl") if f.is_file())
    if p.is_file():
        return [p]
    raise FileNotFoundError(f"no such file or directory: {p}")


def read_jsonl(path: Path, report: LoadReport) -> Iterator[dict[str, Any]]:
    """Measurements of one JSONL file; torn or non-object lines go to ``report``."""
    report.files.append(str(path))
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                report.torn.append((str(path), n))
                continue
            if isinstance(obj, dict):
                yield obj
            else:
                report.torn.append((str(path), n))


def iter_records(source: Any, report: LoadReport | None = None) -> Iterator[dict[str, Any]]:
    """Measurement dicts from a dict, a path, or an iterable mixing both."""
    report = report if report is not None else LoadReport()
    if isinstance(source, dict):
        yield source
        return
    if isinstance(source, str | Path | os.PathLike):
        for f in jsonl_files(source):
            yield from read_jsonl(f, report)
        return
    for item in source:
        if isinstance(item, dict):
            yield item
        elif isinstance(item, str | Path | os.PathLike):
            for f in jsonl_files(item):
                yield from read_jsonl(f, report)
        else:
            raise TypeError(f"expected a measurement dict or a path, got {type(item).__name__}")
