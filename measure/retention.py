"""Retention: compact old JSONL runs into a Parquet archive, verified row by row.

``gc(results, keep)`` looks at every ``RUN_ID.jsonl`` under ``results`` whose
last write is older than ``keep`` and that no run is writing (its writer
holds an exclusive ``flock``). It converts the run to Parquet, partitioned by
measurement date::

    results/parquet/date=YYYY-MM-DD/RUN_ID.parquet
    results/parquet/_runs/RUN_ID.meta.json      (the run's sidecar, moved)

then reads every Parquet file back from disk and compares each row with the
original measurement. Only when every row matches is the JSONL deleted. A
file with a corrupt line in the middle is kept as it is (a human should look);
a torn last line is reported and dropped, as readers do.

Parquet columns (the archive format ``censorscope.analysis`` reads):
``measurement_id, campaign, run_id, probe, probe_version, input, repetition,
attempt, measurement_start_time, runtime, vantage_cc, vantage_asn,
vantage_network, vantage_resolver`` as scalars, and ``vantage, software,
observations, control, annotations, extra`` as JSON text (``extra`` holds any
other top-level keys, so the conversion is lossless).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from censorscope.measure.records import SCALARS, from_row, parquet_schema, to_row
from censorscope.measure.store import StoreProblem, iter_measurements
from censorscope.probes.errors import StoreError


def _same(original: dict[str, Any], rebuilt: dict[str, Any]) -> bool:
    keys = set(original) | {k for k, v in rebuilt.items() if v is not None}
    for k in keys:
        a, b = original.get(k), rebuilt.get(k)
        if k in SCALARS and a is not None:
            a = str(a)
        if a != b:
            return False
    return True


@dataclass
class GcReport:
    """What one gc pass did."""

    compacted: list[str] = field(default_factory=list)
    rows: int = 0
    kept_busy: list[str] = field(default_factory=list)
    kept_corrupt: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _busy(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our lock too
    return False


def compact_run(jsonl: Path, archive: Path) -> tuple[int, list[str]]:
    """Convert one JSONL run into date-partitioned Parquet, verify it, delete the JSONL.

    Returns (rows, problems). Raises StoreError if verification fails (the
    JSONL is then left untouched).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    problems: list[StoreProblem] = []
    by_date: dict[str, list[dict[str, Any]]] = {}
    for m in iter_measurements(jsonl, problems.append):
        date = str(m.get("measurement_start_time") or "")[:10] or "unknown"
        by_date.setdefault(date, []).append(m)
    if any("corrupt" in p.reason for p in problems):
        raise StoreError(f"{jsonl}: corrupt lines, left as it is: " + "; ".join(map(str, problems)))
    run_id = jsonl.name.removesuffix(".jsonl")
    schema = parquet_schema()
    written: list[tuple[Path, list[dict[str, Any]]]] = []
    for date, ms in sorted(by_date.items()):
        part = archive / f"date={date}"
        part.mkdir(parents=True, exist_ok=True)
        final = part / f"{run_id}.parquet"
        tmp = part / f".{run_id}.parquet.tmp"
        table = pa.Table.from_pylist([to_row(m) for m in ms], schema=schema)
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        written.append((final, ms))
    # Verify from disk, row by row, before anything is deleted.
    for final, ms in written:
        back = pq.read_table(final).to_pylist()
        if len(back) != len(ms):
            raise StoreError(f"{final}: {len(back)} rows read back, {len(ms)} expected; JSONL kept")
        for i, (orig, row) in enumerate(zip(ms, back, strict=True)):
            if not _same(orig, from_row(row)):
                raise StoreError(f"{final}: row {i} differs from {jsonl}; JSONL kept")
    dirfd = os.open(archive, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
    meta = jsonl.with_name(run_id + ".meta.json")
    if meta.exists():
        runs = archive / "_runs"
        runs.mkdir(exist_ok=True)
        os.replace(meta, runs / meta.name)
    jsonl.unlink()
    return sum(len(ms) for _, ms in written), [str(p) for p in problems]


def gc(
    results: Path, keep_seconds: float, *, now: Callable[[], float] = time.time,
    progress: Callable[[str], None] | None = None,
) -> GcReport:
    """Compact every idle JSONL run under ``results`` last written more than ``keep_seconds`` ago."""
    if not results.is_dir():
        raise StoreError(f"{results}: not a results directory")
    archive = results / "parquet"
    report = GcReport()
    cutoff = now() - keep_seconds
    for jsonl in sorted(results.glob("*.jsonl")):
        if jsonl.stat().st_mtime > cutoff:
            continue
        if _busy(jsonl):
            report.kept_busy.append(jsonl.name)
            continue
        try:
            rows, problems = compact_run(jsonl, archive)
        except StoreError as e:
            report.kept_corrupt.append(jsonl.name)
            report.problems.append(str(e))
            continue
        report.compacted.append(jsonl.name)
        report.rows += rows
        report.problems += problems
        if progress:
            progress(f"{jsonl.name}: {rows} rows -> parquet")
    return report
