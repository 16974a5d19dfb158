"""The raw measurement store: one append-only JSONL file per run.

Layout under the output directory::

    RUN_ID.jsonl       one complete measurement per line (the source of truth)
    RUN_ID.meta.json   the run's campaign and status (small, replaced atomically)

``RUN_ID`` is ``YYYYMMDDTHHMMSSZ-xxxxxx`` (UTC start time + 6 random hex
digits): run files sort by time and two runs started in the same second do
not clash.

Crash safety (what ``kill -9`` may cost, and why earlier lines survive):

* Each measurement is serialised completely first, then handed to the kernel
  with one ``write()`` on a descriptor opened with ``O_APPEND``: there is no
  user-space buffer to lose, and a line either is in the file or is not. Once
  ``write()`` has returned, a killed process loses nothing (the page cache
  belongs to the kernel). A short write (disk full) is finished or fails loudly.
* Lines are never rewritten. The only mutation besides appending is the
  repair before a resume: a torn last line (no trailing newline, from a power
  loss or a full disk) is truncated away *before* anything is appended, because
  appending after a torn fragment would glue the next line onto it and corrupt
  both. Readers skip and report a torn last line or any corrupt line.
* One writer per run: an exclusive ``flock`` on the JSONL file makes a second
  ``run --resume`` of the same run fail instead of interleaving.
* Durability against power loss or a kernel crash (not needed for ``kill -9``):
  ``fdatasync`` runs at most every ``SYNC_INTERVAL`` seconds or every
  ``SYNC_EVERY`` lines, whichever comes first, and on close. A power loss may
  thus cost the last second of measurements, never earlier ones.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from censorscope.measure.problems import LineProblem
from censorscope.probes.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

RUN_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
SYNC_EVERY = 1000
SYNC_INTERVAL = 1.0

#: The identity of one unit of work: (probe, input, repetition, resolver).
DoneKey = tuple[str, str, int, str | None]


def new_run_id(now: float | None = None) -> str:
    """A time-sortable, unique run id, e.g. ``20261128T153000Z-ab12cd``."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is well-formed (it becomes a file name), else ConfigError."""
    if not RUN_ID_RE.match(run_id):
        raise ConfigError(f"bad run id {run_id!r}: expected YYYYMMDDTHHMMSSZ-xxxxxx")
    return run_id


def jsonl_path(out_dir: Path, run_id: str) -> Path:
    """The JSONL file of a run."""
    return out_dir / f"{run_id}.jsonl"


def meta_path(out_dir: Path, run_id: str) -> Path:
    """The sidecar describing a run."""
    return out_dir / f"{run_id}.meta.json"


def done_key(measurement: dict[str, Any]) -> DoneKey:
    """The unit of work a stored measurement completed."""
    return (
        measurement["probe"], measurement["input"], int(measurement.get("repetition") or 0),
        (measurement.get("vantage") or {}).get("resolver"),
    )


StoreProblem = LineProblem  # a torn or corrupt line of a JSONL store


def _log_problem(p: StoreProblem) -> None:
    log.warning("%s (skipped)", p)


def iter_measurements(
    path: str | Path, on_problem: Callable[[StoreProblem], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Stream the measurements of a JSONL file.

    A torn last line (no trailing newline) and any line that is not a JSON
    object are skipped and reported to ``on_problem`` (default: a logged
    warning) as ``FILE:LINE: reason``.
    """
    report = on_problem or _log_problem
    name = str(path)
    with open(path, "rb") as f:
        lineno = 0
        for raw in f:
            lineno += 1
            if not raw.endswith(b"\n"):
                report(StoreProblem(name, lineno, f"torn last line ({len(raw)} bytes without a newline)"))
                return
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                report(StoreProblem(name, lineno, f"corrupt line: {e}"))
                continue
            if not isinstance(obj, dict):
                report(StoreProblem(name, lineno, f"corrupt line: a JSON {type(obj).__name__}, not an object"))
                continue
            yield obj


def scan_done(
    path: Path, on_problem: Callable[[StoreProblem], None] | None = None
) -> tuple[set[DoneKey], int]:
    """The units a run's JSONL already holds, and how many lines it read.

    Only first attempts count (``attempt == 0``); confirmation re-tests are
    extra measurements of a unit already done.
    """
    done: set[DoneKey] = set()
    n = 0
    if not path.exists():
        return done, 0
    for m in iter_measurements(path, on_problem):
        n += 1
        try:
            if int(m.get("attempt") or 0) == 0:
                done.add(done_key(m))
        except (KeyError, TypeError, ValueError):
            (on_problem or _log_problem)(StoreProblem(str(path), n, "measurement without probe/input"))
    return done, n


def truncate_torn_tail(path: Path) -> int:
    """Cut a torn last line (bytes after the last newline) off ``path``; return the bytes removed."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        pos = size
        block = 65536
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        else:
            keep = 0
        if keep < size:
            f.truncate(keep)
            os.fsync(f.fileno())
        return size - keep


class JsonlWriter:
    """Appends measurements to one run's JSONL file, crash-safely (see module doc)."""

    def __init__(self, path: Path, *, sync_every: int = SYNC_EVERY, sync_interval: float = SYNC_INTERVAL) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise StoreError(f"{path} is being written by another censorscope process") from None
        self._sync_every = sync_every
        self._sync_interval = sync_interval
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self.lines = 0

    def write(self, measurement: dict[str, Any]) -> None:
        """Append one measurement as one line, in a single ``write()``."""
        line = orjson.dumps(measurement) + b"\n"
        view = memoryview(line)
        try:
            while view:  # a short write only happens on a full disk or a signal
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as e:
            raise StoreError(f"cannot write to {self.path}: {e.strerror}") from e
        self.lines += 1
        self._unsynced += 1
        if self._unsynced >= self._sync_every or time.monotonic() - self._last_sync >= self._sync_interval:
            self.sync()

    def sync(self) -> None:
        """Flush the file's data to the disk (power-loss durability)."""
        if self._unsynced:
            os.fdatasync(self._fd)
            self._unsynced = 0
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Sync, unlock and close."""
        if self._fd < 0:
            return
        try:
            self.sync()
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = -1

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON: temp file, fsync, rename, fsync dir."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False).encode() + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_meta(out_dir: Path, run_id: str) -> dict[str, Any]:
    """Load a run's sidecar; ConfigError when the run is unknown."""
    check_run_id(run_id)
    path = meta_path(out_dir, run_id)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no run {run_id} in {out_dir} (missing {path.name})") from None
    except (OSError, ValueError) as e:
        raise StoreError(f"cannot read {path}: {e}") from None
