"""Read measurements from wherever they are: censorscope JSONL and Parquet, OONI JSON/JSONL.

``iter_records(paths)`` streams measurement dicts in censorscope's stored
form (DESIGN.md §3), whatever the source:

- censorscope JSONL run files (``RUN_ID.jsonl``), as they are;
- censorscope's Parquet archive (``gc``'s ``parquet/date=…/*.parquet``);
- OONI measurements: one per line (JSONL, as from OONI's S3 bucket), a JSON
  array, a single JSON object, or OONI API wrappers whose
  ``raw_measurement`` is a JSON string — mapped by ``censorscope.analysis.ooni``.

Directories are walked recursively (hidden and ``_``-prefixed entries and
sidecars such as ``*.meta.json`` are skipped). A torn last line or a corrupt
line is skipped and reported to ``on_problem`` as ``FILE:LINE: reason``; the
analysis never stops on one bad record.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from censorscope.analysis.ooni import SUPPORTED_TESTS, from_ooni, is_ooni, unwrap
from censorscope.measure.records import from_row

log = logging.getLogger(__name__)

PathLike = str | Path
Problem = Callable[[str], None]
_SKIP_SUFFIXES = (".meta.json", ".state.json", ".sha256", ".part", ".tmp")


def _warn(msg: str) -> None:
    log.warning("%s (skipped)", msg)


def expand(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """Files named by ``paths`` (files, or directories walked recursively), sorted."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p).parts
                if any(part.startswith((".", "_")) for part in rel) or not f.is_file():
                    continue
                if f.name.endswith(_SKIP_SUFFIXES):
                    continue
                if f.suffix in (".jsonl", ".json", ".parquet") or f.name.endswith((".jsonl.gz", ".json.gz")):
                    out.append(f)
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def normalise(obj: dict[str, Any]) -> dict[str, Any] | None:
    """A censorscope measurement from any supported record (None for unsupported OONI tests)."""
    if is_ooni(obj):
        inner = unwrap(obj)
        if inner.get("test_name") not in SUPPORTED_TESTS:
            return None
        return from_ooni(inner)
    return obj


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # type: ignore[return-value]


def _first_byte(path: Path) -> bytes:
    with _open(path) as f:
        b = f.read(1)
        while b in (b" ", b"\n", b"\r", b"\t"):
            b = f.read(1)
        return b


def _iter_json(path: Path, report: Problem) -> Iterator[dict[str, Any]]:
    head = _first_byte(path)
    with _open(path) as f:
        if head == b"[" or (path.suffix == ".json" and head == b"{"):
            try:
                data = orjson.loads(f.read())
            except orjson.JSONDecodeError as e:
                if head == b"[":
                    report(f"{path}:1: corrupt JSON: {e}")
                    return
                data = None  # a .json file holding one object per line: read it as JSONL
            if data is not None:
                for obj in data if isinstance(data, list) else [data]:
                    if isinstance(obj, dict):
                        yield obj
                return
            f.seek(0)
        lineno = 0
        for raw in f:
            lineno += 1
            if not raw.strip():
                continue
            if not raw.endswith(b"\n"):
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    report(f"{path}:{lineno}: torn last line ({len(raw)} bytes without a newline)")
                    return
            else:
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError as e:
                    report(f"{path}:{lineno}: corrupt line: {e}")
                    continue
            if isinstance(obj, dict):
                yield obj
            else:
                report(f"{path}:{lineno}: corrupt line: not a JSON object")


def _iter_parquet(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            yield from_row(row)


def iter_records(
    paths: PathLike | Iterable[PathLike], on_problem: Problem | None = None
) -> Iterator[dict[str, Any]]:
    """Stream censorscope measurement dicts from files/directories of any supported kind."""
    report = on_problem or _warn
    for path in expand(paths):
        source = _iter_parquet(path) if path.suffix == ".parquet" else _iter_json(path, report)
        for obj in source:
            m = normalise(obj)
            if m is not None:
                yield m
